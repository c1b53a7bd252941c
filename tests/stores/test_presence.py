"""PresenceStore: state and diff frames folded into members, with their deltas; bad frames reported."""

from __future__ import annotations

from typing import Any

from reactivex import operators as ops

from rxstore import Event, Member, PresenceDelta, PresenceState, PresenceStore
from rxstore.testing import marbles

EVENT = "rxstore:presence:room"


def state(*users: str) -> Event:
    members = [{"user": u, "conn": f"{u}-c", "meta": None} for u in users]
    return Event(EVENT, {"type": "state", "channel": "room", "members": members})


def diff(**lists: list[str]) -> Event:
    data: dict[str, Any] = {"type": "diff", "channel": "room", "joins": [], "updates": [], "leaves": []}
    for op, users in lists.items():
        data[op] = [{"user": u, "conn": f"{u}-c", "meta": op} for u in users]
    return Event(EVENT, data)


def initials(state: PresenceState) -> str:
    return "".join(sorted(user[0] for user in state.users()))


def short(delta: PresenceDelta) -> str:
    return f"{delta.op[0]}{delta.member.user[0]}"


def test_frames_fold_into_members_and_deltas_in_virtual_time() -> None:
    """A whole list replaces the members; its deltas are the difference from the members before."""
    with marbles() as m:
        room = PresenceStore("room")
        frames = m.hot(
            "-s-j-u-l-r",
            {
                "s": state("ann"),
                "j": diff(joins=["bob"]),
                "u": diff(updates=["bob"]),
                "l": diff(leaves=["ann"]),
                "r": state("bob", "carl"),
            },
        )
        room.setup_realtime_handlers(frames)
        users = m.record(room.state.pipe(ops.map(initials)))
        deltas = m.record(room.deltas.pipe(ops.map(short)))
        m.run()
    assert users == m.expected("xa-y-y-b-z", {"x": "", "a": "a", "y": "ab", "b": "b", "z": "bc"})
    # at 9, bob's metadata in the whole list differs from his last update: an update
    assert deltas == m.expected(
        "-a-b-c-d-(ef)", {"a": "ja", "b": "jb", "c": "ub", "d": "la", "e": "ub", "f": "jc"}
    )


def test_a_bad_frame_is_reported_and_changes_nothing() -> None:
    room = PresenceStore("room")
    errors: list[Exception] = []
    room.errors.subscribe(errors.append)
    room.apply(
        [
            state("ann"),
            Event(EVENT, {"type": "weird"}),
            Event(EVENT, {"type": "diff", "joins": [{"user": 1}]}),
        ]
    )
    assert [m.user for m in room.value] == ["ann"] and len(errors) == 2


def test_stale_keeps_the_members_and_clear_empties_them() -> None:
    room = PresenceStore("room")
    room.apply([state("ann", "bob")])
    room.mark_stale()
    assert len(room.value) == 2 and not room.value.synced
    room.clear()
    assert len(room.value) == 0 and not room.value.synced
    assert room.value.members == {} and Member("ann", "ann-c") not in list(room.value)


def test_a_diff_after_a_leave_is_dropped_until_the_next_whole_list() -> None:
    """A diff sent before the leave reached the gateway arrives after clear(): the list stays empty
    (the member must not come back); the next whole list (a join again) is taken."""
    room = PresenceStore("room")
    room.apply([state("ann", "bob")])
    room.clear()
    room.apply([diff(updates=["bob"], joins=["carl"])])
    assert len(room.value) == 0 and not room.value.synced
    room.apply([state("bob")])
    assert [m.user for m in room.value] == ["bob"] and room.value.synced
