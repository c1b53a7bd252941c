"""The settings of a root's state file: ``RootStore(persist=Persist("app-state.db", interval=0.1))``."""

from __future__ import annotations

import os
from typing import Final

import attrs

__all__ = ["DEFAULT_BATCH_ROWS", "DEFAULT_INTERVAL", "DEFAULT_MAX_BYTES", "Persist"]

DEFAULT_INTERVAL: Final = 0.1
"""Seconds a change may wait before it is written: a burst of changes is one transaction."""
DEFAULT_BATCH_ROWS: Final = 10_000
"""Rows gathered that make a write start before ``interval`` is over."""
DEFAULT_MAX_BYTES: Final = 1 << 30
"""The state file's size bound (1 GiB): past it, writing stops (the file keeps a consistent, older state)."""


@attrs.frozen
class Persist:
    """Where and how often a root writes its state (``RootStore(persist=...)`` also takes a bare path).

    Attributes:
        path: The state file (SQLite, created if missing; one process at a time).
        interval: Seconds a change may wait before it is written (the coalescing window).
        batch_rows: Rows gathered that start a write at once.
        max_bytes: The file's size bound; past it, writing stops with one warning.

    Example:
        >>> Persist("app-state.db").interval
        0.1
    """

    path: str | os.PathLike[str]
    interval: float = attrs.field(default=DEFAULT_INTERVAL, kw_only=True)
    batch_rows: int = attrs.field(default=DEFAULT_BATCH_ROWS, kw_only=True)
    max_bytes: int = attrs.field(default=DEFAULT_MAX_BYTES, kw_only=True)

    @interval.validator
    def _check_interval(self, _: object, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"interval must be >= 0 seconds, got {value!r}")

    @batch_rows.validator
    def _check_rows(self, _: object, value: int) -> None:
        if value < 1:
            raise ValueError(f"batch_rows must be >= 1, got {value!r}")
