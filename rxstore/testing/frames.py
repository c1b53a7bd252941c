"""Frames as a gateway sends them, and events as the root hands them to stores: for tests.

Part of :mod:`rxstore.testing` (import them from there): :class:`Frame` and
its builders (:func:`change_frame`, :func:`snapshot_frame`, :func:`batch_frame`,
...), and the events a store folds (:func:`change`, :func:`snapshot`, :func:`message`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from rxstore.protocol.events import (
    BATCH,
    SNAPSHOT,
    Event,
    EventKind,
    Op,
    Snapshot,
    parse_change,
    topic_event_name,
)

__all__ = [
    "Frame",
    "batch_frame",
    "change",
    "change_frame",
    "message",
    "message_frame",
    "snapshot",
    "snapshot_frame",
]


@attrs.frozen
class Frame:
    """One frame as a gateway sends it: a socket event name and its payload."""

    name: str
    data: Any = None

    @property
    def seq(self) -> int | None:
        """The change seq this frame carries, if it is a change."""
        data = self.data
        if type(data) is dict and "op" in data:
            seq = data.get("seq")
            return seq if type(seq) is int else None
        return None


def _change_payload(
    topic: str,
    seq: int,
    op: str | Op,
    record: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    ts: float,
) -> dict[str, Any]:
    op = Op(op)
    if op is Op.DELETE and old is None:
        old, record = record, None
    return {
        "seq": seq,
        "topic": topic,
        "op": op.value,
        "record": dict(record) if record is not None else None,
        "old": dict(old) if old is not None else None,
        "ts": ts,
    }


def change_frame(
    topic: str,
    seq: int,
    op: str | Op,
    record: Mapping[str, Any] | None = None,
    *,
    old: Mapping[str, Any] | None = None,
    ts: float = 0.0,
    event: str | None = None,
) -> Frame:
    """Return the frame of one change (for DELETE, ``record`` may be the deleted row).

    Example:
        >>> change_frame("posts", 3, "INSERT", {"id": "p1"}).name
        'post_update'
    """
    return Frame(event or topic_event_name(topic), _change_payload(topic, seq, op, record, old, ts))


def change(
    topic: str,
    seq: int,
    op: str | Op,
    record: Mapping[str, Any] | None = None,
    *,
    old: Mapping[str, Any] | None = None,
    ts: float = 0.0,
    event: str | None = None,
) -> Event:
    """Return a CHANGE event, as the root would hand it to a store.

    Example:
        >>> change("posts", 3, "DELETE", {"id": "p1"}).change.old
        {'id': 'p1'}
    """
    frame = change_frame(topic, seq, op, record, old=old, ts=ts, event=event)
    parsed = parse_change(frame.data)
    return Event(frame.name, frame.data, EventKind.CHANGE, parsed.seq, parsed)


def message_frame(name: str, data: Any = None) -> Frame:
    """Return the frame of a plain (not logged) event such as ``post_liked``."""
    return Frame(name, data)


def message(name: str, data: Any = None) -> Event:
    """Return a MESSAGE event."""
    return Event(name, data)


def snapshot_frame(
    topic: str, seq: int, records: Sequence[Mapping[str, Any]], *, event: str | None = None
) -> Frame:
    """Return an ``rxstore:snapshot`` frame: ``records`` are the whole topic at ``seq``."""
    return Frame(
        SNAPSHOT,
        {
            "topic": topic,
            "event": event or topic_event_name(topic),
            "seq": seq,
            "records": [dict(r) for r in records],
        },
    )


def snapshot(
    topic: str, seq: int, records: Sequence[Mapping[str, Any]], *, event: str | None = None
) -> Event:
    """Return a SNAPSHOT event, as the root would hand it to a store."""
    rows = tuple(dict(r) for r in records)
    return Event(event or topic_event_name(topic), Snapshot(topic, seq, rows), EventKind.SNAPSHOT, seq)


def batch_frame(frames: Sequence[Frame]) -> Frame:
    """Return an ``rxstore:batch`` frame carrying ``frames`` in order."""
    return Frame(BATCH, {"events": [[f.name, f.data] for f in frames]})
