"""rxstore.stores.folding.collector: a bulk build pauses the collector, then ages what it made."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rxstore.stores.folding.collector import AGED_ROWS, collector_paused


@pytest.fixture(autouse=True)
def collector_as_it_was() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()  # the young generation's count at 0: the test's own allocations trigger no collection
    gc.enable()
    yield
    (gc.enable if enabled else gc.disable)()


def generation_of(thing: object) -> int | None:
    """The collector's generation that tracks ``thing`` (``None``: none, e.g. frozen)."""
    for generation in (0, 1, 2):
        if any(o is thing for o in gc.get_objects(generation=generation)):
            return generation
    return None


def test_a_big_build_puts_what_it_made_in_the_oldest_generation_and_resumes_the_collector() -> None:
    """The young and middle collections never traverse a big build's objects: they are aged at once."""
    with collector_paused(AGED_ROWS):
        assert not gc.isenabled()
        built = [[n] for n in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() == 0  # the interpreter's own thawed too
    assert generation_of(built) == 2 and generation_of(built[0]) == 2


def test_a_small_build_only_pauses_the_collector() -> None:
    """Below AGED_ROWS (a where switch's snapshot), the program's young objects stay young."""
    with collector_paused(AGED_ROWS - 1):
        assert not gc.isenabled()
        built = [[n] for n in range(10)]
    assert gc.isenabled() and generation_of(built) == 0


def test_objects_the_program_froze_stay_frozen_and_its_young_ones_young() -> None:
    """A program that froze its heap itself (before a fork) keeps it frozen: a build only pauses then."""
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused(AGED_ROWS):
            built = [[n] for n in range(10)]
        assert gc.get_freeze_count() == frozen and gc.isenabled()
        assert generation_of(built) == 0
    finally:
        gc.unfreeze()


def test_a_collector_the_program_disabled_stays_disabled_and_nothing_is_aged() -> None:
    """Nested in an outer pause (or a program running without the collector), nothing is done at the end."""
    gc.disable()
    with collector_paused(AGED_ROWS):
        built = [[n] for n in range(10)]
    assert not gc.isenabled() and generation_of(built) == 0


def test_the_collector_resumes_when_the_build_raises() -> None:
    """A build that fails leaves the collector as it found it."""
    with pytest.raises(KeyError), collector_paused(AGED_ROWS):
        raise KeyError("row")
    assert gc.isenabled() and gc.get_freeze_count() == 0  # the interpreter's own thawed too
