"""Routing changes without a server: the index finds the subscriptions a change may concern."""

from __future__ import annotations

from typing import Any

import pytest

from rxstore.gateway.access.auth import User
from rxstore.gateway.queries.index import SubscriptionIndex
from rxstore.gateway.queries.subscriptions import Subscription, subscription_event
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Subset, terms_of

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
    scanned = sub(Subset("messages", terms_of([("likes", ">", 3)])), "popular")
    either = sub(Subset("messages", terms_of({"channel": ["c1", "c2"]})), "either")
    for s in [*subs, scanned, either]:
        index.add(s)
    assert index.count == 1002
    moved = change(Op.UPDATE, row("c1"), row("c7"))
    found = {s.id for s in index.candidates(moved)}
    assert found == {"s1", "s7", "popular", "either"}  # new and old values, the scanned one
    other = Change(seq=1, topic="posts", op=Op.INSERT, record={"id": 1}, old=None, ts=0.0)
    assert list(index.candidates(other)) == []
    for s in [*subs, scanned, either]:
        index.remove(s)
    assert index.count == 0 and list(index.candidates(moved)) == []
    index.remove(scanned)  # twice: ignored
    assert index.count == 0


@pytest.mark.parametrize(("value", "key"), [(1, 1.0), (1, True), ("1", "1")])
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


@pytest.mark.parametrize(
    ("where", "keys"),
    [
        ({"channel": "a"}, (("channel", "a"),)),
        ([("n", ">", 1), {"or": [("channel", "=", "a"), ("author", "in", ["x", "y"])]}], BOTH),
        ([{"or": [("channel", "=", "a"), ("author", "in", ["x", "y"])]}], BOTH),
        ([{"or": [("channel", "=", "a"), [("n", ">", 1), ("author", "=", "x")]]}], BOTH[:2]),
        ([{"or": [("channel", "=", "a"), ("n", ">", 1)]}], "scanned"),
        ([{"not": ("channel", "=", "a")}], "scanned"),
        ([{"not": ("channel", "!=", "a")}], "scanned"),
        ([("n", ">", 1), {"or": [("channel", "=", "a"), ("n", "<", 0)]}], "scanned"),
        ([{"or": [("channel", "=", "a"), ("n", "<", 0)]}, ("author", "=", "x")], (("author", "x"),)),
        ([[("n", ">", 1), ("channel", "in", ["a", "b"])]], (("channel", "a"), ("channel", "b"))),
    ],
)
def test_a_subset_is_filed_by_values_every_matching_row_has_one_of(where: Any, keys: Any) -> None:
    """An ``or`` is indexed only when every branch is (by all their values); a ``not`` never is."""
    assert _filed(where).index_keys() == (None if keys == "scanned" else keys)


def test_an_or_subset_is_found_by_either_branch_and_by_the_old_row_when_it_moves_out() -> None:
    index = SubscriptionIndex[Subscription]()
    either = _filed([{"or": [("channel", "=", "general"), ("author", "=", "ann")]}])
    negated = _filed([{"not": ("channel", "=", "general")}])
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
