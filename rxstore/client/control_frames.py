"""The router's control frames: snapshots (whole or in chunks), resets, ``rxstore:live``, closing.

A mixin of :class:`~rxstore.client.router.Router`, apart from its hot path (changes
and batches): these frames come once per session or per subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rxstore.protocol.errors import ProtocolError, RxStoreError
from rxstore.protocol.events import CLOSING, LIVE, RESET, SNAPSHOT, Event, EventKind, Snapshot
from rxstore.stores.status import SyncState

if TYPE_CHECKING:
    from rxstore.operators.keyed import EventStream

__all__ = ["ControlFrames"]

log = logging.getLogger("rxstore.router")


class ControlFrames:
    """What the router does with ``rxstore:*`` control frames (mixed into :class:`.router.Router`)."""

    cursor: int | None
    cursor_event: str | None
    epoch: str | None
    closing: str | None
    events: EventStream
    _replaying: bool
    _live: bool
    _chunks: dict[str, tuple[int, list[Any]]]

    report: Callable[[RxStoreError], None]

    def set_sync(self, state: SyncState) -> None:  # pragma: no cover - the router's method
        """Tell every table store its sync state."""
        raise NotImplementedError

    def _dispatch(self, events: Sequence[Event], mixed: bool = False) -> None:  # pragma: no cover
        raise NotImplementedError

    def _on_control(self, name: str, data: Any) -> None:
        try:
            if name == SNAPSHOT:
                self._on_snapshot(data)
            elif name == CLOSING:
                self.closing = str(data.get("reason", "closing")) if type(data) is dict else "closing"
                log.info("[RootStore] the gateway is ending the session: %s", data)
            elif name == RESET:
                self._on_reset(data)
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
        event = self._whole_snapshot(data)
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
        self._dispatch([event])

    def _on_reset(self, data: Any) -> None:
        log.info("[RootStore] reset: %s", data)
        self.cursor = self.cursor_event = None
        self.epoch = None  # the next rxstore:live tells the new one
        reset = Event(RESET, data, EventKind.RESET)
        stream = self.events
        if stream.subject.observers:
            stream.subject.on_next(reset)
        frame = (reset,)
        for view in stream.views():
            view.emit(frame)

    def _whole_snapshot(self, data: Any) -> Event | None:
        """Validate a snapshot frame; hold its records if more chunks follow, else return the whole snapshot.

        Raises:
            ProtocolError: A malformed frame (the chunks held for its event are dropped).
        """
        event = _snapshot_event(data)
        more = data.get("more", False)
        snapshot = event.data
        held = self._chunks.pop(event.name, None)
        if type(more) is not bool:
            raise ProtocolError("snapshot frame's 'more' must be a boolean", event=SNAPSHOT, payload=data)
        if held is not None and held[0] != event.seq:
            held = None  # a new snapshot of the topic began (after a reset): the old one is void
        if more:
            records = held[1] if held is not None else []
            records.extend(snapshot.records)
            self._chunks[event.name] = (event.seq or 0, records)
            return None
        if held is None:
            return event
        held[1].extend(snapshot.records)
        whole = Snapshot(snapshot.topic, snapshot.seq, tuple(held[1]))
        return Event(event.name, whole, EventKind.SNAPSHOT, event.seq)


def _snapshot_event(data: Any) -> Event:
    """Validate an ``rxstore:snapshot`` frame and return it as a SNAPSHOT event."""
    if type(data) is not dict:
        raise ProtocolError("snapshot frame must be an object", event=SNAPSHOT, payload=data)
    topic, name, seq, records = (
        data.get("topic"),
        data.get("event"),
        data.get("seq"),
        data.get("records"),
    )
    if type(topic) is not str or type(name) is not str:
        raise ProtocolError("snapshot frame needs 'topic' and 'event' strings", event=SNAPSHOT, payload=data)
    if type(seq) is not int or seq < 0:
        raise ProtocolError("snapshot frame needs a non-negative int 'seq'", event=SNAPSHOT, payload=data)
    if type(records) is not list or not all(type(r) is dict for r in records):
        raise ProtocolError("snapshot frame needs a list of objects 'records'", event=SNAPSHOT, payload=data)
    return Event(name, Snapshot(topic, seq, tuple(records)), EventKind.SNAPSHOT, seq)
