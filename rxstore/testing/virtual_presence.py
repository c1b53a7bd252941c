"""A virtual gateway's presence channels, for marble tests of presence (part of :mod:`rxstore.testing`).

:class:`VirtualPresence` answers the root's ``rxstore:presence_join`` / ``_update`` /
``_leave`` as the gateway does (docs/protocol.md, "Presence"): a join gets the channel's
whole member list (a ``state`` frame) before its acknowledgement; the other members'
joins, updates and leaves (:func:`presence_join`, :func:`presence_update`,
:func:`presence_leave` in a ``server`` diagram) reach the root as ``diff`` frames while
its link is up, and only through the next ``state`` otherwise. Each connection is a
new member (``conn`` ``virtual-1``, ``virtual-2``, ...); the old one leaves with it.

Example:
    >>> from rxstore import PresenceStore
    >>> from reactivex import operators as ops
    >>> from rxstore.testing import marbles, presence_join
    >>> with marbles() as m:
    ...     room = PresenceStore("room")
    ...     root = m.root([room], server="--b", values={"b": presence_join("room", "bob")})
    ...     joined = m.call(1, lambda: root.join_presence("room", {"status": "online"}))
    ...     users = m.record(room.state.pipe(ops.map(lambda s: sorted(s.users()))))
    ...     m.run()
    >>> [u.value.value for u in users], joined
    ([[], ['me'], ['bob', 'me']], ['virtual-1'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

import attrs

from rxstore.protocol.presence import PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE_UPDATE, Member, presence_event
from rxstore.testing.frames import Frame

__all__ = ["PresenceChange", "VirtualPresence", "presence_join", "presence_leave", "presence_update"]

Key = tuple[str, str]


class _Link(Protocol):
    up: bool

    def send(self, frame: Frame) -> None: ...


@attrs.frozen
class PresenceChange:
    """Another member joining, updating or leaving a channel (a value of a marble ``server`` diagram)."""

    channel: str
    op: Literal["join", "update", "leave"]
    member: Member


def presence_join(channel: str, user: str, meta: Any = None, *, conn: str | None = None) -> PresenceChange:
    """``user`` joins ``channel`` with ``meta`` (its connection ``conn``, ``"<user>-1"`` by default)."""
    return PresenceChange(channel, "join", Member(user, conn or f"{user}-1", meta))


def presence_update(channel: str, user: str, meta: Any, *, conn: str | None = None) -> PresenceChange:
    """``user`` sets ``meta`` in ``channel``."""
    return PresenceChange(channel, "update", Member(user, conn or f"{user}-1", meta))


def presence_leave(channel: str, user: str, *, conn: str | None = None) -> PresenceChange:
    """``user`` leaves ``channel``."""
    return PresenceChange(channel, "leave", Member(user, conn or f"{user}-1"))


class VirtualPresence:
    """Presence channels and the root's membership in them, served through a virtual link.

    Args:
        link: Where frames go (a :class:`~rxstore.testing.VirtualLink`).
        user: The root's user (what its token would say).

    Attributes:
        channels: Channel -> ``(user, conn)`` -> member, now (the root's own included).
        joined: Channel -> the root's member there, on the current connection.
        watching: The channels the root watches (a join with ``"watch": true``) on it.
        forbidden: Channels whose joins are refused (``forbidden_channel``), as ``can_join`` would.
    """

    def __init__(self, link: _Link, *, user: str = "me") -> None:
        self.link = link
        self.user = user
        self.channels: dict[str, dict[Key, Member]] = {}
        self.joined: dict[str, Member] = {}
        self.watching: set[str] = set()
        self.forbidden: set[str] = set()
        self._connections = 0

    def connect(self) -> None:
        """A new connection: the last one's memberships end (its member leaves every channel)."""
        for channel, member in self.joined.items():
            self.channels.get(channel, {}).pop(member.key, None)
        self.joined = {}
        self.watching = set()
        self._connections += 1

    def change(self, change: PresenceChange) -> None:
        """Another member joins, updates or leaves; the root sees it if it is in the channel now."""
        members = self.channels.setdefault(change.channel, {})
        member = change.member
        if change.op == "leave":
            if members.pop(member.key, None) is None:
                return
            diff = {"leaves": [{"user": member.user, "conn": member.conn}]}
        else:
            op = "joins" if member.key not in members else "updates"
            members[member.key] = member
            diff = {op: [member.to_wire()]}
        if self.link.up and (change.channel in self.joined or change.channel in self.watching):
            self._send(change.channel, diff)

    def call(self, event: str, data: Any) -> dict[str, Any]:
        """Answer the root's ``rxstore:presence_join``, ``_update`` or ``_leave``."""
        channel = data.get("channel") if isinstance(data, Mapping) else None
        if not isinstance(channel, str):
            return {"ok": False, "error": "bad_request", "message": "a presence event needs a 'channel'"}
        if event == PRESENCE_LEAVE:
            self.watching.discard(channel)
            member = self.joined.pop(channel, None)
            if member is not None:
                self.channels.get(channel, {}).pop(member.key, None)
            return {"ok": True}
        if event == PRESENCE_JOIN and channel in self.forbidden:
            return {
                "ok": False,
                "error": "forbidden_channel",
                "message": f"{self.user!r} may not join {channel!r}",
            }
        if event == PRESENCE_UPDATE and channel not in self.joined:
            return {"ok": False, "error": "not_joined", "message": f"update of {channel!r}: join it first"}
        members = self.channels.setdefault(channel, {})
        member = Member(self.user, f"virtual-{self._connections}", data.get("meta"))
        if event == PRESENCE_JOIN and data.get("watch") is True:
            self.watching.add(channel)
            if self.joined.pop(channel, None) is not None:
                members.pop(member.key, None)
        else:
            members[member.key] = self.joined[channel] = member
            self.watching.discard(channel)
        if event == PRESENCE_JOIN:
            wire = [m.to_wire() for m in members.values()]
            self.link.send(
                Frame(presence_event(channel), {"type": "state", "channel": channel, "members": wire})
            )
            return {"ok": True, "conn": member.conn}
        self._send(channel, {"updates": [member.to_wire()]})
        return {"ok": True}

    def _send(self, channel: str, diff: dict[str, Any]) -> None:
        frame = {"type": "diff", "channel": channel, "joins": [], "updates": [], "leaves": []} | diff
        self.link.send(Frame(presence_event(channel), frame))
