"""Client-side counters and latencies, readable as snapshots.

Counters are plain integer attributes bumped on the hot path (no locks, no
formatting); :meth:`Metrics.snapshot` turns them into a frozen value and
:meth:`Metrics.snapshots` into an observable of such values.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping

import attrs
import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase

__all__ = ["Metrics", "MetricsSnapshot", "percentile"]


def percentile(values: deque[float] | list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of non-empty ``values`` (nearest rank).

    Example:
        >>> percentile([3.0, 1.0, 2.0, 4.0], 0.5)
        2.0
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@attrs.frozen
class MetricsSnapshot:
    """The root's counters at one moment.

    Attributes:
        events: Events received since start (every socket event, batches unpacked).
        frames: Socket frames received.
        changes_applied: Change events routed to stores (duplicates excluded).
        duplicates: Changes dropped because their seq was not newer than the cursor.
        errors: Errors reported (bad payloads, failing reducers).
        reconnects: Successful connections after the first.
        replayed: Changes received while replaying after a (re)connect.
        outbox_depth: Messages waiting to be sent.
        events_per_second: Events received per second over the last window.
        lag_seconds: Commit-to-receive lag of the last change (``None`` before any).
        lag_p99_seconds: 99th percentile of the recent lags (``None`` before any).
        cursor: Seq of the last change received.
        reduce_seconds: Per store, the mean time to apply one event (sampled).

    Example:
        ``root.metrics.snapshot()`` takes one now;
        ``root.metrics.snapshots(5.0, scheduler=AsyncIOScheduler(loop)).subscribe(print)``
        prints one every 5 s on the event loop.

        >>> snapshot = Metrics().snapshot()
        >>> snapshot.events, snapshot.lag_seconds, snapshot.cursor
        (0, None, None)
    """

    events: int
    frames: int
    changes_applied: int
    duplicates: int
    errors: int
    reconnects: int
    replayed: int
    outbox_depth: int
    events_per_second: float
    lag_seconds: float | None
    lag_p99_seconds: float | None
    cursor: int | None
    reduce_seconds: Mapping[str, float] = attrs.field(factory=dict)


@attrs.define
class Metrics:
    """Mutable counters of a :class:`~rxstore.client.root.RootStore`.

    Example:
        >>> m = Metrics()
        >>> m.events += 3
        >>> m.snapshot().events
        3
    """

    events: int = 0
    frames: int = 0
    changes_applied: int = 0
    duplicates: int = 0
    errors: int = 0
    reconnects: int = 0
    replayed: int = 0
    outbox_depth: int = 0
    cursor: int | None = None
    lags: deque[float] = attrs.field(factory=lambda: deque(maxlen=1024))
    reduce_seconds: dict[str, float] = attrs.field(factory=dict)
    _rate_mark: tuple[float, int] = attrs.field(factory=lambda: (time.monotonic(), 0))
    _rate: float = 0.0

    def record_lag(self, commit_ts: float) -> None:
        """Record the lag from a change's commit time (Unix seconds) to now."""
        self.lags.append(time.time() - commit_ts)

    def record_reduce(self, store: str, seconds: float, events: int) -> None:
        """Fold one timed delivery of ``events`` to ``store`` into its mean per-event time."""
        per_event = seconds / events
        previous = self.reduce_seconds.get(store)
        self.reduce_seconds[store] = per_event if previous is None else previous * 0.9 + per_event * 0.1

    def snapshot(self) -> MetricsSnapshot:
        """Return the counters now; the event rate is measured since the previous call."""
        now = time.monotonic()
        then, events_then = self._rate_mark
        if now - then >= 0.05:
            self._rate = (self.events - events_then) / (now - then)
            self._rate_mark = (now, self.events)
        lags = self.lags
        p99 = percentile(lags, 0.99) if lags else None
        return MetricsSnapshot(
            events=self.events,
            frames=self.frames,
            changes_applied=self.changes_applied,
            duplicates=self.duplicates,
            errors=self.errors,
            reconnects=self.reconnects,
            replayed=self.replayed,
            outbox_depth=self.outbox_depth,
            events_per_second=self._rate,
            lag_seconds=lags[-1] if lags else None,
            lag_p99_seconds=p99,
            cursor=self.cursor,
            reduce_seconds=dict(self.reduce_seconds),
        )

    def snapshots(
        self, interval: float = 1.0, *, scheduler: SchedulerBase | None = None
    ) -> Observable[MetricsSnapshot]:
        """Emit a snapshot every ``interval`` seconds (on ``scheduler``)."""
        return reactivex.interval(interval, scheduler=scheduler).pipe(ops.map(lambda _: self.snapshot()))
