"""Live-query events without a server: what a change is to a subscription."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rxstore.gateway.access.auth import User
from rxstore.gateway.queries.subscriptions import Subscription, events_of_subscriptions, subscription_event
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


# -- groups ---------------------------------------------------------------------------


def test_not_of_a_null_column_is_unknown_so_the_row_moves_out() -> None:
    """``NOT (channel = 'a')``: a row whose channel becomes NULL leaves, as SQL's NULL is not true."""
    negated = sub(Subset("messages", terms_of([{"not": ("channel", "=", "a")}])), "s")
    event = subscription_event(negated, change(Op.UPDATE, row(None), row("b")), None)
    assert event is not None and event[1]["op"] == "DELETE"
    assert subscription_event(negated, change(Op.INSERT, row(None)), None) is None
