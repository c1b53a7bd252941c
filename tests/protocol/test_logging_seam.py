"""rxstore.protocol.logging_seam: the level cache is the one isEnabledFor answers from, emptied in place
by every level change, so the guard ``cache.get(DEBUG) is not False and log.isEnabledFor(DEBUG)`` is
isEnabledFor. These fail when CPython's logging changes how it caches (written against 3.11-3.13)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest

from rxstore.protocol.logging_seam import level_cache


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger below a parent of its own, both reset afterwards."""
    parent = logging.getLogger(f"rxstore-test-{uuid.uuid4().hex}")
    child = logging.getLogger(f"{parent.name}.store")
    yield child
    for each in (child, parent):
        each.setLevel(logging.NOTSET)
        each.disabled = False
    logging.disable(logging.NOTSET)


def parent(log: logging.Logger) -> logging.Logger:
    return logging.getLogger(log.name.rsplit(".", 1)[0])


def guard(log: logging.Logger) -> bool:
    """The DEBUG check of the router and the stores."""
    return level_cache(log).get(logging.DEBUG) is not False and log.isEnabledFor(logging.DEBUG)


def test_the_cache_is_the_dict_isenabledfor_fills_and_a_level_change_empties_it_in_place(
    logger: logging.Logger,
) -> None:
    cache = level_cache(logger)
    assert logger.isEnabledFor(logging.DEBUG) is False and cache.get(logging.DEBUG) is False
    parent(logger).setLevel(logging.DEBUG)
    assert level_cache(logger) is cache and cache.get(logging.DEBUG) is None
    assert logger.isEnabledFor(logging.DEBUG) is True and cache.get(logging.DEBUG) is True


def own_level(log: logging.Logger) -> None:
    log.setLevel(logging.DEBUG)


def parents_level(log: logging.Logger) -> None:
    parent(log).setLevel(logging.DEBUG)


def parents_level_own_info(log: logging.Logger) -> None:
    parent(log).setLevel(logging.DEBUG)
    log.setLevel(logging.INFO)


def disabled(log: logging.Logger) -> None:
    log.setLevel(logging.DEBUG)
    log.disabled = True


def logging_disable(log: logging.Logger) -> None:
    log.setLevel(logging.DEBUG)
    logging.disable(logging.DEBUG)


CHANGES: dict[Callable[[logging.Logger], None], bool] = {
    own_level: True,
    parents_level: True,
    parents_level_own_info: False,
    disabled: False,
    logging_disable: False,
}
"""Each change of a logger's level, and whether DEBUG is on after it."""


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__)
def test_the_guard_answers_what_isenabledfor_answers_before_and_after_a_change(
    change: Callable[[logging.Logger], None], logger: logging.Logger
) -> None:
    """Asked before the change (the cache filled with False), then after it: the same as isEnabledFor."""
    assert guard(logger) is logger.isEnabledFor(logging.DEBUG) is False
    change(logger)
    assert guard(logger) is logger.isEnabledFor(logging.DEBUG) is CHANGES[change]
