"""Bringing a new or returning client up to date: snapshot or replay, then live.

A new client (no cursor) gets a snapshot at a known seq, a returning one the
changes after its cursor (or a reset and a snapshot when its cursor is of
another log, trimmed, ahead, or names another change than the log holds
there). It is marked live in the same synchronous step that finds its cursor
at the tailer's head, so that it misses no batch and gets none twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rxstore.gateway.api import RowFilter
from rxstore.gateway.delivery.catchup import Behind, CatchUp
from rxstore.gateway.delivery.queues import Client, Delivery, OutFrame, Stalled
from rxstore.gateway.delivery.shared_reads import Part, SharedReads
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.queries.relations import RelationState
from rxstore.gateway.queries.windows import Refill, WindowState
from rxstore.protocol.events import LIVE, RESET, Change

if TYPE_CHECKING:
    from rxstore.gateway.queries.subscriptions import Subscription

__all__ = ["Sync"]

log = logging.getLogger("rxstore.gateway")

T = TypeVar("T")


class Sync:
    """Snapshots and replays, sent through the clients' sockets with backpressure.

    Args:
        log: The change log.
        delivery: The clients' sockets.
        metrics: The gateway's metrics.
        head: The tailer's head (the last seq broadcast), read when asked.
        events_for: ``(client, changes, refill) -> [event, payload] pairs`` the client may see (a
            window that must be read again noted in ``refill``, the pairs stopping after its change).
        authorize: The row filter, failing closed (``None``: every row).
        names: Topic -> socket event name.
        primary_keys: Topic -> primary key.
        batch_size: Most changes per read of the log.
        read_bytes: Most bytes of rows per read of the log.
        snapshot_concurrency: Most snapshots read and sent at once.
        behind: What happens to a live client over its bounds (see :mod:`~rxstore.gateway.delivery.catchup`).
    """

    def __init__(
        self,
        log: ChangeLog,
        delivery: Delivery,
        metrics: Metrics,
        *,
        head: Callable[[], int],
        events_for: Callable[[Client, Sequence[Change], Refill], list[Any]],
        authorize: RowFilter | None,
        names: dict[str, str],
        primary_keys: Mapping[str, str],
        batch_size: int,
        read_bytes: int,
        snapshot_concurrency: int,
        behind: Behind = "catch_up",
    ) -> None:
        self.log = log
        self.delivery = delivery
        self.metrics = metrics
        self.head = head
        self.events_for = events_for
        self.authorize = authorize
        self.names = names
        self.primary_keys = primary_keys
        self.batch_size = batch_size
        self.read_bytes = read_bytes
        self.pending = 0
        """Clients being brought up to date now (snapshot or replay), not yet live."""
        self.shared = SharedReads(
            log,
            delivery,
            metrics,
            authorize=authorize,
            primary_keys=primary_keys,
            slots=asyncio.Semaphore(snapshot_concurrency),
        )
        self.catch_ups = CatchUp(delivery, self, metrics, behind=behind)
        """Live clients that fell behind, catching up from the log."""
        self.refile: Callable[[Subscription], None] = lambda sub: None
        """Files a subscription again in the index (a relation read again; set by the gateway)."""

    async def run(self, client: Client) -> None:
        """Bring ``client`` up to date and mark it live; drop or disconnect it on failure.

        The caller counted the client in :attr:`pending` (:meth:`admit`) when its
        connect arrived, and releases it (:meth:`release`) when this task ends: see
        ``RealtimeGateway(max_pending_syncs=)``.
        """
        await asyncio.sleep(0)  # let python-socketio finish the handshake first
        async with client.lock:
            await self.guarded(client, self._bring_up_to_date(client))

    def admit(self) -> None:
        """Count one more client being brought up to date (from its connect's receipt)."""
        self.pending += 1
        self.metrics.pending_syncs.set(self.pending)

    def release(self) -> None:
        """Count one client fewer: it is live, gone, or its connect was refused."""
        self.pending -= 1
        self.metrics.pending_syncs.set(self.pending)

    async def guarded(self, client: Client, work: Awaitable[T]) -> T | None:
        """Await ``work`` for ``client``; on failure drop (stalled) or disconnect it and return ``None``."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Stalled as exc:
            self.delivery.drop_stalled(client, exc)
        except Exception:
            log.exception("[RealtimeGateway] could not bring %s up to date", client.sid)
            await self.delivery.sio.disconnect(client.sid)
        return None

    async def _bring_up_to_date(self, client: Client) -> bool:
        cursor = client.cursor
        horizon = await self.log.horizon()
        epoch = await self.log.epoch()
        reason = None
        if cursor is not None and client.epoch is not None and client.epoch != epoch:
            reason = "epoch_changed"  # a cursor of another log: another database, a restored backup
        elif cursor is not None and cursor < horizon:
            reason = "cursor_expired"  # the changes after it were trimmed
        elif cursor is not None and cursor > await self.log.head():
            reason = "cursor_ahead"  # from another database (restored, recreated)
        elif cursor is not None and not await self._knows(cursor, client.cursor_ts):
            reason = "cursor_unknown"  # another change at the cursor: a restored backup, another database
        if cursor is None or reason is not None:
            if reason is not None:
                await self.delivery.emit(
                    client,
                    RESET,
                    {"reason": reason, "cursor": cursor, "horizon": horizon, "epoch": epoch},
                )
            await self.snapshot(client)
        else:  # a resume: a window or a relation is read again (the gateway kept no state of it)
            client.stale = [s for s in client.subscriptions.values() if s.subset.windowed or s.relational]
        client.epoch = epoch  # sent in rxstore:live
        await self.catch_up(client)
        return True

    async def _knows(self, cursor: int, ts: float | None) -> bool:
        """Whether the change at ``cursor`` is the client's: its commit time is ``ts`` (one read by seq).

        A client that sent no ``ts`` is taken at its word; a change trimmed away
        (``cursor <= horizon``, the horizon read again: a trim may have just run)
        cannot be checked, and its cursor goes on to the replay, which notices a
        trim (``cursor_expired``).
        """
        if ts is None:
            return True
        found = await self.log.ts_at(cursor)
        return found == ts if found is not None else cursor <= await self.log.horizon()

    async def snapshot(self, client: Client) -> None:
        """Stream the client's topics (or subscriptions) at one log position, a page of rows at a time.

        Each topic goes in ``rxstore:snapshot`` frames of at most ``frame_bytes``
        (``"more": true`` on all but its last); the next page is read only once
        the client has taken the previous frame, so a client that does not read
        holds a frame or two, never the table. Clients that want the same topics
        at once share one read (see :mod:`~rxstore.gateway.delivery.shared_reads`).
        """
        if client.subscriptions:
            client.stale = []
            client.cursor = await self.snapshot_subscriptions(client, list(client.subscriptions.values()))
            return
        topics = sorted(client.topics)
        parts: list[Part] = [(topic, None) for topic in topics]
        seq, skip = await self.shared.stream(client, parts, [self.names[topic] for topic in topics])
        self.metrics.snapshots.inc()
        client.cursor = seq
        client.skip = skip

    async def snapshot_subscriptions(
        self, client: Client, subscriptions: Sequence[Subscription], *, refuse: bool = False
    ) -> int:
        """Stream ``subscriptions``' rows at one log position under their ids; return that seq.

        Each subscription's changes up to that position (and those its snapshot
        holds above it) are left out of what it is sent later. A relation's values
        are read in the same transaction (and it is filed again under them).

        Raises:
            SubsetError: ``refuse`` and a relation's subquery selects too many rows.
        """
        parts: list[Part] = [(sub.topic, None if sub.subset.whole else sub.subset) for sub in subscriptions]
        windows = [WindowState(sub.subset, sub.key) if sub.subset.windowed else None for sub in subscriptions]
        relations = [self._relation(sub, refuse) for sub in subscriptions]
        seq, skip = await self.shared.stream(
            client, parts, [sub.id for sub in subscriptions], windows, relations
        )
        self.metrics.snapshots.inc()
        for sub, window, relation in zip(subscriptions, windows, relations, strict=True):
            sub.since, sub.skip, sub.window = seq, skip, window
            if relation is not None:
                if window is not None:  # a window over a relation: its rows checked with the values
                    window.subset = relation.bound
                sub.relation = relation
                self.refile(sub)
                if relation.ended:
                    self.metrics.relations_ended.inc()
        return seq

    def _relation(self, sub: Subscription, refuse: bool) -> RelationState | None:
        """A relation's state to load with its snapshot (``None``: no relation)."""
        term = sub.subset.relation if sub.relational else None
        if term is None:
            return None
        return RelationState(sub.subset, self.primary_keys[term.value.topic], refuse=refuse)

    async def refill(self, client: Client) -> None:
        """Read again the windows and relations of ``client`` that a change left short (``client.stale``).

        Each is a snapshot of the window at one log position ``P`` (read with the
        head in one transaction), at or after the change that left it short: its
        changes up to ``P`` are left out of what follows (see
        :mod:`~rxstore.gateway.queries.windows`).
        """
        stale, client.stale = client.stale, []
        windows = [sub for sub in stale if client.subscriptions.get(sub.id) is sub]
        if windows:
            moved = sum(_moved(sub) for sub in windows)
            self.metrics.relation_moves.inc(moved)
            self.metrics.window_refills.inc(len(windows) - moved)
            await self.snapshot_subscriptions(client, windows)

    async def catch_up(self, client: Client, *, announce: bool = True) -> None:
        """Replay the changes after the client's cursor, then mark it live at the head.

        Args:
            client: The client, its cursor set.
            announce: Send ``rxstore:live`` at the head; ``False`` for a client that was
                live already (see :mod:`~rxstore.gateway.delivery.catchup`), unless it was reset here.
        """
        prefetch: asyncio.Future[list[Change]] | None = None
        delivery = self.delivery
        try:
            while True:
                if client.stale:
                    await self.refill(client)
                cursor = client.cursor
                assert cursor is not None
                head = self.head()
                if cursor >= head:
                    # Synchronous from the check to here: the tailer cannot slip a batch in between.
                    client.live = True
                    if announce:
                        delivery.enqueue(client, OutFrame(LIVE, {"seq": cursor, "epoch": client.epoch}))
                    return
                if prefetch is None:
                    prefetch = asyncio.ensure_future(
                        self.log.read(cursor, limit=self.batch_size, max_bytes=self.read_bytes)
                    )
                changes = await prefetch
                prefetch = None
                if not changes:
                    client.cursor = self.head()
                    continue
                if changes[0].seq != cursor + 1 and cursor < await self.log.horizon():
                    # Trimmed between our horizon check and this read: start over from a snapshot.
                    horizon = await self.log.horizon()
                    await delivery.emit(
                        client, RESET, {"reason": "cursor_expired", "cursor": cursor, "horizon": horizon}
                    )
                    await self.snapshot(client)
                    announce = True  # it waits for rxstore:live after a reset
                    continue
                refill = Refill()
                events = self.events_for(client, changes, refill)
                if refill.windows:  # stops after refill.seq: those windows are read again first
                    client.stale.extend(refill.windows)
                    changes = [change for change in changes if change.seq <= refill.seq]
                elif changes[-1].seq < self.head():  # read the next page while this one is sent
                    prefetch = asyncio.ensure_future(
                        self.log.read(changes[-1].seq, limit=self.batch_size, max_bytes=self.read_bytes)
                    )
                client.cursor = changes[-1].seq
                if events:
                    self.metrics.replayed.inc(len(events))
                    for frame in delivery.batch_frames(events):
                        await delivery.send(client, frame)
        finally:
            if prefetch is not None:
                prefetch.cancel()


def _moved(sub: Subscription) -> bool:
    """Whether ``sub`` is read again for its relation (``rxstore_relation_moves``), not its window."""
    if not sub.relational:
        return False
    return sub.window is None or sub.relation is None or sub.relation.moved
