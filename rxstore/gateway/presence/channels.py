"""The clients' presence: joins, watches, updates and leaves, checked and bounded, and the frames they cause.

A join puts the connection's member in the channel's :class:`~rxstore.gateway.presence.roster.Roster`,
sends the other local members of the channel a ``diff`` and the joiner the whole list
(``state``), through each client's send queue, so a client gets the list before any change
after it; the acknowledgement follows once the list is written. Every change of this node's
members also goes to the other nodes (:class:`~rxstore.gateway.presence.relay.PresenceRelay`);
theirs come back through :meth:`PresenceChannels.deliver`.

A *watch* (a join with ``"watch": true``, allowed by ``can_watch``) gets the same list and
diffs without being listed: who may see a channel need not be who may be seen in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from rxstore.gateway.access.auth import User
from rxstore.gateway.delivery.queues import Client, Delivery, OutFrame, Stalled
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.presence.diff import Diff
from rxstore.gateway.presence.limits import PresenceLimits
from rxstore.gateway.presence.rate import TokenBucket
from rxstore.gateway.presence.relay import PresenceRelay
from rxstore.gateway.presence.roster import Roster
from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.presence import Member, check_channel, encode_meta, presence_event

__all__ = ["JoinFilter", "PresenceChannels"]

JoinFilter = Callable[[User, str], bool]
"""``can_join(user, channel) -> bool``: may this user join (and see) this presence channel?"""


Key = tuple[str, str]


def _note(
    pending: dict[Key, tuple[bool, Member | None]], key: Key, member: Member | None, *, was: bool
) -> None:
    """Note that ``key`` is ``member`` now (``None``: gone); whether it was listed: from its first note."""
    first = pending.get(key)
    pending[key] = (was if first is None else first[0], member)


def _net(changes: dict[Key, tuple[bool, Member | None]]) -> Diff:
    """What the noted changes add up to, from the clients' side."""
    joins: list[Member] = []
    updates: list[Member] = []
    leaves: list[Member] = []
    for (user, conn), (was, member) in changes.items():
        if member is None:
            if was:
                leaves.append(Member(user, conn))
        elif was:
            updates.append(member)
        else:
            joins.append(member)
    return Diff(tuple(joins), tuple(updates), tuple(leaves))


@attrs.define(eq=False)
class _Connection:
    """One client connection's presence: its id, its memberships, its rate."""

    conn: str
    bucket: TokenBucket
    channels: dict[str, Member] = attrs.field(factory=dict)
    watching: set[str] = attrs.field(factory=set)

    @property
    def count(self) -> int:
        """The channels it is in, as a member or a watcher."""
        return len(self.channels) + len(self.watching)


class PresenceChannels:
    """Serves ``rxstore:presence_join`` / ``_update`` / ``_leave`` and sends the channels' frames.

    Args:
        delivery: The clients' send queues.
        clients: The connected clients by sid (the gateway's).
        metrics: The gateway's metrics.
        can_join: Who may join a channel (and so see its members); fails closed.
        can_watch: Who may see a channel's members without being one; fails closed
            (default: ``can_join``).
        limits: The bounds.
        node: This node's id.
    """

    def __init__(
        self,
        delivery: Delivery,
        clients: Mapping[str, Client],
        metrics: Metrics,
        *,
        can_join: JoinFilter,
        limits: PresenceLimits,
        node: str,
        can_watch: JoinFilter | None = None,
    ) -> None:
        self.delivery = delivery
        self.clients = clients
        self.metrics = metrics
        self.can_join = can_join
        self.can_watch = can_watch or can_join
        self.limits = limits
        self.node = node
        self.roster = Roster()
        self.relay: PresenceRelay | None = None
        """The other nodes (with Redis; set by the gateway)."""
        self._connections: dict[str, _Connection] = {}
        self._listeners: dict[str, set[str]] = {}
        """Channel -> sids of this node's clients in it."""
        self._pending: dict[str, dict[Key, tuple[bool, Member | None]]] = {}
        """Channel -> member key -> (listed before this turn, member now or ``None``): not sent yet."""
        self._flushing = False

    # -- the clients' events -----------------------------------------------------

    async def join(self, client: Client, data: Any) -> dict[str, Any]:
        """Join a channel (or set the metadata again), or watch it: the whole list, then the ack."""
        checked = self._checked(client, data)
        if isinstance(checked, dict):
            return checked
        channel, meta = checked
        watch = data.get("watch") is True
        if not self._may(self.can_watch if watch else self.can_join, client.user, channel):
            what = "watch" if watch else "join"
            return self._refuse("forbidden_channel", f"{client.user.id!r} may not {what} {channel!r}")
        connection = self._connection(client)
        refusal = self._over_limits(connection, channel, watch)
        if refusal is not None:
            return refusal
        if not self._rate(connection):
            return self._too_fast()
        if watch:
            if channel in connection.channels:
                self._unlist(connection, channel)  # a member that turns watcher leaves the list
            connection.watching.add(channel)
        else:
            connection.watching.discard(channel)
            self._put(client, connection, channel, meta)
        self.flush()  # what the others were told so far goes before the joiner is one of them
        listeners = self._listeners.setdefault(channel, set())
        listeners.add(client.sid)
        state = {
            "type": "state",
            "channel": channel,
            "members": [m.to_wire() for m in self.roster.members(channel)],
        }
        self.delivery.enqueue(client, OutFrame(presence_event(channel), state))
        with contextlib.suppress(Stalled):  # a stalled client is dropped by its writer, this ack with it
            await self.delivery.drain(client)  # the list is on its way before the acknowledgement
        return {"ok": True, "conn": connection.conn}

    async def update(self, client: Client, data: Any) -> dict[str, Any]:
        """Replace the connection's metadata in a channel it joined."""
        checked = self._checked(client, data)
        if isinstance(checked, dict):
            return checked
        channel, meta = checked
        connection = self._connections.get(client.sid)
        if connection is None or channel not in connection.channels:
            return self._refuse("not_joined", f"update of {channel!r}: join it first")
        if not self._rate(connection):
            return self._too_fast()
        self._put(client, connection, channel, meta)
        return {"ok": True}

    async def leave(self, client: Client, data: Any) -> dict[str, Any]:
        """Leave a channel (a channel not joined: nothing to do)."""
        try:
            channel = check_channel(data.get("channel") if isinstance(data, Mapping) else None)
        except ProtocolError as exc:
            return self._refuse("bad_request", f"a leave is {{'channel': str}}: {exc}")
        connection = self._connections.get(client.sid)
        if connection is None or (channel not in connection.channels and channel not in connection.watching):
            return {"ok": True}
        self._remove(client.sid, connection, channel)  # never refused for the rate: it lightens the load
        return {"ok": True}

    def forget(self, sid: str) -> None:
        """A client went: it leaves every channel it was in."""
        connection = self._connections.pop(sid, None)
        if connection is None:
            return
        for channel in [*connection.channels, *connection.watching]:
            self._remove(sid, connection, channel)

    # -- the frames --------------------------------------------------------------

    def deliver(self, diffs: Mapping[str, Diff]) -> None:
        """Send each channel's diff to this node's clients in it, with the others of this turn of the loop.

        The changes of one turn of the event loop go out as one diff frame per channel (a
        member that joined and left meanwhile not at all, one updated twice with its last
        metadata): under many updates at once, each client gets fewer, bigger frames.
        """
        for channel, diff in diffs.items():
            if channel not in self._listeners:
                continue  # no client of this node in it: nothing to send
            pending = self._pending.setdefault(channel, {})
            for member in diff.leaves:
                _note(pending, member.key, None, was=True)
            for member in diff.joins:
                _note(pending, member.key, member, was=False)
            for member in diff.updates:
                _note(pending, member.key, member, was=True)
        if self._pending and not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self.flush)
        self._count()

    def flush(self) -> None:
        """Send the diffs noted since the last flush, one frame per channel, to its clients of this node."""
        self._flushing = False
        pending, self._pending = self._pending, {}
        clients, enqueue = self.clients, self.delivery.enqueue
        for channel, changes in pending.items():
            diff = _net(changes)
            sids = self._listeners.get(channel)
            if not diff or not sids:
                continue
            frame = OutFrame(presence_event(channel), diff.to_wire(channel))  # encoded once for all
            for sid in list(sids):
                client = clients.get(sid)
                if client is not None:
                    enqueue(client, frame)
            self.metrics.presence_frames.inc()

    # -- helpers -----------------------------------------------------------------

    def _checked(self, client: Client, data: Any) -> tuple[str, Any] | dict[str, Any]:
        """``(channel, meta)`` of a join or update, or its refusal."""
        if not isinstance(data, Mapping):
            return self._refuse("bad_request", "a presence join or update is {'channel': str, 'meta': JSON}")
        try:
            channel = check_channel(data.get("channel"))
        except ProtocolError as exc:
            return self._refuse("bad_request", str(exc))
        try:
            encoded = encode_meta(data.get("meta"), self.limits.max_meta_bytes)
        except ProtocolError as exc:
            reason = "meta_too_large" if "over the limit" in str(exc) else "invalid_meta"
            return self._refuse(reason, str(exc))
        return channel, json.loads(encoded)

    def _over_limits(self, connection: _Connection, channel: str, watch: bool) -> dict[str, Any] | None:
        """The refusal of a join or watch over ``max_channels`` or ``max_members``, if it is."""
        limits = self.limits
        new = channel not in connection.channels and channel not in connection.watching
        if new and connection.count >= limits.max_channels:
            return self._refuse(
                "too_many_channels",
                f"this connection is in {connection.count} channels (max_channels={limits.max_channels}); "
                "leave one first",
            )
        if (
            not watch
            and channel not in connection.channels
            and self.roster.count(channel) >= limits.max_members
        ):
            return self._refuse(
                "too_many_members", f"{channel!r} has {limits.max_members} members (max_members)"
            )
        return None

    def _may(self, hook: JoinFilter, user: User, channel: str) -> bool:
        try:
            return bool(hook(user, channel))
        except Exception:  # fail closed: a hook that raises denies
            self.metrics.authorize_errors.inc()
            return False

    def _connection(self, client: Client) -> _Connection:
        connection = self._connections.get(client.sid)
        if connection is None:
            limits = self.limits
            bucket = TokenBucket(
                limits.updates_per_second, limits.burst, float(limits.burst), time.monotonic()
            )
            connection = self._connections[client.sid] = _Connection(secrets.token_hex(8), bucket)
        return connection

    def _rate(self, connection: _Connection) -> bool:
        return connection.bucket.take(time.monotonic())

    def _too_fast(self) -> dict[str, Any]:
        return self._refuse(
            "too_many_updates",
            f"over {self.limits.updates_per_second:g} presence updates per second (burst "
            f"{self.limits.burst}) on this connection; send the latest state a little later",
        )

    def _put(self, client: Client, connection: _Connection, channel: str, meta: Any) -> Member:
        member = Member(client.user.id, connection.conn, meta)
        connection.channels[channel] = member
        diff = self.roster.put(self.node, channel, member)
        self.metrics.presence_updates.inc()
        if diff:
            self.deliver({channel: diff})
            if self.relay is not None:
                self.relay.put(channel, member)
        return member

    def _remove(self, sid: str, connection: _Connection, channel: str) -> None:
        """The connection leaves ``channel``: it hears no more of it, and its member (if any) leaves."""
        connection.watching.discard(channel)
        listeners = self._listeners.get(channel)
        if listeners is not None:
            listeners.discard(sid)
            if not listeners:
                del self._listeners[channel]
        if channel in connection.channels:
            self._unlist(connection, channel)

    def _unlist(self, connection: _Connection, channel: str) -> None:
        """The connection's member leaves ``channel`` (the others are told)."""
        member = connection.channels.pop(channel)
        diff = self.roster.remove(self.node, channel, member.key)
        self.metrics.presence_updates.inc()
        if diff:
            self.deliver({channel: diff})
            if self.relay is not None:
                self.relay.remove(channel, member)

    def _count(self) -> None:
        self.metrics.presence_members.set(self.roster.size(self.node))
        self.metrics.presence_channels.set(self.roster.channels)

    def _refuse(self, reason: str, message: str) -> dict[str, Any]:
        self.metrics.presence_refused.labels(reason).inc()
        return {"ok": False, "error": reason, "message": message}
