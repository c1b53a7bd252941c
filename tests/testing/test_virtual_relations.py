"""rxstore.testing's virtual gateway serves relations, so "rows related to me" is marble-testable.

A store of the messages of the channels the user is a member of (an ``in`` term
whose values are a subquery on ``memberships``, ``{"claim": "sub"}`` filled from
``claims=``) in virtual time: a join moves the channel's messages in, exactly
once, as a snapshot at that write's seq; a message posted to one of the user's
channels is an INSERT; another user's join, or a second membership of a channel,
sends nothing; a leave moves the channel's rows out; a reconnect reads the
relation fresh; a window over a relation keeps the newest rows of the channels.
"""

from __future__ import annotations

from typing import Any

import pytest

from rxstore import TableStore
from rxstore.protocol.subsets import Claim, SubsetError, Term
from rxstore.testing import marbles, on_next, virtual_gateway, write


class ChannelMessages(TableStore[dict[str, Any]]):
    table = "messages"


MY_CHANNELS = {"select": "channel", "from": "memberships", "where": [("user", "=", Claim("sub"))]}
MESSAGES = [
    {"id": 1, "channel": "news", "ts": 1},
    {"id": 2, "channel": "cats", "ts": 2},
    {"id": 3, "channel": "cats", "ts": 3},
    {"id": 4, "channel": "dogs", "ts": 4},
]
MEMBERSHIPS = [{"id": 10, "user": "ann", "channel": "news"}, {"id": 11, "user": "bob", "channel": "dogs"}]


def test_a_join_moves_a_channels_rows_in_and_a_leave_moves_them_out_in_virtual_time() -> None:
    """Join cats at 2 (2, 3 in), a post at 4; bob's join, a second cats membership: nothing; leave at 12."""
    with marbles() as m:
        mine = ChannelMessages(where=[("channel", "in", MY_CHANNELS)], event="mine")
        root = m.root(
            [mine],
            tables={"messages": MESSAGES, "memberships": MEMBERSHIPS},
            claims={"sub": "ann"},
            server="--a-b-c-d-e-f-g",
            values={
                "a": write("memberships", "INSERT", {"id": 12, "user": "ann", "channel": "cats"}),
                "b": write("messages", "INSERT", {"id": 5, "channel": "cats", "ts": 5}),
                "c": write("memberships", "INSERT", {"id": 13, "user": "bob", "channel": "cats"}),
                "d": write("memberships", "INSERT", {"id": 14, "user": "ann", "channel": "cats"}),
                "e": write("memberships", "DELETE", {"id": 12}),  # ann still holds cats through 14
                "f": write("memberships", "DELETE", {"id": 14}),  # her last cats membership
                "g": write("messages", "INSERT", {"id": 6, "channel": "cats", "ts": 6}),  # not hers now
            },
        )
        kinds: list[str] = []
        root.events_named("mine").subscribe(lambda frame: kinds.extend(e.kind.value for e in frame))
        ids = m.record(mine.select(lambda state: sorted(state.rows)))
        m.run()
    assert ids == [
        on_next(0, []),
        on_next(0, [1]),
        on_next(2, [1, 2, 3]),
        on_next(4, [1, 2, 3, 5]),
        on_next(12, [1]),
    ]
    assert kinds == ["snapshot", "snapshot", "change", "snapshot"], "moves are snapshots, a post a change"


def test_a_reconnect_reads_a_relation_fresh_with_the_moves_made_while_away() -> None:
    """The link drops at 2; ann joins dogs meanwhile: the reconnect's snapshot holds dogs' rows."""
    with marbles() as m:
        mine = ChannelMessages(where=[("channel", "in", MY_CHANNELS)], event="mine")
        m.root(
            [mine],
            tables={"messages": MESSAGES, "memberships": MEMBERSHIPS},
            claims={"sub": "ann"},
            link="c-x--c",
            server="---a",
            values={"a": write("memberships", "INSERT", {"id": 15, "user": "ann", "channel": "dogs"})},
        )
        states: list[list[int]] = []
        mine.select(lambda state: sorted(state.rows)).subscribe(states.append)
        m.run()
    assert states[-1] == [1, 4] and states.count([1, 4]) == 1, "dogs' rows moved in, once"


def test_a_window_over_a_relation_keeps_the_newest_rows_of_my_channels() -> None:
    """The newest 2 of ann's channels: joining cats brings its newer rows in, the window stays at 2."""
    with marbles() as m:
        newest = ChannelMessages(
            where=[("channel", "in", MY_CHANNELS)], order_by=[("ts", "desc")], limit=2, event="newest"
        )
        m.root(
            [newest],
            tables={"messages": MESSAGES, "memberships": MEMBERSHIPS},
            claims={"sub": "ann"},
            server="--a-b",
            values={
                "a": write("memberships", "INSERT", {"id": 12, "user": "ann", "channel": "cats"}),
                "b": write("messages", "INSERT", {"id": 7, "channel": "news", "ts": 9}),  # 2 moves out
            },
        )
        ids = m.record(newest.select(lambda state: [r["id"] for r in state.ordered()]))
        m.run()
    assert ids == [on_next(0, []), on_next(0, [1]), on_next(2, [3, 2]), on_next(4, [7, 3])]
    gateway = m.gateway
    assert gateway is not None and gateway.windows["newest"] == [7, 3]


def test_a_subquery_on_a_forbidden_table_is_refused_and_nothing_is_followed() -> None:
    """A relation reading a forbidden table: forbidden_topic naming it, the store's subset as it was."""
    with marbles() as m:
        store = ChannelMessages(event="all")
        m.root([store], tables={"messages": MESSAGES, "memberships": MEMBERSHIPS})
        gateway = m.gateway
        assert gateway is not None
        gateway.forbidden = frozenset({"memberships"})
        done = m.call(1, lambda: store.where([("channel", "in", MY_CHANNELS)]))
        m.run()
    assert len(done) == 1 and isinstance(done[0], SubsetError) and done[0].code == "forbidden_topic"
    assert "'memberships'" in str(done[0]) and store.subset.where == ()


def test_a_relation_over_its_bound_is_refused_at_subscribe_as_the_gateway_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More than MAX_RELATION_VALUES rows selected: invalid_subscription naming it; the subset as it was."""
    monkeypatch.setattr(virtual_gateway, "MAX_RELATION_VALUES", 1)
    many = [*MEMBERSHIPS, {"id": 12, "user": "ann", "channel": "cats"}]
    with marbles() as m:
        store = ChannelMessages(where={"channel": "dogs"}, event="mine")
        m.root([store], tables={"messages": MESSAGES, "memberships": many}, claims={"sub": "ann"})
        done = m.call(1, lambda: store.where([("channel", "in", MY_CHANNELS)]))
        m.run()
    assert len(done) == 1 and isinstance(done[0], SubsetError) and done[0].code == "invalid_subscription"
    assert "selects more than 1 rows (MAX_RELATION_VALUES)" in str(done[0])
    assert sorted(store.value.rows) == [4] and store.subset.where == (Term("channel", "=", "dogs"),)


def test_a_relation_that_grows_past_its_bound_ends_empty_and_follows_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ann's second membership at 2 ends it (an empty snapshot); her leave and a post later send nothing."""
    monkeypatch.setattr(virtual_gateway, "MAX_RELATION_VALUES", 1)
    with marbles() as m:
        mine = ChannelMessages(where=[("channel", "in", MY_CHANNELS)], event="mine")
        m.root(
            [mine],
            tables={"messages": MESSAGES, "memberships": MEMBERSHIPS},
            claims={"sub": "ann"},
            server="--a-b-c",
            values={
                "a": write("memberships", "INSERT", {"id": 12, "user": "ann", "channel": "cats"}),
                "b": write("memberships", "DELETE", {"id": 12}),
                "c": write("messages", "INSERT", {"id": 5, "channel": "news", "ts": 5}),
            },
        )
        ids = m.record(mine.select(lambda state: sorted(state.rows)))
        m.run()
    assert ids == [on_next(0, []), on_next(0, [1]), on_next(2, [])]
    assert m.gateway is not None and m.gateway.ended == {"mine"}
