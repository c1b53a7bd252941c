"""The root's presence joins: sent on connect, joined again with the latest metadata on every reconnect,
a refusal raised (connected) or reported (after a reconnect), in virtual time."""

from __future__ import annotations

from rxstore import CallRejected, PresenceStore, RxStoreError
from rxstore.testing import marbles, presence_join


def metas(m, channel: str = "room") -> list[object]:
    return [
        f.data["meta"]
        for f in m.link.sent
        if f.name == "rxstore:presence_join" and f.data["channel"] == channel
    ]


def test_a_reconnect_joins_again_with_the_metadata_set_while_offline() -> None:
    with marbles() as m:
        room = PresenceStore("room")
        root = m.root([room], link="c--x-c")
        m.call(1, lambda: root.join_presence("room", {"status": "online"}))
        m.call(4, lambda: root.update_presence("room", {"status": "away"}))  # offline: remembered
        m.run(until=7)
    assert metas(m) == [{"status": "online"}, {"status": "away"}]
    assert [member.meta for member in room.value] == [{"status": "away"}] and room.value.synced
    assert not any(f.name == "rxstore:presence_update" for f in m.link.sent)  # the rejoin carried it


def test_a_refused_join_raises_and_leaves_the_channel_not_joined() -> None:
    with marbles() as m:
        root = m.root([])
        m.link.presence.forbidden.add("vip")
        done = m.call(1, lambda: root.join_presence("vip"))
        m.run(until=2)
    assert isinstance(done[0], CallRejected) and done[0].code == "forbidden_channel"
    assert root.presence_channels == {}


def test_a_join_refused_after_a_reconnect_goes_to_root_errors_and_the_others_still_join() -> None:
    with marbles() as m:
        root = m.root([], link="c-x-c")
        errors: list[RxStoreError] = []
        root.errors.subscribe(errors.append)
        m.call(1, lambda: root.join_presence("room"))
        m.call(1, lambda: root.join_presence("hall"))
        m.at(3, lambda: m.link.presence.forbidden.add("room"))  # rights changed while away
        m.run(until=6)
    assert [e.code for e in errors if isinstance(e, CallRejected)] == ["forbidden_channel"]
    assert metas(m, "hall") == [None, None]


def test_a_join_whose_link_dropped_unnoticed_returns_none_and_is_joined_on_the_next_connect() -> None:
    with marbles() as m:
        room = PresenceStore("room")
        root = m.root([room])

        def socket_gone() -> None:
            m.link.up = False  # the socket is gone; the root is told a tick later

        def told() -> None:
            m.link.up = True
            m.link.drop()

        m.at(1, socket_gone)
        joined = m.call(1, lambda: root.join_presence("room", "x"))
        m.at(2, told)
        m.run(until=5)
    assert joined == [None] and root.presence_channels == {"room": "x"}
    assert [member.meta for member in room.value] == ["x"] and room.value.synced


def test_a_watch_is_watched_again_on_every_reconnect_and_lists_only_the_others() -> None:
    with marbles() as m:
        room = PresenceStore("room")
        root = m.root([room], link="c--x-c", server="--b", values={"b": presence_join("room", "bob")})
        m.call(1, lambda: root.watch_presence("room"))
        m.run(until=7)
    joins = [f.data for f in m.link.sent if f.name == "rxstore:presence_join"]
    assert joins == [{"channel": "room", "watch": True}] * 2
    assert set(room.value.users()) == {"bob"} and room.value.synced
    assert root.presence_watched == {"room"} and root.presence_channels == {}
