"""Paging a window (``rxstore:more``): the rows after the client's last one, at its own log position.

A client holds a window's first ``limit`` rows as of its position ``C`` (the
gateway's :class:`~rxstore.gateway.queries.windows.WindowState` of it is at
``C`` too). ``rxstore:more`` with ``n`` widens it to ``limit + n`` rows without
sending again what the client has:

* the client leaves live delivery and takes every frame queued for it (it has
  applied everything up to ``C``);
* a window that is not full holds every row of its subset: nothing comes;
* else one read transaction is opened, at ``P >= C``; if no change of the
  window's tables (a relation's related table included) lies after ``C`` up to
  ``P``, nor above ``P`` in the read (its ``skip``), the window is at ``P`` what
  it is at ``C``: the rows after the last row held (its order values as an
  ``after`` keyset), at most ``n`` that ``authorize`` lets the client see, are
  sent as ``rxstore:page`` frames and added to the window: together, the first
  ``limit + n`` rows at ``P``. The changes after ``C`` are read to know it
  (one read of at most :data:`MOST_CHANGES`);
* otherwise (a write to the window's tables since ``C``, more changes since
  than one read, a refill pending, a relation not followed, a last row whose
  order values hold NaN or an infinity, which no ``after`` keyset takes) the rows beyond
  the window cannot be put together with the client's at one position: the
  widened window is read whole, an ``rxstore:snapshot`` at a position ``P``
  (a refill), exact either way.

The client then catches up from ``C`` and is live again; the subscription's
limit is ``limit + n`` from then on (see docs/protocol.md, "Paging").
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Final

import attrs

from rxstore.gateway.api import RowFilter
from rxstore.gateway.delivery.queues import Client, Delivery, OutFrame
from rxstore.gateway.delivery.sync import Sync
from rxstore.gateway.log.contract import ChangeLog, SnapshotReader
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.queries.windows import WindowState
from rxstore.protocol.events import PAGE
from rxstore.protocol.subsets import Subset
from rxstore.protocol.windows import keyset_of

if TYPE_CHECKING:
    from rxstore.gateway.queries.subscriptions import Subscription

__all__ = ["MOST_CHANGES", "Pages"]

MOST_CHANGES: Final = 1000
"""Most changes read to know that none since the client's position touched the window's tables."""

_FIRST_READ = 16
"""Rows asked for by the first read of a page (doubled while ``authorize`` hides them)."""
_MOST_READ = 1000
"""Most rows asked for by one read."""


class Pages:
    """Widens windows on ``rxstore:more``: a page of the rows after the client's last, or a refill.

    Args:
        log: The change log.
        delivery: The clients' sockets.
        sync: Snapshots and replays (a refill, the catch-up after the page).
        metrics: The gateway's metrics (``rxstore_window_pages``, ``rxstore_window_refills``).
        authorize: The row filter, failing closed (``None``: every row).
        slots: Bounds the reads open at once (shared with snapshots: ``snapshot_concurrency``).
    """

    def __init__(
        self,
        log: ChangeLog,
        delivery: Delivery,
        sync: Sync,
        metrics: Metrics,
        *,
        authorize: RowFilter | None,
        slots: asyncio.Semaphore,
    ) -> None:
        self.log = log
        self.delivery = delivery
        self.sync = sync
        self.metrics = metrics
        self.authorize = authorize
        self.slots = slots

    async def more(self, client: Client, sub: Subscription, subset: Subset) -> tuple[int, int]:
        """Make ``sub`` follow ``subset`` (its window widened); ``(seq, rows added)``.

        The caller holds ``client.lock``. The rows are sent, and the client is live
        again (or catching up), when this returns.

        Raises:
            Stalled: The client took no frame for ``client_send_timeout``.
        """
        was_live = client.live
        if was_live:  # it has every change up to the head (kept lazily by the tailer)
            client.cursor = max(client.cursor or 0, self.sync.head())
        client.live = False  # the tailer leaves it to the catch-up below
        await self.delivery.drain(client)
        window = sub.window
        held = len(window.entries) if window is not None else 0
        seq = None
        if was_live and window is not None and sub not in client.stale and _followed(sub):
            seq = await self._append(client, sub, subset, window)
        if seq is None:  # read the widened window whole, at one position
            client.stale = [stale for stale in client.stale if stale is not sub]
            sub.subset = subset
            self.metrics.window_refills.inc()
            seq = await self.sync.snapshot_subscriptions(client, [sub])
        await self.sync.catch_up(client)
        window = sub.window
        return seq, max(0, len(window.entries) - held) if window is not None else 0

    async def _append(
        self, client: Client, sub: Subscription, subset: Subset, window: WindowState
    ) -> int | None:
        """Send the rows after the window's last at the client's position; ``None``: not at it."""
        cursor = client.cursor
        assert cursor is not None
        rows: list[dict[str, Any]] = []
        n = (subset.limit or 0) - (sub.subset.limit or 0)
        seq = cursor
        if window.full and window.entries:  # not full: it holds every row of its subset already
            keyset = keyset_of(window.last()[0])
            if any(type(value) is float and not math.isfinite(value) for value in keyset):
                return None  # NaN, an infinity (or text that reads as one): no keyset for SQL
            tables = _tables(sub)
            async with self.slots, self.log.snapshot_reader(tables) as reader:
                seq = reader.seq
                if reader.skip or not await self._untouched(tables, cursor, seq):
                    return None  # a write to the window's tables since the client's position
                after = attrs.evolve(sub.subset, after=keyset, limit=None)
                rows = await self._rows(reader, client, after, n)
        key = window.key
        if rows:
            records = rows if subset.columns is None else [subset.project(row, key) for row in rows]
            for frame in self._frames(sub.id, subset.topic, seq, records):
                await self.delivery.send(client, frame)
        sub.subset = subset
        window.subset = attrs.evolve(window.subset, limit=subset.limit)
        window.load(rows)
        self.metrics.window_pages.inc()
        return seq

    async def _untouched(self, tables: list[str], cursor: int, seq: int) -> bool:
        """Whether no change of ``tables`` lies after ``cursor`` up to ``seq`` (``False``: cannot tell)."""
        if seq <= cursor:
            return seq == cursor
        changes = await self.log.read(cursor, limit=MOST_CHANGES, max_bytes=self.sync.read_bytes)
        if not changes or changes[-1].seq < seq:
            return False  # more since than one read holds
        return not any(change.topic in tables for change in changes if change.seq <= seq)

    async def _rows(
        self, reader: SnapshotReader, client: Client, after: Subset, n: int
    ) -> list[dict[str, Any]]:
        """The first ``n`` rows of ``after`` (in its order) that the client may see."""
        authorize, user, topic = self.authorize, client.user, after.topic
        rows: list[dict[str, Any]] = []
        ask = min(max(n, _FIRST_READ), _MOST_READ)
        while len(rows) < n:
            page, more = await reader.fetch(topic, ask, after)
            rows.extend(row for row in page if authorize is None or authorize(user, topic, row))
            if not more:
                break
            ask = min(ask * 2, _MOST_READ)
        return rows[:n]

    def _frames(self, event: str, topic: str, seq: int, records: list[dict[str, Any]]) -> list[OutFrame]:
        """``records`` as ``rxstore:page`` frames of at most ``frame_bytes`` (a bigger row alone)."""
        frame = OutFrame(PAGE, {"topic": topic, "event": event, "seq": seq, "records": records})
        self.delivery.encode(frame)
        if frame.nbytes <= self.delivery.frame_bytes or len(records) <= 1:
            return [frame]
        half = len(records) // 2
        return self._frames(event, topic, seq, records[:half]) + self._frames(
            event, topic, seq, records[half:]
        )


def _followed(sub: Subscription) -> bool:
    """Whether its window is followed as is (a relation's values read, not ended)."""
    if not sub.relational:
        return True
    relation = sub.relation
    return relation is not None and not relation.ended


def _tables(sub: Subscription) -> list[str]:
    """The tables its read sees: its own, and a relation's related table."""
    term = sub.subset.relation
    return [sub.topic] if term is None else sorted({sub.topic, term.value.topic})
