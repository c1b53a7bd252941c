"""The virtual gateway's presence: a root joins, sees others, drops and reconnects, in virtual time."""

from __future__ import annotations

from reactivex import operators as ops

from rxstore import PresenceDelta, PresenceState, PresenceStore
from rxstore.testing import marbles, presence_join, presence_leave, presence_update


def users_synced(state: PresenceState) -> tuple[tuple[str, ...], bool]:
    return tuple(sorted(state.users())), state.synced


def size_synced(state: PresenceState) -> tuple[int, bool]:
    return len(state), state.synced


def delta_text(delta: PresenceDelta) -> str:
    return f"{delta.op}:{delta.member.user}:{delta.member.conn}"


def test_a_marble_test_of_presence_joins_updates_leaves_and_a_reconnect_with_the_whole_list() -> None:
    """The root joins at tick 1; bob joins (2), updates (3); the link drops (4): carl joins and bob
    leaves unseen (5, 6); back at 7, the root joins again and gets the whole list (me and carl)."""
    values = {
        "b": presence_join("room", "bob", {"s": 1}),
        "u": presence_update("room", "bob", {"s": 2}),
        "c": presence_join("room", "carl"),
        "l": presence_leave("room", "bob"),
    }
    with marbles() as m:
        room = PresenceStore("room")
        root = m.root([room], server="--bu-cl", link="c---x--c", values=values)
        m.call(1, lambda: root.join_presence("room", {"s": "me"}))
        users = m.record(room.state.pipe(ops.map(users_synced)))
        deltas = m.record(room.deltas.pipe(ops.map(delta_text)))
        m.run(until=10)
    v = {
        "e": ((), False),
        "m": (("me",), True),
        "b": (("bob", "me"), True),
        "s": (("bob", "me"), False),
        "c": (("carl", "me"), True),
    }
    assert users == m.expected("embbs--c", v)
    assert deltas == m.expected(
        "-abc---(defg)",
        {
            "a": "join:me:virtual-1",
            "b": "join:bob:bob-1",
            "c": "update:bob:bob-1",
            "d": "leave:me:virtual-1",
            "e": "leave:bob:bob-1",
            "f": "join:carl:carl-1",
            "g": "join:me:virtual-2",
        },
    )
    assert root.presence_channels == {"room": {"s": "me"}}


def test_a_join_made_offline_is_sent_on_connect_and_a_leave_ends_it() -> None:
    with marbles() as m:
        room = PresenceStore("room")
        root = m.root([room], link="--c", values={})
        joined = m.call(0, lambda: root.join_presence("room", 1))
        left = m.call(4, lambda: root.leave_presence("room"))
        sizes = m.record(room.state.pipe(ops.map(size_synced)))
        m.run(until=6)
    assert joined == [None] and left == [None]  # offline: None, the join waited for the connect
    assert sizes == m.expected("a-b-(cd)", {"a": (0, False), "b": (1, True), "c": (0, True), "d": (0, False)})
    assert m.link.presence.channels["room"] == {}


def test_an_update_of_a_channel_not_joined_raises() -> None:
    with marbles() as m:
        root = m.root([])
        done = m.call(1, lambda: root.update_presence("room", 1))
        m.run(until=2)
    assert isinstance(done[0], ValueError)
