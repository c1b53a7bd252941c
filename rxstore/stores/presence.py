"""A presence channel's members as a store: ``state`` and ``diff`` frames folded into a ``BehaviorSubject``.

The gateway sends a channel's whole member list on every join (so on every
reconnect too), then what changes (docs/protocol.md, "Presence")::

    frames:  --s-------d-------d----s----   (s: the whole list, d: a diff)
    state:   e-a-------b-------c----d----   (e: empty, not synced; each a PresenceState)
    deltas:  --j-------u-------l----jl---   (join, update, leave: PresenceDelta values)

A whole list replaces the members; the deltas it yields are the difference from
the members before (a reconnect shows who came and went meanwhile).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs
from reactivex import Observable, from_iterable
from reactivex import operators as ops

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import Event
from rxstore.protocol.presence import Member, member_of, presence_event
from rxstore.stores.domain import DomainStore

__all__ = ["STALE", "PresenceDelta", "PresenceState", "PresenceStore"]

Key = tuple[str, str]

STALE = "stale"
"""A frame ``type`` the client makes itself when its connection drops: the list is no longer live."""


@attrs.frozen
class PresenceDelta:
    """One member joining, updating its metadata, or leaving.

    Example:
        >>> PresenceDelta("join", Member("ann", "c1")).member.user
        'ann'
    """

    op: Literal["join", "update", "leave"]
    member: Member


@attrs.frozen
class PresenceState:
    """A channel's members, by ``(user, conn)``, with their metadata.

    Attributes:
        channel: The channel.
        members: ``(user, conn)`` -> member.
        synced: Whether the list is live: the whole list arrived on this connection.
        changes: What the frame that made this state changed.

    Example:
        >>> tabs = {("ann", "c1"): Member("ann", "c1"), ("ann", "c2"): Member("ann", "c2")}
        >>> s = PresenceState("room", tabs)
        >>> len(s), sorted(s.users()), len(s.users()["ann"])
        (2, ['ann'], 2)
    """

    channel: str
    members: Mapping[Key, Member] = attrs.field(factory=dict)
    synced: bool = False
    changes: tuple[PresenceDelta, ...] = ()

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members.values())

    def users(self) -> dict[str, tuple[Member, ...]]:
        """User -> that user's members (one per connection: two tabs are two)."""
        users: dict[str, list[Member]] = {}
        for member in self.members.values():
            users.setdefault(member.user, []).append(member)
        return {user: tuple(members) for user, members in users.items()}


class PresenceStore(DomainStore[PresenceState]):
    """The members of one presence channel, kept live (join it with ``root.join_presence``).

    Args:
        channel: The presence channel (a topic, or a name the gateway's ``can_join`` allows).
        name: Name in logs and errors.

    Example:
        >>> room = PresenceStore("room:1")
        >>> room.apply([Event("rxstore:presence:room:1", {"type": "state", "channel": "room:1",
        ...     "members": [{"user": "ann", "conn": "c1", "meta": {"typing": False}}]})])
        >>> [m.user for m in room.value], room.value.synced
        (['ann'], True)
    """

    def __init__(self, channel: str, *, name: str | None = None) -> None:
        self.channel = channel
        self.event = presence_event(channel)
        self.accepts = (self.event,)  # type: ignore[misc]  # an instance's channel overrides the class's
        self.initial = PresenceState(channel)
        super().__init__(name=name or f"PresenceStore({channel!r})")

    @property
    def deltas(self) -> Observable[PresenceDelta]:
        """Each join, update and leave, as it is applied (hot: from the next frame on)."""
        return self.state.pipe(ops.skip(1), ops.flat_map(_changes))

    def reduce(self, state: PresenceState, event: Event) -> PresenceState:
        """Apply a ``state``, ``diff`` or (client-made) ``stale`` frame of the channel.

        A diff applies to a synced list only: one that arrives after the channel was left (sent
        before the gateway had the leave) or before the whole list changes nothing.

        Raises:
            ProtocolError: The frame does not follow docs/protocol.md, "Presence".
        """
        data = event.data
        kind = data.get("type") if isinstance(data, Mapping) else None
        if kind == "state":
            return _replaced(state, [member_of(m) for m in _list(data, "members")])
        if kind == "diff":  # a diff before the whole list (sent before a leave, say) is dropped
            return _applied(state, data) if state.synced else attrs.evolve(state, changes=())
        if kind == STALE:
            return attrs.evolve(state, synced=False, changes=())
        raise ProtocolError(f"a presence frame's 'type' is 'state' or 'diff', got {kind!r}", payload=data)

    def mark_stale(self) -> None:
        """The connection dropped: the members stay as they were, ``synced`` turns ``False``."""
        self.apply([Event(self.event, {"type": STALE, "channel": self.channel})])

    def clear(self) -> None:
        """The connection left the channel: no member, not synced (every member's leave a delta)."""
        self.apply([Event(self.event, {"type": "state", "channel": self.channel, "members": []})])
        self.mark_stale()


def _changes(state: PresenceState) -> Observable[PresenceDelta]:
    return from_iterable(state.changes)


def _list(data: Mapping[str, Any], field: str) -> list[Any]:
    value = data.get(field, [])
    if not isinstance(value, list):
        raise ProtocolError(f"a presence frame's {field!r} is a list", payload=data)
    return value


def _replaced(state: PresenceState, members: list[Member]) -> PresenceState:
    """The whole list: its deltas are what differs from the members before."""
    before, after = state.members, {m.key: m for m in members}
    changes = [PresenceDelta("leave", m) for key, m in before.items() if key not in after]
    for key, member in after.items():
        old = before.get(key)
        if old is None:
            changes.append(PresenceDelta("join", member))
        elif old.meta != member.meta:
            changes.append(PresenceDelta("update", member))
    return PresenceState(state.channel, after, True, tuple(changes))


def _applied(state: PresenceState, data: Mapping[str, Any]) -> PresenceState:
    """A diff: its leaves, then its joins and updates."""
    members = dict(state.members)
    changes: list[PresenceDelta] = []
    for wire in _list(data, "leaves"):
        gone = members.pop(member_of(wire).key, None)
        if gone is not None:
            changes.append(PresenceDelta("leave", gone))
    for op in ("joins", "updates"):
        for wire in _list(data, op):
            member = member_of(wire)
            members[member.key] = member
            changes.append(PresenceDelta("join" if op == "joins" else "update", member))
    return PresenceState(state.channel, members, state.synced, tuple(changes))
