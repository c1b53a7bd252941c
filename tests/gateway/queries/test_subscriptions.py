"""Live-query routing without a server: :mod:`rxstore.gateway.queries.subscriptions`' index and events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from rxstore.gateway.access.auth import User
from rxstore.gateway.queries.subscriptions import (
    Subscription,
    SubscriptionIndex,
    events_of_subscriptions,
    subscription_event,
)
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Subset, terms_of

ALICE = User("alice")
GENERAL = Subset("messages", terms_of({"channel": "general"}), ("body",))


def sub(subset: Subset = GENERAL, sub_id: str = "general", client: str = "c1", **kw: Any) -> Subscription:
    return Subscription(sub_id, subset, client, ALICE, "id", **kw)


def change(op: Op, record: dict[str, Any] | None, old: dict[str, Any] | None = None, seq: int = 1) -> Change:
    return Change(seq=seq, topic="messages", op=op, record=record, old=old, ts=0.0)


def row(channel: str | None, body: str = "hi", key: int = 1, secret: bool = False) -> dict[str, Any]:
    return {"id": key, "channel": channel, "body": body, "secret": secret}


def public(user: User, topic: str, record: Mapping[str, Any]) -> bool:
    return not record.get("secret")


def test_a_row_entering_the_subset_is_an_insert_of_its_columns() -> None:
    event = subscription_event(sub(), change(Op.UPDATE, row("general"), row("random")), None)
    assert event is not None
    name, payload = event
    assert name == "general"
    assert payload["op"] == "INSERT" and payload["old"] is None
    assert payload["record"] == {"id": 1, "body": "hi"}  # projected, the key added


def test_a_row_leaving_the_subset_is_a_delete_of_its_key_only() -> None:
    event = subscription_event(sub(), change(Op.UPDATE, row("random", "new"), row("general")), None)
    assert event is not None
    assert event[1]["op"] == "DELETE"
    assert event[1]["record"] is None and event[1]["old"] == {"id": 1}  # no content of the row


def test_a_row_staying_in_is_an_update_and_one_never_in_is_nothing() -> None:
    stays = subscription_event(sub(), change(Op.UPDATE, row("general", "b"), row("general", "a")), None)
    assert stays is not None
    assert stays[1]["op"] == "UPDATE"
    assert stays[1]["record"] == {"id": 1, "body": "b"} and stays[1]["old"] == {"id": 1, "body": "a"}
    assert subscription_event(sub(), change(Op.UPDATE, row("x"), row("y")), None) is None
    assert subscription_event(sub(), change(Op.INSERT, row("x")), None) is None
    assert subscription_event(sub(), change(Op.DELETE, None, row("x")), None) is None


def test_authorize_and_where_must_both_allow_a_row() -> None:
    hidden_now = change(Op.UPDATE, row("general", secret=True), row("general"))
    event = subscription_event(sub(), hidden_now, public)
    assert event is not None and event[1]["op"] == "DELETE" and event[1]["old"] == {"id": 1}
    revealed = change(Op.UPDATE, row("general"), row("general", secret=True))
    event = subscription_event(sub(), revealed, public)
    assert event is not None and event[1]["op"] == "INSERT"
    assert subscription_event(sub(), change(Op.INSERT, row("general", secret=True)), public) is None


def test_an_update_whose_old_row_the_log_does_not_know_is_an_upsert_or_a_key_delete() -> None:
    entering = subscription_event(sub(), change(Op.UPDATE, row("general"), None), None)
    assert entering is not None and entering[1]["op"] == "INSERT"
    leaving = subscription_event(sub(), change(Op.UPDATE, row("random"), None), None)
    assert leaving is not None and leaving[1]["op"] == "DELETE" and leaving[1]["old"] == {"id": 1}


def test_changes_up_to_since_and_in_skip_are_left_out() -> None:
    s = sub(since=5, skip=frozenset({7}))
    seqs = [
        e[1]["seq"]
        for e in events_of_subscriptions(
            [change(Op.INSERT, row("general", key=k), seq=k) for k in range(3, 10)],
            {"messages": (s,)},
            cursor=3,
            authorize=None,
        )
    ]
    assert seqs == [6, 8, 9]


def test_a_change_matching_two_subscriptions_of_a_client_is_sent_under_each_id() -> None:
    everything = sub(Subset("messages"), "message_update")
    events = events_of_subscriptions(
        [change(Op.INSERT, row("general"), seq=4)], {"messages": (everything, sub())}, 0, None
    )
    assert [(name, payload["seq"]) for name, payload in events] == [("message_update", 4), ("general", 4)]
    assert events[0][1]["record"] == row("general")  # the whole-table one is not projected


def test_the_index_finds_only_subscriptions_a_change_may_concern() -> None:
    index = SubscriptionIndex()
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
    index = SubscriptionIndex()
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
    index = SubscriptionIndex()
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


def test_not_of_a_null_column_is_unknown_so_the_row_moves_out() -> None:
    """``NOT (channel = 'a')``: a row whose channel becomes NULL leaves, as SQL's NULL is not true."""
    negated = sub(Subset("messages", terms_of([{"not": ("channel", "=", "a")}])), "s")
    event = subscription_event(negated, change(Op.UPDATE, row(None), row("b")), None)
    assert event is not None and event[1]["op"] == "DELETE"
    assert subscription_event(negated, change(Op.INSERT, row(None)), None) is None
