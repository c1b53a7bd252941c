"""The router: incoming frames -> events -> the hot stream and its keyed views.

This is the synchronous floor between the transport and the stores. Each
frame (one event, a batch, or a control frame) is checked, turned into
:class:`~rxstore.protocol.events.Event` values, deduplicated against the cursor, and
published on an :class:`EventStream`:

* per event, on the stream itself (``root.events``: every event, hot);
* per frame, on the keyed views of :meth:`EventStream.named`: one shared dict
  from event name to the views that want it, so an event costs the same with
  one store or a hundred, and a view gets one notification per frame (the
  frame's events of its names), not one per event.

Stores subscribe to a keyed view with ``filter`` + ``scan`` (see
:mod:`rxstore.operators`). :meth:`Router.on_frame` is the public entry point
the transport calls, and so may a test harness or a benchmark.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from logging import DEBUG
from typing import Any, Protocol

from rxstore.client.metrics import Metrics
from rxstore.client.snapshots.chunks import SnapshotChunks
from rxstore.client.snapshots.pages import page_event
from rxstore.operators.keyed import EventStream, Frame, KeyedView
from rxstore.protocol.errors import ProtocolError, RxStoreError, StoreError
from rxstore.protocol.events import (
    BATCH,
    CLOSING,
    CONTROL_PREFIX,
    LIVE,
    PAGE,
    RESET,
    ROW_OF,
    SNAPSHOT,
    Event,
    EventKind,
    check_envelope,
)
from rxstore.protocol.frames import ChangeFrame, CheckedBatch
from rxstore.protocol.logging_seam import level_cache
from rxstore.stores.status import SyncState

__all__ = ["FrameTap", "Router"]

log = logging.getLogger("rxstore.router")
_levels = level_cache(log)
"""``log``'s level cache: ``False`` at DEBUG is the one-lookup answer of the per-frame check."""
_now = time.time


class _Syncable(Protocol):
    def set_sync(self, state: SyncState) -> None: ...


class FrameTap(Protocol):
    """What records frames (:class:`~rxstore.client.recorder.Recorder`): told of each before it is handled."""

    def frame(self, name: str, data: Any) -> None:
        """A frame arrives (it is handled next)."""

    def frame_done(self) -> bool:
        """The frame was handled; whether to go on recording."""


class Router:
    """Turns frames into events, keeps the cursor, and publishes on :attr:`events`.

    Args:
        metrics: Counters to keep (frames, events, duplicates, lag, ...).
        report: Where bad frames go (the root's ``errors``).
        tables: Told the sync state when the gateway says the link is live.

    The cursor rules (docs/protocol.md): a change is a duplicate if its seq is
    below the cursor, or equal to it under the event name the cursor's change
    came under (one change matching two subscriptions arrives once per
    subscription id, with the same seq: both are applied). A snapshot moves
    the cursor only when it is ``None``: a runtime subscription's snapshot
    ahead of it leaves it, so the other subscriptions' changes in between,
    which the gateway then replays, are not dropped.

    Attributes:
        cursor: Seq of the last change published (``None`` before any).
        cursor_event: The event name the cursor's change came under (or its snapshot's).
        cursor_ts: The commit time (``ts``) of the change at the cursor, as the gateway sent it
            (``None`` when unknown): sent on reconnect, it lets the gateway tell that its log
            holds another change there (a restored backup, another database).
        epoch: The change log's epoch the cursor belongs to (from ``rxstore:live``).
        closing: The reason the gateway gave (``rxstore:closing``) for ending the session.
    """

    def __init__(
        self,
        *,
        metrics: Metrics,
        report: Callable[[RxStoreError], None],
        tables: Sequence[_Syncable] = (),
    ) -> None:
        self.metrics = metrics
        self.report = report
        self.tables = tables
        """Told LIVE on ``rxstore:live`` (a list the root's subscriptions keep up to date)."""
        self.events = EventStream(metrics, report)
        self.cursor: int | None = None
        self.cursor_event: str | None = None
        self._cursor_change: dict[str, Any] | None = None
        """The envelope that set the cursor (a snapshot: ``{"ts": ...}``): see :attr:`cursor_ts`."""
        self.epoch: str | None = None
        self.closing: str | None = None
        self._replaying = False
        self._live = False
        self._snapshots = SnapshotChunks(tables)
        """Snapshots arriving in chunks, not yet shown."""
        self._trace: tuple[Any, Any, int, int, int] | None = None
        """The frame being received and the counters before it, while ``rxstore.router`` is at DEBUG."""
        self.recorder: FrameTap | None = None
        """What records the frames (``root.record()``), while one does: one attribute check per frame."""

    @property
    def cursor_ts(self) -> float | None:
        """The ``ts`` of the change at the cursor (``None``: unknown), read from the change that set it."""
        change = self._cursor_change
        ts: Any = None if change is None else change.get("ts")
        return float(ts) if type(ts) in (int, float) else None

    @cursor_ts.setter
    def cursor_ts(self, ts: float | None) -> None:
        self._cursor_change = None if ts is None else {"ts": ts}

    @property
    def live(self) -> bool:
        """Whether this session's ``rxstore:live`` has arrived (the replay or first snapshots are done)."""
        return self._live

    def link_up(self) -> None:
        """A new session begins: replaying from the cursor, no snapshot half-received.

        Called before the connection is opened: the session's first frames may be handled
        before the open returns.
        """
        self._replaying = self.cursor is not None
        self._live = False
        self._snapshots.clear()  # a snapshot cut short by the lost link is sent again whole
        self.closing = None

    def set_sync(self, state: SyncState) -> None:
        """Tell every table store its sync state."""
        for table in self.tables:
            table.set_sync(state)

    # -- the hot path ----------------------------------------------------------

    def on_frame(self, name: str, data: Any) -> None:
        """Take one incoming frame (an event, a batch or a control frame): the transport's callback.

        With the ``rxstore.router`` logger at DEBUG, each frame is also told in one line
        (:meth:`_traced`); otherwise nothing is formatted: one cached level check per frame.
        While a recorder is set, it is told of the frame first (:meth:`_recorded`).
        """
        if self.recorder is not None:
            self._recorded(name, data)
            return
        if _levels.get(DEBUG) is not False and self._trace is None and log.isEnabledFor(DEBUG):
            self._traced(name, data)
            return
        self.metrics.frames += 1
        if type(name) is not str:
            error = f"event name must be a string, got {type(name).__name__}"
            self.report(ProtocolError(error, payload=data))
            return
        mixed = False
        if name == BATCH:
            if type(data) is CheckedBatch:  # the gateway's batches, as the transport decodes them
                self._on_checked(data.events)
                return
            events, mixed = self._unpack_batch(data)
        elif name.startswith(CONTROL_PREFIX):
            self._on_control(name, data)
            return
        else:
            frame = self._to_frame(name, data)
            if frame is None:
                return
            events = frame
        if events:
            self._dispatch(events, mixed)

    def _traced(self, name: str, data: Any) -> None:
        """:meth:`on_frame`, told in one DEBUG line: before its events are published, or once handled."""
        metrics = self.metrics
        self._trace = (name, data, metrics.events, metrics.changes_applied, metrics.duplicates)
        try:
            self.on_frame(name, data)  # traced now: handled as ever
        finally:
            self._tell()

    def _recorded(self, name: str, data: Any) -> None:
        """:meth:`on_frame`, the frame told to the :attr:`recorder` before, and its end after."""
        recorder, self.recorder = self.recorder, None
        assert recorder is not None
        recorder.frame(name, data)
        try:
            self.on_frame(name, data)
        finally:
            if recorder.frame_done() and self.recorder is None:
                self.recorder = recorder

    def _tell(self) -> None:
        """Log the frame being traced, if not yet: its name, events, seqs, applied, duplicates, cursor."""
        trace = self._trace
        if trace is None:
            return
        self._trace = None
        name, data, events, applied, duplicates = trace
        metrics = self.metrics
        if type(name) is str and name.startswith(CONTROL_PREFIX) and name != BATCH:
            log.debug("[RootStore] %s frame (control): seq=%s cursor=%s", name, _seqs(data), self.cursor)
            return
        log.debug(
            "[RootStore] %s frame: events=%d seq=%s applied=%d duplicates=%d cursor=%s",
            name,
            metrics.events - events,
            _seqs(data),
            metrics.changes_applied - applied,
            metrics.duplicates - duplicates,
            self.cursor,
        )

    def _to_frame(self, name: str, data: Any) -> Frame | None:
        """Turn one event frame into what the views get; ``None`` for a duplicate or a bad change.

        A payload with ``op`` and ``seq`` is a change (reported if malformed),
        a :class:`~rxstore.protocol.frames.ChangeFrame` of one; any other payload is a
        message, even under a table's event name: it goes to every view of
        that name, and a ``TableStore`` among their subscribers reports for
        itself that it is not a change envelope.
        """
        metrics = self.metrics
        metrics.events += 1
        if type(data) is dict and "op" in data and "seq" in data:
            problem = check_envelope(data)  # the Change is built only if asked for (event.change)
            if type(problem) is str:  # what is wrong with it
                self.report(ProtocolError(problem, event=name, payload=data))
                return None
            envelopes, _ = self._fresh(((name, data),))
            return ChangeFrame(name, envelopes) if envelopes else None
        return [Event(name, data)]

    def _unpack_batch(self, data: Any) -> tuple[Frame, bool]:
        """Turn a batch frame into its events, and whether they have several names.

        The changes of a batch under one name (one topic's: the common case)
        become a :class:`~rxstore.protocol.frames.ChangeFrame`, with no object per
        change. Each change goes through :meth:`_fresh`, as every change does.
        """
        frames = data.get("events") if type(data) is dict else None
        if type(frames) is not list:
            self.report(ProtocolError("batch frame needs an 'events' list", event=BATCH, payload=data))
            return (), False
        envelopes: list[dict[str, Any]] = []
        kept: list[Any] = []  # the [name, payload] entries kept, changes and messages
        messages: set[int] | None = None  # positions in kept of the messages, if any
        names = 0
        previous = None
        for frame in frames:
            if type(frame) is not list or len(frame) != 2 or type(frame[0]) is not str:
                self.report(
                    ProtocolError("batch entries must be [event_name, payload]", event=BATCH, payload=frame)
                )
                continue
            name, payload = frame
            if name != previous:  # counts the runs of one name (one topic's batch: 1)
                names += 1
                previous = name
            if type(payload) is dict and "op" in payload and "seq" in payload:
                problem = check_envelope(payload)  # the Change is built only if asked for (event.change)
                if type(problem) is str:  # what is wrong with it
                    self.report(ProtocolError(problem, event=name, payload=payload))
                    continue
                if self._fresh(((name, payload),))[0]:
                    envelopes.append(payload)
                    kept.append(frame)
            elif name.startswith(CONTROL_PREFIX):
                error = f"control frame {name!r} inside a batch is not allowed; ignored"
                self.report(ProtocolError(error, event=BATCH, payload=frame))
            else:
                if messages is None:
                    messages = set()
                messages.add(len(kept))
                kept.append(frame)
        self.metrics.events += len(frames)
        if messages is None:
            return _frame_of(kept, envelopes, names), names > 1
        change = EventKind.CHANGE
        events = [
            Event(name, payload) if i in messages else Event(name, payload, change, payload["seq"])
            for i, (name, payload) in enumerate(kept)
        ]
        return events, names > 1

    def _on_checked(self, entries: list[tuple[str, Any]]) -> None:
        """A batch the decoder checked: only the rules msgspec cannot express, then dispatched."""
        self.metrics.events += len(entries)
        envelopes, named = self._fresh(entries)
        if not envelopes:
            return
        if named is None:  # one name: the last kept change's, where the cursor is now
            self._dispatch(ChangeFrame(self.cursor_event, envelopes))  # type: ignore[arg-type]
        else:
            change = EventKind.CHANGE
            events = [Event(n, p, change, p["seq"]) for n, p in zip(named, envelopes, strict=True)]
            self._dispatch(events, True)

    def _fresh(self, entries: Sequence[tuple[str, Any]]) -> tuple[list[dict[str, Any]], list[str] | None]:
        """The changes of ``entries`` to apply, each past the cursor; the cursor moved past them.

        The one place of the router's per-change rules: a change's row (``record``,
        or ``old`` for a DELETE) must be there, and the cursor rule of
        docs/protocol.md: a change is a duplicate if its seq is below the cursor,
        or equal to it under the event name the cursor's change came under (one
        change matching two subscriptions arrives under each id with one seq).

        Returns:
            The envelopes kept, and each one's event name when they have several
            (``None``: all have the last entry's name, :attr:`cursor_event`).
        """
        envelopes: list[dict[str, Any]] = []
        append = envelopes.append
        named: list[str] | None = None  # each kept envelope's name, once a second name appears
        cursor = self.cursor
        cursor_event = self.cursor_event
        duplicates = 0
        previous = None
        row_of = ROW_OF
        for name, payload in entries:
            needs = row_of[payload["op"]]
            if payload.get(needs) is None:  # before the seq, as ever
                error = f"{payload['op']} change envelope needs {needs!r}"
                self.report(ProtocolError(error, event=name, payload=payload))
                continue
            seq = payload["seq"]
            if cursor is not None and seq <= cursor and (seq < cursor or name == cursor_event):
                duplicates += 1
                continue
            cursor = seq
            cursor_event = name
            if name != previous:
                if previous is not None and named is None:
                    named = [previous] * len(envelopes)
                previous = name
            if named is not None:
                named.append(name)
            append(payload)
        if envelopes:  # the cursor's change, kept as it is: its ts is read on reconnect
            self._cursor_change = envelopes[-1]
        self.cursor = cursor
        self.cursor_event = cursor_event
        metrics = self.metrics
        metrics.duplicates += duplicates
        metrics.changes_applied += len(envelopes)
        return envelopes, named

    # -- control frames: once per session or subscription -------------------------

    def _on_control(self, name: str, data: Any) -> None:
        try:
            if name == SNAPSHOT:
                self._on_snapshot(data)
            elif name == CLOSING:
                self.closing = str(data.get("reason", "closing")) if type(data) is dict else "closing"
                log.info("[RootStore] the gateway is ending the session: %s", data)
            elif name == RESET:
                self._on_reset(data)
            elif name == PAGE:  # rows rxstore:more adds to a window: no cursor moves
                self._dispatch([page_event(data)])
            elif name == LIVE:
                epoch = data.get("epoch") if type(data) is dict else None
                if type(epoch) is str:  # a gateway from before epochs sends none: keep ours
                    self.epoch = epoch
                self._replaying = False
                self._live = True
                self.set_sync(SyncState.LIVE)
            else:
                self._dispatch([Event(name, data)])
        except ProtocolError as exc:
            self.report(exc)

    def _on_snapshot(self, data: Any) -> None:
        event = self._snapshots.whole(data)
        if event is None:
            return  # a chunk: held until its subscription's last one
        seq = event.seq
        assert seq is not None
        if self.cursor is not None and seq < self.cursor:
            raise ProtocolError(
                f"snapshot at seq {seq} is older than the cursor {self.cursor}; ignored",
                event=SNAPSHOT,
                payload=data,
            )
        if self.cursor is None:  # first sync, or after a reset; never moved by a runtime subscription's
            self.cursor = seq
            self.cursor_event = event.name
            self._cursor_change = {"ts": data.get("ts")}  # absent: no change there, or an older gateway
        self._dispatch([event])

    def _on_reset(self, data: Any) -> None:
        log.info("[RootStore] reset: %s", data)
        self.cursor = self.cursor_event = self._cursor_change = None
        self.epoch = None  # the next rxstore:live tells the new one
        self._tell()
        reset = Event(RESET, data, EventKind.RESET)
        stream = self.events
        if stream.subject.observers:
            stream.subject.on_next(reset)
        frame = (reset,)
        for view in stream.views():
            view.emit(frame)

    def _dispatch(self, events: Sequence[Event], mixed: bool = False) -> None:
        """Publish events on the hot stream, and each keyed view its share of them, once.

        ``mixed``: the events may have several names (else they all have the last one's).
        """
        if self._trace is not None:  # told before its events reach the stores (and their lines)
            self._tell()
        metrics = self.metrics
        metrics.cursor = self.cursor  # also after a batch that ends with a message
        if type(events) is ChangeFrame:
            last_change: Any = events.envelopes[-1]
            name = events.name
        else:
            last = events[-1]
            last_change = last.data if last.kind is EventKind.CHANGE else None
            name = last.name
        if last_change is not None:
            ts = last_change.get("ts", 0.0)  # a float or an int (validated), or missing
            if ts > 0:  # 0: the envelope had no commit time
                metrics.lags.append(_now() - ts)  # metrics.record_lag(ts), inlined
            if self._replaying:
                metrics.replayed += len(events)
        stream = self.events
        subject = stream.subject
        if subject.observers:
            for event in events:
                try:
                    subject.on_next(event)
                except Exception as exc:  # a plain RealtimeStore's handler raised
                    self.report(StoreError("root.events subscriber", event, exc))
        routes = stream.routes
        if not mixed:
            # One event name (one topic's batch, the common case): every view gets all of them.
            for view in routes.get(name, ()):
                view.emit(events)
            return
        shares: dict[KeyedView, list[Event]] = {}
        for event in events:
            for view in routes.get(event.name, ()):
                share = shares.get(view)
                if share is None:
                    shares[view] = [event]
                else:
                    share.append(event)
        for view, share in shares.items():
            view.emit(share)


def _frame_of(kept: list[Any], envelopes: list[dict[str, Any]], names: int) -> Frame:
    """A batch's kept changes: one :class:`ChangeFrame` under one name, else their events."""
    if not envelopes:
        return ()
    if names == 1:
        return ChangeFrame(kept[0][0], envelopes)
    change = EventKind.CHANGE
    return [Event(name, payload, change, payload["seq"]) for name, payload in kept]


def _seqs(data: Any) -> str:
    """The seqs a frame carries, for its DEBUG line: ``40-45``, ``7``, or ``-`` for none."""
    if type(data) is CheckedBatch:
        entries: Any = data.events
    elif type(data) is dict and type(data.get("events")) is list:
        entries = data["events"]
    else:
        entries = [(None, data)]
    seqs = [
        entry[1].get("seq")
        for entry in entries
        if type(entry) in (list, tuple) and len(entry) == 2 and type(entry[1]) is dict
    ]
    seqs = [seq for seq in seqs if type(seq) is int]
    if not seqs:
        return "-"
    return str(seqs[0]) if len(seqs) == 1 else f"{seqs[0]}-{seqs[-1]}"
