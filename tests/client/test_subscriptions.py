"""Live queries on the client (issue 12): the router's cursor rules, the auth payload, add/remove, switches.

Router and payload tests drive ``root.router.on_frame`` directly; the rest run in
virtual time over a :class:`~rxstore.testing.VirtualGateway` (tables the test
fills, served by ``Subset.matches``), and one file of socket tests
(tests/test_subscriptions_socketio.py) speaks the same messages over a real
python-socketio server.
"""

from __future__ import annotations

from typing import Any

import pytest

from rxstore import RootStore, Subset, SubsetError, SyncState, TableStore, Term
from rxstore.protocol.events import BATCH, SNAPSHOT
from rxstore.testing import VirtualLink, change_frame, marbles, write

Row = dict[str, Any]


class Messages(TableStore[Row]):
    table = "messages"


class Posts(TableStore[Row]):
    table = "posts"


def root_of(*stores: TableStore[Any], topics: tuple[str, ...] = ()) -> RootStore:
    root = RootStore("virtual://gateway", stores=stores, transport=VirtualLink(), topics=topics)
    root.setup_domain_event_handlers()
    return root


def msg(seq: int, row: Row, *, event: str, op: str = "INSERT") -> tuple[str, Any]:
    frame = change_frame("messages", seq, op, row, event=event)
    return frame.name, frame.data


ROWS = [
    {"id": 1, "channel": "general", "body": "hi"},
    {"id": 2, "channel": "random", "body": "yo"},
    {"id": 3, "channel": "general", "body": "hey"},
]


# -- the router's cursor rules ----------------------------------------------------


def test_one_change_under_two_subscription_ids_is_applied_by_both_stores() -> None:
    """Same seq under two ids: both applied; the same seq again under the cursor's id is a duplicate."""
    general = Messages(where={"channel": "general"}, event="general")
    everything = Messages(event="all_messages")
    root = root_of(general, everything)
    row = {"id": 1, "channel": "general"}
    root.router.on_frame(*msg(5, row, event="general"))
    root.router.on_frame(*msg(5, row, event="all_messages"))
    root.router.on_frame(*msg(5, row, event="all_messages"))  # delivered twice: dropped
    assert 1 in general.value.rows and 1 in everything.value.rows
    assert root.cursor == 5 and root.metrics.duplicates == 1 and root.metrics.changes_applied == 2


def test_one_change_under_two_ids_in_one_batch_is_applied_by_both() -> None:
    """The batch path keeps the same rule: [5 under a, 5 under b, 4 under b] -> two applied, one duplicate."""
    a, b = Messages(event="a"), Messages(event="b")
    root = root_of(a, b)
    events = [
        ["a", msg(5, {"id": 1}, event="a")[1]],
        ["b", msg(5, {"id": 1}, event="b")[1]],
        ["b", msg(4, {"id": 2}, event="b")[1]],
    ]
    root.router.on_frame(BATCH, {"events": events})
    assert list(a.value.rows) == [1] and list(b.value.rows) == [1]
    assert root.metrics.duplicates == 1


def test_a_runtime_snapshot_ahead_of_the_cursor_leaves_it_so_replayed_changes_apply() -> None:
    """Cursor 10; a new subscription's snapshot at 20 keeps it at 10, so another id's change 15 applies."""
    posts, inbox = Posts(), Messages(where={"channel": "general"})
    root = root_of(posts, inbox)
    root.router.on_frame("post_update", change_frame("posts", 10, "INSERT", {"id": "p1"}).data)
    snapshot = {"topic": "messages", "event": "message_update", "seq": 20, "records": ROWS[:1], "more": False}
    root.router.on_frame(SNAPSHOT, snapshot)
    assert root.cursor == 10 and inbox.value.seq == 20
    root.router.on_frame("post_update", change_frame("posts", 15, "INSERT", {"id": "p2"}).data)
    assert set(posts.value.rows) == {"p1", "p2"} and root.cursor == 15


def test_a_first_snapshot_sets_the_cursor() -> None:
    """With no cursor a snapshot sets it (first sync); a change at that seq under its id is a duplicate."""
    inbox = Messages(where={"channel": "general"})
    root = root_of(inbox)
    root.router.on_frame(SNAPSHOT, {"topic": "messages", "event": "message_update", "seq": 7, "records": []})
    assert root.cursor == 7
    root.router.on_frame(*msg(7, {"id": 9, "channel": "general"}, event="message_update"))
    assert inbox.value.rows == {} or 9 not in inbox.value.rows


def test_snapshot_chunks_are_held_per_subscription_not_per_topic() -> None:
    """Two subscriptions of one topic chunked at the same seq, interleaved: each store gets its own rows."""
    a = Messages(where={"channel": "general"}, event="a")
    b = Messages(where={"channel": "random"}, event="b")
    root = root_of(a, b)

    def chunk(event: str, records: list[Row], more: bool) -> None:
        data = {"topic": "messages", "event": event, "seq": 3, "records": records, "more": more}
        root.router.on_frame(SNAPSHOT, data)

    chunk("a", [ROWS[0]], True)
    chunk("b", [ROWS[1]], True)
    chunk("a", [ROWS[2]], False)
    chunk("b", [], False)
    assert sorted(a.value.rows) == [1, 3] and sorted(b.value.rows) == [2]


# -- the auth payload ---------------------------------------------------------------


def test_whole_table_stores_send_topics_only_as_before() -> None:
    """No subset and the class's event: ``topics``, and no ``subscriptions`` key (old gateways unchanged)."""
    root = root_of(Posts(), Messages())
    assert root.auth_payload("t") == {
        "token": "t",
        "topics": ["posts", "messages"],
        "cursor": None,
        "cursor_ts": None,
        "epoch": None,
    }


def test_a_subset_store_is_a_subscription_in_the_auth_payload() -> None:
    """A where/columns store goes in ``subscriptions`` (id = its event), not in ``topics``."""
    inbox = Messages(where={"channel": "general"}, columns=("id", "body"))
    payload = root_of(Posts(), inbox).auth_payload(None)
    assert payload["topics"] == ["posts"]
    assert payload["subscriptions"] == [
        {
            "id": "message_update",
            "topic": "messages",
            "where": [["channel", "=", "general"]],
            "columns": ["id", "body"],
        }
    ]


def test_since_is_sent_for_a_subscription_whose_snapshot_is_ahead_of_the_cursor() -> None:
    """Cursor 10, a subscription's snapshot at 20: on reconnect it carries ``since: 20``; the other none."""
    behind = Messages(where={"channel": "random"}, event="behind")
    ahead = Messages(where={"channel": "general"})
    root = root_of(Posts(), behind, ahead)
    root.router.on_frame("post_update", change_frame("posts", 10, "INSERT", {"id": "p1"}).data)
    root.router.on_frame(SNAPSHOT, {"topic": "messages", "event": "message_update", "seq": 20, "records": []})
    subscriptions = {s["id"]: s for s in root.auth_payload(None)["subscriptions"]}
    assert subscriptions["message_update"]["since"] == 20
    assert "since" not in subscriptions["behind"]


def test_two_stores_with_one_event_name_are_refused() -> None:
    """Two subset stores of one table under the default event: a clear error naming both, and the fix."""
    with pytest.raises(SubsetError, match=r"both use the event 'message_update'.*event="):
        root_of(Messages(where={"channel": "a"}), Messages(where={"channel": "b"}))
    with pytest.raises(SubsetError, match="topics="):
        root_of(Messages(where={"channel": "a"}), topics=("messages",))


def test_a_store_checks_its_where_clause_at_construction() -> None:
    """A bad operator or id is a SubsetError at once; ``subset`` holds the terms."""
    with pytest.raises(SubsetError, match="unknown operator"):
        Messages(where=[("channel", "~", "a")])
    with pytest.raises(SubsetError, match="reserved"):
        Messages(event="rxstore:x")
    store = Messages(where=[("ts", ">=", 5)])
    assert store.subset == Subset("messages", (Term("ts", ">=", 5),)) and store.subscribed


# -- in virtual time: switches, add/remove, resume ---------------------------------


def test_a_channel_switch_in_virtual_time() -> None:
    """Following general; writes to random (1) and general (2); switch at 3; later writes follow random."""
    values = {
        "r": write("messages", "INSERT", {"id": 4, "channel": "random", "body": "r1"}),
        "g": write("messages", "INSERT", {"id": 5, "channel": "general", "body": "g1"}),
        "s": write("messages", "INSERT", {"id": 6, "channel": "random", "body": "r2"}),
        "t": write("messages", "INSERT", {"id": 7, "channel": "general", "body": "g2"}),
    }
    with marbles() as m:
        inbox = Messages(where={"channel": "general"})
        m.root([inbox], tables={"messages": ROWS}, server="-rg--st", values=values)
        keys = m.record(inbox.select(lambda state: tuple(sorted(state.rows))))
        acks = m.call(3, lambda: inbox.where({"channel": "random"}))
        m.run()
    assert keys == m.expected(
        "(xa)-bc-d", {"x": (), "a": (1, 3), "b": (1, 3, 5), "c": (2, 4), "d": (2, 4, 6)}
    )
    assert acks == [Subset("messages", (Term("channel", "=", "random"),))]


def test_a_row_leaving_the_subset_arrives_as_a_delete_of_its_key() -> None:
    """An UPDATE moving row 1 out of general removes it; one moving row 2 in adds it (move-out/move-in)."""
    values = {
        "o": write("messages", "UPDATE", {"id": 1, "channel": "random", "body": "hi"}),
        "i": write("messages", "UPDATE", {"id": 2, "channel": "general", "body": "yo"}),
    }
    with marbles() as m:
        inbox = Messages(where={"channel": "general"}, columns=("id",))
        m.root([inbox], tables={"messages": ROWS}, server="-oi", values=values)
        m.run()
        sent = [f for f in m.link.sent]
    assert dict(inbox.value.rows) == {3: {"id": 3}, 2: {"id": 2}}
    assert sent == []  # nothing was asked of the gateway: the store was in the auth payload


def test_a_refused_switch_raises_subset_error_and_keeps_the_old_subset() -> None:
    """A refused switch (forbidden_topic): SubsetError with its code; the old subset and rows are kept."""
    with marbles() as m:
        inbox = Messages(where={"channel": "general"})
        m.root([inbox], tables={"messages": ROWS})
        assert m.gateway is not None
        m.gateway.forbidden = frozenset({"messages"})
        results = m.call(1, lambda: inbox.where({"channel": "random"}))
        m.run()
    assert isinstance(results[0], SubsetError) and results[0].code == "forbidden_topic"
    assert inbox.subset.where == (Term("channel", "=", "general"),) and sorted(inbox.value.rows) == [1, 3]


def test_add_and_remove_at_runtime_in_virtual_time() -> None:
    """``root.add`` at 1 brings its snapshot; a write at 2 reaches it; after ``remove`` at 3, none does."""
    values = {
        "a": write("messages", "INSERT", {"id": 4, "channel": "random"}),
        "b": write("messages", "INSERT", {"id": 5, "channel": "random"}),
    }
    with marbles() as m:
        posts = Posts()
        random = Messages(where={"channel": "random"}, event="random")
        root = m.root([posts], tables={"messages": ROWS, "posts": []}, server="--a-b", values=values)
        added = m.call(1, lambda: root.add(random))
        removed = m.call(3, lambda: root.remove(random))
        m.run()
    assert added == [random] and removed == [None]
    assert sorted(random.value.rows) == [2, 4]  # 5 came after the unsubscription
    assert random not in root.stores and random.sync.state is SyncState.STALE
    assert [f.name for f in m.link.sent] == ["rxstore:subscribe", "rxstore:unsubscribe"]


def test_an_error_ack_on_add_raises_subset_error_and_leaves_the_store_out() -> None:
    """``root.add`` of a forbidden topic's store: SubsetError(code='forbidden_topic'), not added."""
    with marbles() as m:
        root = m.root(
            [],
            tables={"messages": ROWS},
        )
        assert m.gateway is not None
        m.gateway.forbidden = frozenset({"messages"})
        store = Messages(where={"channel": "random"})
        results = m.call(1, lambda: root.add(store))
        m.run()
    assert isinstance(results[0], SubsetError) and results[0].code == "forbidden_topic"
    assert store not in root.stores and root.auth_payload(None).get("subscriptions") is None


def test_resume_after_a_drop_sends_since_and_loses_nothing() -> None:
    """Added at 2, its snapshot (seq 2) ahead of the cursor (1); dropped at 3, writes while down, back at 6.

    The reconnect carries ``since: 2`` for it; every row arrives once (no duplicate, none lost).
    """
    values = {
        "p": write("posts", "INSERT", {"id": "p1"}),
        "g": write("messages", "INSERT", {"id": 9, "channel": "general"}),  # followed by nobody yet
        "a": write("messages", "INSERT", {"id": 4, "channel": "random"}),
        "b": write("messages", "INSERT", {"id": 5, "channel": "general"}),
    }
    with marbles() as m:
        posts = Posts()
        random = Messages(where={"channel": "random"})
        root = m.root(
            [posts], tables={"messages": ROWS, "posts": []}, link="c--x--c", server="pg--ab", values=values
        )
        m.call(2, lambda: root.add(random))
        payloads: list[dict[str, Any]] = []
        m.at(5, lambda: payloads.append(root.auth_payload(None)))
        m.run()
    assert payloads[0]["cursor"] == 1 and payloads[0]["subscriptions"][0]["since"] == 2
    assert sorted(random.value.rows) == [2, 4] and list(posts.value.rows) == ["p1"]
    assert root.metrics.duplicates == 0 and random.sync.state is SyncState.LIVE


def test_a_switch_while_offline_is_subscribed_after_the_reconnect() -> None:
    """where() while down only sets the subset; on reconnect the store gets the new subset's snapshot."""
    values = {"a": write("messages", "INSERT", {"id": 4, "channel": "random"})}
    with marbles() as m:
        posts = Posts()
        inbox = Messages(where={"channel": "general"})
        root = m.root(
            [posts, inbox],
            tables={"messages": ROWS, "posts": []},
            link="c-x--c",
            server="---a",
            values=values,
        )
        m.call(3, lambda: inbox.where({"channel": "random"}))
        m.run()
    assert sorted(inbox.value.rows) == [2, 4]
    assert [f.name for f in m.link.sent] == ["rxstore:subscribe"]
    assert "subscriptions" not in root.auth_payload(None) or all(
        s["where"] == [["channel", "=", "random"]] for s in root.auth_payload(None)["subscriptions"]
    )
    assert inbox.sync.state is SyncState.LIVE


async def test_a_switch_while_offline_goes_live_in_virtual_time_inside_a_running_loop() -> None:
    """The same marble in an async test: the pending subscription runs now, not in a task that never runs."""
    test_a_switch_while_offline_is_subscribed_after_the_reconnect()


def test_a_harness_that_brings_the_link_up_without_an_auth_payload_leaves_nothing_pending() -> None:
    """``root.link_up`` with no auth payload before it: the stores built with the root are followed, none is
    subscribed again."""
    link = VirtualLink()
    inbox = Messages(where={"channel": "general"})
    root = RootStore("virtual://gateway", stores=[inbox], transport=link)
    link.root = root
    root.setup_domain_event_handlers()
    link.up = True
    root.link_up("virtual://gateway")
    assert link.sent == []


# -- paging: store.more ---------------------------------------------------------------

NEWEST = [{"id": n, "channel": "general", "ts": n} for n in range(1, 7)]


def test_more_while_offline_widens_the_window_subscribed_after_the_reconnect() -> None:
    """more(2) while down returns 0 and only widens the subset; the reconnect subscribes the window of 4."""
    with marbles() as m:
        newest = Messages(order_by=[("ts", "desc")], limit=2, event="newest")
        root = m.root([newest], tables={"messages": NEWEST}, link="c-x--c")
        added = m.call(3, lambda: newest.more(2))
        m.run()
    assert added == [0] and newest.subset.limit == 4
    assert [r["id"] for r in newest.value.ordered()] == [6, 5, 4, 3]
    assert [f.name for f in m.link.sent] == ["rxstore:subscribe"] and m.link.sent[0].data["limit"] == 4
    assert newest.sync.state is SyncState.LIVE and root.auth_payload(None)["subscriptions"][0]["limit"] == 4


def test_more_acknowledged_is_what_a_reconnect_follows() -> None:
    """A page at tick 1; dropped at 3 with a write while down; back at 5: the window of 4, read fresh."""
    values = {"a": write("messages", "INSERT", {"id": 7, "channel": "general", "ts": 0})}
    with marbles() as m:
        newest = Messages(order_by=[("ts", "desc")], limit=2, event="newest")
        m.root([newest], tables={"messages": NEWEST}, link="c--x-c", server="----a", values=values)
        added = m.call(1, lambda: newest.more(2))
        m.run()
    assert added == [2] and [f.name for f in m.link.sent] == ["rxstore:more"]
    assert [r["id"] for r in newest.value.ordered()] == [6, 5, 4, 3]  # 7 is older: beyond the window
    gateway = m.gateway
    assert gateway is not None and gateway.subscriptions["newest"].limit == 4, "the reconnect asked for 4"
    assert m.link.sent[-1].name == "rxstore:more", "resumed from the auth payload: nothing subscribed again"


def test_a_refused_more_raises_bad_request_and_keeps_the_window() -> None:
    """more() of a store that is no window, or past MAX_LIMIT: SubsetError(bad_request) at once."""
    with marbles() as m:
        newest = Messages(order_by=[("ts", "desc")], limit=2, event="newest")
        everything = Messages(event="everything")
        m.root([newest, everything], tables={"messages": NEWEST})
        over = m.call(1, lambda: newest.more(999))
        whole = m.call(1, lambda: everything.more(1))
        m.run()
    for failed in (over, whole):
        assert isinstance(failed[0], SubsetError) and failed[0].code == "bad_request", failed
    assert newest.subset.limit == 2 and m.link.sent == []
