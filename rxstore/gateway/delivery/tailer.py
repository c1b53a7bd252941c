"""The live path: one reader of the change log handing each batch to every live client.

The tailer reads from the last seq it broadcast (its head) and hands each
batch, in one synchronous step with the head update, to the queue of every
live client: a client marked live at the head (see :mod:`rxstore.gateway.delivery.sync`)
misses no batch and gets none twice. Clients of the same topics get the same
frames, encoded once, unless a row filter makes each client's own. Clients
with live-query subsets get theirs through the subscription index (see
:mod:`rxstore.gateway.queries.index`): per change, only the subscriptions it
may concern are looked at. A client a batch would put over its bounds leaves
live delivery with the last change it was handed as its cursor, and catches
up from the log (see :mod:`rxstore.gateway.delivery.catchup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from logging import DEBUG
from typing import Any

from rxstore.gateway.api import RowFilter
from rxstore.gateway.delivery.event_frames import EventFrames, joins
from rxstore.gateway.delivery.queues import Client, Delivery, OutFrame
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.queries.index import SubscriptionIndex
from rxstore.gateway.queries.subscriptions import Subscription, events_of_subscriptions, subscription_event
from rxstore.gateway.queries.visibility import events_for
from rxstore.gateway.queries.windows import REFILL, Refill
from rxstore.protocol.events import Change

__all__ = ["Tailer"]

log = logging.getLogger("rxstore.gateway")
_MISSING: Any = object()


class Tailer:
    """Reads the change log on from its head and broadcasts what it reads; trims the log.

    Args:
        log: The change log.
        delivery: The clients' queues.
        metrics: The gateway's metrics.
        clients: The gateway's connected clients by sid (shared, not copied).
        authorize: The row filter, failing closed (``None``: every row).
        names: Topic -> socket event name.
        primary_keys: Topic -> primary key.
        key_only: Topic -> primary key, for topics whose ``old`` is the key alone.
        batch_size: Most changes per read.
        read_bytes: Most bytes of rows per read.
        coalesce: Shortest time, in seconds, between two live broadcasts.
        index: The live-query subscriptions of indexed clients.
    """

    def __init__(
        self,
        log: ChangeLog,
        delivery: Delivery,
        metrics: Metrics,
        clients: dict[str, Client],
        *,
        authorize: RowFilter | None,
        names: dict[str, str],
        primary_keys: dict[str, str],
        key_only: dict[str, str],
        batch_size: int,
        read_bytes: int,
        coalesce: float,
        index: SubscriptionIndex[Subscription] | None = None,
    ) -> None:
        if coalesce < 0:
            raise ValueError(f"coalesce must be >= 0 seconds, got {coalesce}")
        self.log = log
        self.delivery = delivery
        self.metrics = metrics
        self.clients = clients
        self.plain: dict[str, Client] = {}
        """The clients that follow whole tables only (the others are indexed), kept by the sessions."""
        self.authorize = authorize
        self.names = names
        self.primary_keys = primary_keys
        self.key_only = key_only
        self.batch_size = batch_size
        self.read_bytes = read_bytes
        self.coalesce = coalesce
        self.index = index if index is not None else SubscriptionIndex[Subscription]()
        self.head = 0
        """The last seq broadcast."""
        self.refill: Callable[[Client, list[Any]], None] | None = None
        """Takes a client out of live delivery to read windows again (set by the gateway)."""
        self.joined: EventFrames | bool | None = None
        """Frames joined from events encoded once; ``False``: not with this server's packets."""

    def events_for(
        self, client: Client, changes: Sequence[Change], refill: Refill | None = None
    ) -> list[Any]:
        """The ``[event, payload]`` pairs of ``changes`` this client may see and has not seen.

        A window that must be read again is noted in ``refill`` (the pairs stop after its change).
        """
        skip, cursor = client.skip, client.cursor or 0
        if client.subscriptions:
            return events_of_subscriptions(changes, client.by_topic, cursor, self.authorize, refill)
        events = events_for(
            changes,
            user=client.user,
            topics=client.topics,
            cursor=cursor,
            skip=skip,
            authorize=self.authorize,
            names=self.names,
            primary_keys=self.primary_keys,
            key_only=self.key_only,
        )
        if skip and cursor >= max(skip):
            client.skip = frozenset()
        return events

    async def tail(self) -> None:
        """Read and broadcast forever; a failed read is retried, a failed broadcast logged."""
        log_ = self.log
        loop = asyncio.get_running_loop()
        last_broadcast = -float("inf")
        backlog = False
        while True:
            if self.coalesce and not backlog:
                pause = last_broadcast + self.coalesce - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
            try:
                changes = await log_.read(self.head, limit=self.batch_size, max_bytes=self.read_bytes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.healthy.set(0)
                log.warning("[RealtimeGateway] reading the change log failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self.metrics.healthy.set(1 if log_.healthy else 0)
            if not changes:
                await log_.wait(1.0)
                continue
            backlog = len(changes) >= self.batch_size
            if self.coalesce and not backlog:  # a read cut by max_bytes is a backlog too
                with contextlib.suppress(Exception):
                    backlog = changes[-1].seq < await log_.head()
            last_broadcast = loop.time()
            try:
                self.broadcast(changes)
            except Exception:  # never let one bad batch make the node deaf
                log.exception(
                    "[RealtimeGateway] broadcasting seq %d-%d failed", changes[0].seq, changes[-1].seq
                )

    def broadcast(self, changes: Sequence[Change]) -> None:
        """Hand a batch to every live client; synchronous with the head update.

        A failure for one client (a bug) drops that client, which resumes from
        its own cursor later: the others, and the head, are not affected.
        """
        previous = self.head  # every live client has every change up to it
        self.head = head = changes[-1].seq
        metrics = self.metrics
        metrics.changes.inc(len(changes))
        metrics.head.set(head)
        metrics.lag.set(max(0.0, time.time() - changes[-1].ts))
        shared: dict[frozenset[str], list[OutFrame]] = {}
        delivery = self.delivery
        # At DEBUG (one check per batch), the frames made and sent are recorded for one line per change.
        trace = _Trace(delivery.batch_frames, self._send) if log.isEnabledFor(DEBUG) else None
        batch_frames = delivery.batch_frames if trace is None else trace.batch_frames
        send = self._send if trace is None else trace.send
        first = changes[0].seq
        for client in list(self.plain.values()):  # enqueue may drop a slow client
            if not client.live:
                continue
            try:
                cursor = client.cursor
                if self.authorize is None and not client.skip and cursor is not None and cursor < first:
                    # Clients of the same topics get the same frames, encoded once.
                    frames = shared.get(client.topics)
                    if frames is None:
                        frames = shared[client.topics] = batch_frames(self.events_for(client, changes))
                else:
                    frames = batch_frames(self.events_for(client, changes))
                client.cursor = head
                send(client, frames, max(cursor or 0, previous))
            except Exception:
                log.exception("[RealtimeGateway] sending %d-%d to %s failed", first, head, client.sid)
                delivery.drop(client)
        if self.index.count:
            joined = self.event_frames() if trace is None else None
            try:
                self._broadcast_indexed(
                    changes, previous, batch_frames if joined is None else joined.frames, send
                )
            finally:
                if joined is not None:
                    joined.forget()
        if trace is not None:
            trace.log(changes)

    def event_frames(self) -> EventFrames | None:
        """The broadcasts' :class:`EventFrames`, made on first use; ``None`` if frames cannot be joined."""
        joined = self.joined
        if joined is None:
            delivery = self.delivery
            packet_class = delivery.sio.packet_class
            joined = self.joined = (
                EventFrames(packet_class, delivery.frame_bytes, delivery.batch_frames)
                if joins(packet_class)
                else False
            )
        return joined if isinstance(joined, EventFrames) else None

    def _broadcast_indexed(
        self,
        changes: Sequence[Change],
        previous: int,
        batch_frames: Callable[[list[Any]], list[OutFrame]],
        send: Callable[[Client, Sequence[OutFrame], int], None],
    ) -> None:
        """Route a batch to the indexed clients: per change, only the subscriptions it may concern.

        A live indexed client that a batch does not concern keeps its old
        ``cursor``: while it is live its position is the head (see
        ``LiveQueries.subscribe``, which reads it from there); ``previous`` is the
        head before this batch. Frames are made with ``batch_frames`` and queued with
        ``send`` (the delivery's and :meth:`_send`, or a :class:`_Trace`'s).
        """
        authorize, candidates, clients = self.authorize, self.index.candidates, self.clients
        events: dict[str, list[Any]] = {}
        stopped: dict[str, Refill] = {}
        """Clients whose windows must be read again: they stop after the change that says so."""
        for change in changes:
            seq = change.seq
            # Without a row filter, subscriptions alike (id, subset, key_only) get one shared event.
            # Equal subsets are one object (LiveQueries.new), so the subset is compared by its id.
            alike: dict[tuple[str, int, bool], list[Any] | None] | None = None if authorize else {}
            for sub in candidates(change):
                if seq <= sub.since or (sub.skip and seq in sub.skip):
                    continue
                if stopped and sub.client in stopped and stopped[sub.client].seq < seq:
                    continue
                if sub.stateful:  # a window's rows, a relation's values: its own, never shared
                    owner = clients.get(sub.client)  # moved only for a live client (else its replay does)
                    if owner is None or not owner.live or seq <= (owner.cursor or 0):
                        continue
                    event = subscription_event(sub, change, authorize)
                    if event is REFILL:
                        stopped.setdefault(sub.client, Refill(seq)).windows.append(sub)
                        events.setdefault(sub.client, [])
                        continue
                elif alike is None:
                    event = subscription_event(sub, change, authorize)
                else:
                    key = (sub.id, id(sub.subset), sub.key_only)
                    found_event = alike.get(key, _MISSING)  # one lookup
                    if found_event is _MISSING:
                        event = alike[key] = subscription_event(sub, change, None)
                    else:
                        event = found_event
                if event is not None:
                    found = events.get(sub.client)
                    if found is None:
                        events[sub.client] = [event]
                    else:
                        found.append(event)
        first, head = changes[0].seq, changes[-1].seq
        shared: dict[int | tuple[int, ...], list[OutFrame]] = {}
        client_of = clients.get
        for sid, mine in events.items():  # the clients this batch concerns, not every indexed one
            client = client_of(sid)
            if client is None or not client.live:
                continue
            cursor = client.cursor  # a live indexed client's cursor is the head; kept up to date lazily
            refill = stopped.get(sid) if stopped else None
            client.cursor = head if refill is None else refill.seq
            try:
                if cursor is not None and cursor >= first:  # went live inside this batch
                    mine = [e for e in mine if e[1]["seq"] > cursor]
                # Clients given the very same events get the same frames; each event is encoded once.
                same = id(mine[0]) if len(mine) == 1 else tuple(map(id, mine))  # one event: its id
                frames = shared.get(same)
                if frames is None:
                    frames = shared[same] = batch_frames(mine)
                send(client, frames, previous if cursor is None or cursor < previous else cursor)
                if refill is not None and self.refill is not None:
                    self.refill(client, refill.windows)
            except Exception:
                log.exception("[RealtimeGateway] sending %d-%d to %s failed", first, head, client.sid)
                self.delivery.drop(client)

    def _send(self, client: Client, frames: Sequence[OutFrame], before: int) -> None:
        """Queue ``frames`` for ``client``, whose position before them is ``before``.

        If one would put the client over its bounds, the rest are not queued and its
        cursor becomes the seq of the last change it was handed (queued or written):
        a client that catches up (:mod:`~rxstore.gateway.delivery.catchup`) replays from there.
        """
        enqueue = self.delivery.enqueue
        if len(frames) == 1:  # the usual case: one frame per client and broadcast
            if not enqueue(client, frames[0]):
                client.cursor = before
            return
        handed = before
        for frame in frames:
            if not enqueue(client, frame):
                client.cursor = handed
                return
            if frame.last is not None:
                handed = frame.last


class _Trace:
    """One broadcast at DEBUG: the frames it makes and whom it sends them to, told per change.

    Args:
        batch_frames: The delivery's, whose frames' events are kept.
        send: The tailer's, whose clients are counted.
    """

    def __init__(
        self,
        batch_frames: Callable[[list[Any]], list[OutFrame]],
        send: Callable[[Client, Sequence[OutFrame], int], None],
    ) -> None:
        self._batch_frames = batch_frames
        self._send = send
        self.events: dict[int, list[Any]] = {}
        """The events of each list of frames made, by its id (the lists live until the batch is sent)."""
        self.recipients: Counter[int] = Counter()
        """Seq -> clients handed its change."""

    def batch_frames(self, events: list[Any]) -> list[OutFrame]:
        """The delivery's ``batch_frames``, its events kept."""
        frames = self._batch_frames(events)
        self.events[id(frames)] = events
        return frames

    def send(self, client: Client, frames: Sequence[OutFrame], before: int) -> None:
        """The tailer's ``_send``, each change's clients counted."""
        self._send(client, frames, before)
        self.recipients.update({event[1]["seq"] for event in self.events[id(frames)]})

    def log(self, changes: Sequence[Change]) -> None:
        """One DEBUG line per change: seq, table, op, and the number of clients handed it."""
        for change in changes:
            log.debug(
                "[RealtimeGateway] broadcast: seq=%d table=%s op=%s clients=%d",
                change.seq,
                change.topic,
                change.op,
                self.recipients[change.seq],
            )
