"""A pytest plugin for tests/project/test_markers.py: writes which tests ``-m`` kept and dropped.

Loaded with ``-p tests.marker_report``; writes JSON to the path in ``$RXSTORE_MARKER_REPORT``.
"""

from __future__ import annotations

import json
import os

import pytest

SERVICES = ("postgres", "redis", "node")
_dropped: dict[str, list[str]] = {}


def _markers(item: pytest.Item) -> list[str]:
    return sorted({mark.name for mark in item.iter_markers()} & set(SERVICES))


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember what ``-m`` dropped."""
    _dropped.update({item.nodeid: _markers(item) for item in items})


def pytest_collection_finish(session: pytest.Session) -> None:
    """Write ``{"kept": {id: markers}, "dropped": {id: markers}}``."""
    kept = {item.nodeid: _markers(item) for item in session.items}
    with open(os.environ["RXSTORE_MARKER_REPORT"], "w") as out:
        json.dump({"kept": kept, "dropped": _dropped}, out)
