"""The other nodes' members, through Redis pub/sub, each node's held under a lease.

Each node publishes, on one Redis channel and in order, every change of its own members
(``put``, ``del``), numbered by a sequence of its own, and a heartbeat every
``heartbeat`` seconds that carries the last number. Every node applies the others'
changes to its :class:`~rxstore.gateway.presence.roster.Roster`; one that misses a
number (Redis restarted, a message dropped) or meets a node it does not know asks it for
its whole ``state`` and applies that instead. A node heard from for ``lease`` seconds is
taken for dead and its members leave; a node that stops says ``bye`` first::

    node A   ──put 1──put 2──beat 2────────beat 2──  (killed -9)
    node B   ──────apply 1──apply 2────────────────── lease runs out: A's members leave

Messages are compact JSON objects: ``{"t": "put"|"del"|"beat"|"state"|"want"|"bye", "n": node, ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from rxstore.gateway.metrics import Metrics
from rxstore.gateway.presence.diff import Diff
from rxstore.gateway.presence.limits import PresenceLimits
from rxstore.gateway.presence.roster import Roster
from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.presence import Member, member_of

__all__ = ["OUTBOX_LIMIT", "PresenceRelay"]

log = logging.getLogger("rxstore.gateway")

OUTBOX_LIMIT = 10_000
"""Most messages waiting to be published; beyond, they are dropped and the others resync."""

Deliver = Callable[[dict[str, Diff]], None]
"""Hands what a step changed, channel -> diff, to this node's clients."""


class PresenceRelay:
    """One node's link to the others' presence, through Redis.

    Args:
        url: ``redis://host:port/db``, the gateway's Redis.
        node: This node's id (new at every start).
        roster: The members this node knows (its own are put there by the caller).
        deliver: Hands the changes the other nodes made to this node's clients.
        limits: ``heartbeat`` and ``lease``.
        metrics: The gateway's metrics.
        channel: The Redis pub/sub channel the nodes share.
    """

    def __init__(
        self,
        url: str,
        *,
        node: str,
        roster: Roster,
        deliver: Deliver,
        limits: PresenceLimits,
        metrics: Metrics,
        channel: str = "rxstore:presence",
    ) -> None:
        self.url = url
        self.node = node
        self.roster = roster
        self.deliver = deliver
        self.limits = limits
        self.metrics = metrics
        self.channel = channel
        self.seq = 0
        """The number of this node's last change."""
        self._options: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
        self._redis: Any = None
        self._outbox: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self._last: dict[str, int] = {}
        """Node -> the number of its last change applied here (known nodes only)."""
        self._heard: dict[str, float] = {}
        """Node -> when it was last heard from (``time.monotonic()``)."""
        self._wanted: dict[str, float] = {}
        """Node -> when its state was last asked for."""
        self.heard_self = 0.0
        """When this node last heard its own heartbeat (its listener works)."""

    # -- this node's changes ---------------------------------------------------

    def put(self, channel: str, member: Member) -> None:
        """Tell the others that this node's ``member`` joined ``channel`` or changed its metadata."""
        self.seq += 1
        self._publish({"t": "put", "n": self.node, "s": self.seq, "c": channel, "m": member.to_wire()})

    def remove(self, channel: str, member: Member) -> None:
        """Tell the others that this node's ``member`` left ``channel``."""
        self.seq += 1
        wire = {"user": member.user, "conn": member.conn}
        self._publish({"t": "del", "n": self.node, "s": self.seq, "c": channel, "m": wire})

    def _publish(self, message: dict[str, Any]) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            # Redis is slow or gone: the others see the gap at the next heartbeat and ask for the state.
            self._outbox.clear()
        self._outbox.append(message)
        self._ready.set()

    # -- running ---------------------------------------------------------------

    async def run(self) -> None:
        """Publish, listen and keep the leases, until cancelled."""
        self._redis = aioredis.from_url(self.url, **self._options)
        tasks = [
            asyncio.create_task(self._publisher(), name="rxstore-presence-publish"),
            asyncio.create_task(self._listener(), name="rxstore-presence-listen"),
            asyncio.create_task(self._ticker(), name="rxstore-presence-tick"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Say ``bye`` (the others drop this node's members at once), forget theirs, close the connection."""
        for node in list(self._heard):
            self._forget(node)
        redis = self._redis
        if redis is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(redis.publish(self.channel, _dumps({"t": "bye", "n": self.node})), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(redis.aclose(), 2.0)
        self._redis = None

    async def _publisher(self) -> None:
        """Publish the outbox in order; what fails to go is lost (the others resync on the gap)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._outbox:
                message = self._outbox.popleft()
                if message["t"] == "state":  # built now: it holds every change numbered so far
                    message = self._state()
                try:
                    await self._redis.publish(self.channel, _dumps(message))
                except Exception as exc:
                    log.debug("[RealtimeGateway] presence publish failed: %s", exc)

    async def _ticker(self) -> None:
        """Send a heartbeat every ``heartbeat`` seconds; check the leases twice as often."""
        half = self.limits.heartbeat / 2
        beat = 0
        while True:
            await asyncio.sleep(half)
            beat ^= 1
            if beat:
                self._publish({"t": "beat", "n": self.node, "s": self.seq})
            self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        """Drop every node not heard from for ``lease`` seconds, and its members."""
        lease = self.limits.lease
        for node, heard in list(self._heard.items()):
            if now - heard > lease:
                log.warning(
                    "[RealtimeGateway] presence: node %s silent for %.1f s; its members leave",
                    node,
                    now - heard,
                )
                self.metrics.presence_nodes_expired.inc()
                self._forget(node)

    def _forget(self, node: str) -> None:
        self._heard.pop(node, None)
        self._last.pop(node, None)
        self._wanted.pop(node, None)
        self.metrics.presence_nodes.set(len(self._heard))
        diffs = self.roster.drop_node(node)
        if diffs:
            self.deliver(diffs)

    async def _listener(self) -> None:
        """Listen to the channel, (re)subscribing as needed; after each (re)subscription ask every node."""
        pause = 0.25
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                pause = 0.25
                self.metrics.presence_resyncs.inc()
                self._publish({"t": "want", "n": self.node, "of": "*"})
                while True:
                    message = await pubsub.get_message(timeout=self.limits.heartbeat)
                    if message is not None and message.get("type") == "message":
                        self.receive(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "[RealtimeGateway] presence cannot listen to Redis (%s); retrying in %.2g s", exc, pause
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 2.0)

    # -- the others' messages --------------------------------------------------

    def receive(self, raw: bytes | str) -> None:
        """Apply one message of the channel (a bad one is logged and skipped)."""
        try:
            message = json.loads(raw)
            node = message["n"]
            kind = message["t"]
        except (ValueError, TypeError, KeyError) as exc:
            log.debug("[RealtimeGateway] presence: unreadable message skipped: %s", exc)
            return
        if node == self.node:
            self.heard_self = time.monotonic()
            return
        try:
            self._apply(kind, node, message)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            log.debug("[RealtimeGateway] presence: bad %r message from %s skipped: %s", kind, node, exc)

    def _apply(self, kind: str, node: str, message: dict[str, Any]) -> None:
        if kind == "bye":
            self._forget(node)
            return
        if kind == "want":
            if message["of"] in (self.node, "*"):
                self._publish({"t": "state"})
            return
        self._heard[node] = time.monotonic()
        self.metrics.presence_nodes.set(len(self._heard))
        seq = int(message["s"])
        if kind == "state":
            channels = {c: [member_of(m) for m in members] for c, members in message["ch"].items()}
            self._last[node] = seq
            self._wanted.pop(node, None)
            self._deliver(self.roster.replace_node(node, channels))
            return
        last = self._last.get(node)
        if kind == "beat":
            if last != seq:
                self._want(node)
            return
        if last is None or seq > last + 1:
            self._want(node)  # a gap, or a node not known yet: its state replaces all
            return
        if seq <= last:
            return  # in the state applied already
        self._last[node] = seq
        channel = message["c"]
        member = member_of(message["m"])
        if kind == "put":
            diff = self.roster.put(node, channel, member)
        else:
            diff = self.roster.remove(node, channel, member.key)
        if diff:
            self.deliver({channel: diff})

    def _deliver(self, diffs: dict[str, Diff]) -> None:
        if diffs:
            self.deliver(diffs)

    def _want(self, node: str) -> None:
        """Ask ``node`` for its whole state, unless that was asked for within a heartbeat."""
        now = time.monotonic()
        if now - self._wanted.get(node, -1e9) < self.limits.heartbeat:
            return
        self._wanted[node] = now
        self.metrics.presence_resyncs.inc()
        self._publish({"t": "want", "n": self.node, "of": node})

    def _state(self) -> dict[str, Any]:
        """This node's whole state, numbered with its last change."""
        channels = {
            c: [m.to_wire() for m in members] for c, members in self.roster.of_node(self.node).items()
        }
        return {"t": "state", "n": self.node, "s": self.seq, "ch": channels}


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
