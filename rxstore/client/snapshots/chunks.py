"""Snapshots that arrive in chunks (``"more": true``), held until their last chunk.

:class:`SnapshotChunks` is the router's collaborator for ``rxstore:snapshot``
frames: it validates each frame and holds the records of a snapshot cut into
chunks, so that stores see a snapshot only when it is whole.
"""

from __future__ import annotations

from typing import Any

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import SNAPSHOT, Event, EventKind, Snapshot

__all__ = ["SnapshotChunks"]


class SnapshotChunks:
    """The chunks of snapshots not yet whole, by subscription id.

    Example:
        >>> chunks = SnapshotChunks()
        >>> first = {"topic": "posts", "event": "post_update", "seq": 4, "records": [{"id": 1}], "more": True}
        >>> chunks.whole(first) is None
        True
        >>> last = {**first, "records": [{"id": 2}], "more": False}
        >>> chunks.whole(last).data.records
        ({'id': 1}, {'id': 2})
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, list[Any]]] = {}
        """Event name (subscription id) -> (seq, records) of a snapshot arriving in chunks."""

    def clear(self) -> None:
        """Drop every snapshot cut short (a new session sends them again whole)."""
        self._held.clear()

    def whole(self, data: Any) -> Event | None:
        """Validate a snapshot frame; hold its records if more chunks follow, else return the whole snapshot.

        Raises:
            ProtocolError: A malformed frame (the chunks held for its event are dropped).
        """
        event = _snapshot_event(data)
        more = data.get("more", False)
        snapshot = event.data
        held = self._held.pop(event.name, None)
        if type(more) is not bool:
            raise ProtocolError("snapshot frame's 'more' must be a boolean", event=SNAPSHOT, payload=data)
        if held is not None and held[0] != event.seq:
            held = None  # a new snapshot of the topic began (after a reset): the old one is void
        if more:
            records = held[1] if held is not None else []
            records.extend(snapshot.records)
            self._held[event.name] = (event.seq or 0, records)
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
