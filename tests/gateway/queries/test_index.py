"""Routing changes without a server: the index finds the subscriptions a change may concern."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxstore.gateway.access.auth import User
from rxstore.gateway.queries.index import SubscriptionIndex
from rxstore.gateway.queries.intervals import Interval
from rxstore.gateway.queries.subscriptions import Subscription, subscription_event
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Group, Subset, Term, terms_of

ALICE = User("alice")


def sub(subset: Subset, sub_id: str = "s", client: str = "c1") -> Subscription:
    return Subscription(sub_id, subset, client, ALICE, "id")


def change(op: Op, record: dict[str, Any] | None, old: dict[str, Any] | None = None, seq: int = 1) -> Change:
    return Change(seq=seq, topic="messages", op=op, record=record, old=old, ts=0.0)


def row(channel: str | None, body: str = "hi", key: int = 1) -> dict[str, Any]:
    return {"id": key, "channel": channel, "body": body}


def test_the_index_finds_only_subscriptions_a_change_may_concern() -> None:
    index = SubscriptionIndex[Subscription]()
    subs = [sub(Subset("messages", terms_of({"channel": f"c{n}"})), f"s{n}") for n in range(1000)]
    scanned = sub(Subset("messages", terms_of([("likes", "is not null")])), "liked")
    either = sub(Subset("messages", terms_of({"channel": ["c1", "c2"]})), "either")
    for s in [*subs, scanned, either]:
        index.add(s)
    assert index.count == 1002
    moved = change(Op.UPDATE, row("c1"), row("c7"))
    found = {s.id for s in index.candidates(moved)}
    assert found == {"s1", "s7", "liked", "either"}  # new and old values, the scanned one
    other = Change(seq=1, topic="posts", op=Op.INSERT, record={"id": 1}, old=None, ts=0.0)
    assert list(index.candidates(other)) == []
    for s in [*subs, scanned, either]:
        index.remove(s)
    assert index.count == 0 and list(index.candidates(moved)) == []
    index.remove(scanned)  # twice: ignored
    assert index.count == 0


@pytest.mark.parametrize(
    ("value", "key"),
    [(1, 1.0), (1, True), ("1", "1"), ("Infinity", math.inf), ("-Infinity", -math.inf), ("NaN", math.nan)],
)
def test_index_values_are_equal_as_sql_compares_them(value: Any, key: Any) -> None:
    index = SubscriptionIndex[Subscription]()
    s = sub(Subset("messages", terms_of({"n": value})), "n")
    index.add(s)
    assert list(index.candidates(change(Op.INSERT, {"id": 1, "n": key}))) == [s]
    assert list(index.candidates(change(Op.INSERT, {"id": 1, "n": "x"}))) == []


# -- groups in the index -------------------------------------------------------------


BOTH = (("channel", "a"), ("author", "x"), ("author", "y"))


def _filed(where: Any) -> Subscription:
    return sub(Subset("messages", terms_of(where)), "s")


def _shown(keys: Any) -> Any:
    """Index keys with each interval as its bounds on the wire: ``("n", (">", 1), ("<", 5))``."""
    if keys is None:
        return "scanned"
    return tuple(
        (column, *(t.to_wire()[1:] if t else None for t in (v.lower, v.upper)))
        if type(v) is Interval
        else (column, v)
        for column, v in keys
    )


@pytest.mark.parametrize(
    ("where", "keys"),
    [
        ({"channel": "a"}, (("channel", "a"),)),
        ([("n", ">", 1), {"or": [("channel", "=", "a"), ("author", "in", ["x", "y"])]}], BOTH),
        ([{"or": [("channel", "=", "a"), ("author", "in", ["x", "y"])]}], BOTH),
        ([{"or": [("channel", "=", "a"), [("n", ">", 1), ("author", "=", "x")]]}], BOTH[:2]),
        ([{"or": [("channel", "=", "a"), ("n", ">", 1)]}], (("channel", "a"), ("n", [">", 1], None))),
        ([{"not": ("channel", "=", "a")}], (("channel", None, ["<", "a"]), ("channel", [">", "a"], None))),
        ([{"not": ("channel", "!=", "a")}], (("channel", "a"),)),
        ([{"not": ("channel", "in", ["a"])}], "scanned"),
        ([{"or": [("channel", "=", "a"), ("n", "is not null")]}], "scanned"),
        (
            [("n", ">", 1), {"or": [("channel", "=", "a"), ("n", "<", 0)]}],
            (("n", [">", 1], None),),
        ),
        ([("n", ">=", 1), ("m", "<", 0), ("n", "<", 5)], (("n", [">=", 1], ["<", 5]),)),
        ([("n", ">=", 1), ("m", "<", 0)], (("n", [">=", 1], None),)),
        ([{"not": {"or": [("n", "<", 1), ("channel", "in", ["a"])]}}], (("n", [">=", 1], None),)),
        ([{"not": [("n", "<", 1), ("n", ">=", 5)]}], (("n", [">=", 1], None), ("n", None, ["<", 5]))),
        ([("n", "is null")], (("n", None),)),
        ([{"or": [("channel", "=", "a"), ("n", "<", 0)]}, ("author", "=", "x")], (("author", "x"),)),
        ([[("n", ">", 1), ("channel", "in", ["a", "b"])]], (("channel", "a"), ("channel", "b"))),
    ],
)
def test_a_subset_is_filed_by_values_or_ranges_every_matching_row_has_one_of(where: Any, keys: Any) -> None:
    """Values first, then both sides of a column as one range; an ``or`` only when every branch is
    indexed; a ``not`` by the opposite comparisons (De Morgan through groups); ``not in`` never."""
    assert _shown(_filed(where).index_keys()) == keys


def test_an_or_subset_is_found_by_either_branch_and_by_the_old_row_when_it_moves_out() -> None:
    index = SubscriptionIndex[Subscription]()
    either = _filed([{"or": [("channel", "=", "general"), ("author", "=", "ann")]}])
    negated = _filed([{"not": ("channel", "in", ["general"])}])
    other = _filed({"channel": "random"})
    for s in (either, negated, other):
        index.add(s)

    def found(record: dict[str, Any] | None, old: dict[str, Any] | None = None) -> set[int]:
        return {id(s) for s in index.candidates(change(Op.UPDATE, record, old))}

    assert found({"id": 1, "channel": "x", "author": "ann"}) == {id(either), id(negated)}
    assert found({"id": 1, "channel": "general", "author": "bob"}) == {id(either), id(negated)}
    moved_out = change(Op.UPDATE, {"id": 1, "channel": "x", "author": "bob"}, {"id": 1, "author": "ann"})
    assert id(either) in {id(s) for s in index.candidates(moved_out)}
    event = subscription_event(either, moved_out, None)
    assert event is not None and event[1]["op"] == "DELETE" and event[1]["old"] == {"id": 1}
    for s in (either, negated, other):
        index.remove(s)
    assert index.count == 0 and index._by_value == {} and index._scanned == {}


# -- against brute force ----------------------------------------------------------------

SCALARS: list[Any] = [-1, 0, 1, 2, 0.5, True, math.inf, math.nan, "", "a", "b", "1", "Infinity", "NaN"]
scalars = st.sampled_from(SCALARS)
columns = st.sampled_from(["x", "y"])
terms = st.one_of(
    st.builds(Term, columns, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), scalars),
    st.builds(Term, columns, st.just("in"), st.lists(scalars, min_size=1, max_size=3).map(tuple)),
    st.builds(Term, columns, st.sampled_from(["is null", "is not null"])),
)
conditions = st.recursive(
    terms,
    lambda inner: st.one_of(
        st.builds(Group, st.sampled_from(["and", "or"]), st.lists(inner, min_size=1, max_size=3).map(tuple)),
        st.builds(Group, st.just("not"), st.tuples(inner)),
    ),
    max_leaves=5,
)
rows = st.none() | st.fixed_dictionaries(
    {"id": st.just(1)}, optional={"x": st.none() | scalars, "y": st.none() | scalars}
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(conditions, min_size=1, max_size=3).map(tuple), max_size=40),
    st.lists(st.tuples(rows, rows), min_size=1, max_size=8),
    st.lists(st.integers(0, 39), max_size=10),
)
def test_every_subscription_a_change_concerns_is_a_candidate(
    wheres: list[tuple[Any, ...]], changes: list[tuple[Any, Any]], removed: list[int]
) -> None:
    """A model: any where clause (terms, ranges, ``not``, ``or``, NULLs, numbers against text);
    each subscription whose where holds for the new or the old row is among the candidates."""
    index = SubscriptionIndex[Subscription]()
    subs = [sub(Subset("messages", where), f"s{n}") for n, where in enumerate(wheres)]
    for s in subs:
        index.add(s)
    for n in removed:
        if n < len(subs):
            index.remove(subs[n])
    live = [s for n, s in enumerate(subs) if n not in removed]
    for record, old in changes:
        found = {id(s) for s in index.candidates(change(Op.UPDATE, record, old))}
        concerned = [s for s in live if s.subset.matches(record) or s.subset.matches(old)]
        assert all(id(s) in found for s in concerned), [
            s.subset.where for s in concerned if id(s) not in found
        ]


def test_range_subscriptions_are_found_by_the_value_not_checked_one_by_one() -> None:
    """10,000 ``likes >= k AND likes < k + 1`` over 1,000 values: a change's candidates are its 10
    and the old row's 10; a row moving out of a range still finds it."""
    index = SubscriptionIndex[Subscription]()
    subs = [
        sub(Subset("messages", terms_of([("likes", ">=", n % 1000), ("likes", "<", n % 1000 + 1)])), f"s{n}")
        for n in range(10_000)
    ]
    for s in subs:
        index.add(s)
    moved = change(Op.UPDATE, {"id": 1, "likes": 7}, {"id": 1, "likes": 3.5})
    assert {s.id for s in index.candidates(moved)} == {f"s{n * 1000 + k}" for n in range(10) for k in (3, 7)}
    event = subscription_event(subs[3], moved, None)
    assert event is not None and event[1]["op"] == "DELETE"
    for s in subs:
        index.remove(s)
    assert index.count == 0 and index._by_range == {} and index._by_value == {}
