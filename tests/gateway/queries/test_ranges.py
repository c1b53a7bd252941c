"""Ranges of a column found by a row's value: :mod:`rxstore.gateway.queries.ranges` against brute force."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rxstore.gateway.queries.intervals import Interval
from rxstore.gateway.queries.ranges import RangeIndex
from rxstore.protocol.subsets import Term

# Values as Term compares them: numbers (bool, int, float, NaN, infinities) below text, and the
# strings "Infinity", "-Infinity", "NaN" numbers against a number but text against text.
VALUES: list[Any] = [
    *(-2, -1, 0, 1, 2, 3, 0.5, 1.0, -0.0, True, False, math.inf, -math.inf, math.nan),
    *("", "0", "1", "a", "b", "m", "Infinity", "-Infinity", "NaN", "Zz", "-"),
]
NON_FINITE = {"Infinity", "-Infinity", "NaN"}
values = st.sampled_from(VALUES)


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    lower = draw(st.none() | st.builds(Term, st.just("x"), st.sampled_from([">", ">="]), values))
    upper: Term | None = draw(st.builds(Term, st.just("x"), st.sampled_from(["<", "<="]), values))
    if lower is not None and draw(st.booleans()):
        upper = None  # one-sided either way
    return Interval("x", lower, upper)


def found(index: RangeIndex[int], value: Any) -> set[int]:
    into: dict[int, int] = {}
    index.find({"x": value}, into)
    return set(into)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(intervals(), min_size=1, max_size=2), max_size=40),
    st.lists(st.tuples(st.integers(0, 39), st.booleans()), max_size=12),
    st.integers(0, 3),
)
def test_a_value_finds_every_interval_holding_it_and_only_those(
    filed: list[list[Interval]], churn: list[tuple[int, bool]], pending: int
) -> None:
    """Against :meth:`Interval.holds` for every value, after adds, lookups (rebuilds) and removes.

    Exact, except that a non-finite string may find an interval holding it as a number
    but not as text (it is looked up in both domains): a superset, never less.
    """
    index = RangeIndex[int]("x", pending=pending)
    live: dict[int, list[Interval]] = {}

    def check() -> None:
        for value in [*VALUES, None, 10**30]:
            expected = {key for key, ivs in live.items() if any(iv.holds({"x": value}) for iv in ivs)}
            got = found(index, value)
            assert expected <= got, (value, expected - got)
            if value not in NON_FINITE:
                assert got == expected, (value, got - expected)

    for key, ivs in enumerate(filed):
        index.add(key, key, ivs)
        live[key] = ivs
        if key % 7 == 3:
            check()
    check()
    for key, add in churn:
        if key >= len(filed):
            continue
        if add and key not in live:
            index.add(key, key, filed[key])
            live[key] = filed[key]
        elif not add:
            index.remove(key)
            live.pop(key, None)
        check()
    assert len(index) == len(live)


def test_a_lookup_touches_the_intervals_holding_the_value_not_all_of_them() -> None:
    """10,000 ranges [k, k + 1) over 1,000 values: a value finds its 10, whatever the others."""
    index = RangeIndex[int]("x")
    for key in range(10_000):
        k = key % 1_000
        index.add(key, key, [Interval("x", Term("x", ">=", k), Term("x", "<", k + 1))])
    assert found(index, 5) == {5 + 1_000 * n for n in range(10)}
    assert found(index, 5.5) == found(index, 5)
    assert found(index, 1_000) == set() and found(index, "5") == set() and found(index, [5]) == set()
    for key in range(0, 10_000, 1_000):
        index.remove(key + 5)
    assert found(index, 5) == set() and len(index) == 9_990


def test_bounds_include_their_value_or_not() -> None:
    index = RangeIndex[int]("x", pending=0)
    index.add(1, 1, [Interval("x", Term("x", ">", 1))])
    index.add(2, 2, [Interval("x", Term("x", ">=", 1))])
    index.add(3, 3, [Interval("x", upper=Term("x", "<", 1))])
    index.add(4, 4, [Interval("x", upper=Term("x", "<=", 1))])
    assert found(index, 1) == {2, 4} and found(index, True) == {2, 4}
    assert found(index, 0.5) == {3, 4} and found(index, 2) == {1, 2}
    assert found(index, "a") == {1, 2}  # text is above every number
    assert found(index, "NaN") == {1, 2} and found(index, math.nan) == {1, 2}  # NaN is above every number
