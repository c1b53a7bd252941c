"""Snapshots that arrive in chunks (``"more": true``), held until their last chunk.

:class:`SnapshotChunks` is the router's collaborator for ``rxstore:snapshot``
frames: it validates each frame and holds the records of a snapshot cut into
chunks, so that stores see a snapshot only when it is whole. Meanwhile it builds
the map of each table store that follows the snapshot, a chunk at a time, while
the gateway reads the next (:class:`~rxstore.stores.folding.chunked.ChunkedBuild`):
the stores take the maps with the whole snapshot instead of building them then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import SNAPSHOT, Event, EventKind, Snapshot
from rxstore.stores.folding.built_rows import Spec
from rxstore.stores.folding.chunked import ChunkedBuild
from rxstore.stores.table import TableStore

__all__ = ["SnapshotChunks"]


class SnapshotChunks:
    """The chunks of snapshots not yet whole, by subscription id.

    Args:
        tables: The root's table stores (a list kept up to date): whose maps to build as chunks arrive.

    Example:
        >>> chunks = SnapshotChunks()
        >>> first = {"topic": "posts", "event": "post_update", "seq": 4, "records": [{"id": 1}], "more": True}
        >>> chunks.whole(first) is None
        True
        >>> last = {**first, "records": [{"id": 2}], "more": False}
        >>> chunks.whole(last).data.records
        ({'id': 1}, {'id': 2})
    """

    def __init__(self, tables: Sequence[Any] = ()) -> None:
        self._tables = tables
        self._held: dict[str, tuple[int, list[Any], ChunkedBuild | None]] = {}
        """Event name (subscription id) -> (seq, records, maps so far) of a snapshot arriving in chunks."""

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
            if held is None:
                specs = self._specs(event.name)
                held = (event.seq or 0, [], ChunkedBuild(specs) if specs else None)
            held[1].extend(snapshot.records)
            if held[2] is not None:
                held[2].add(snapshot.records)
            self._held[event.name] = held
            return None
        if held is None:
            return event
        records, build = held[1], held[2]
        records.extend(snapshot.records)
        if build is None:
            rows: tuple[Any, ...] = tuple(records)
        else:
            build.add(snapshot.records)
            rows = build.rows_of(records)
        whole = Snapshot(snapshot.topic, snapshot.seq, rows)
        return Event(event.name, whole, EventKind.SNAPSHOT, event.seq)

    def _specs(self, name: str) -> set[Spec]:
        """The ``(key, record type)`` of each table store following ``name`` (rows made records by type)."""
        return {
            (table.primary_key, table.record_type)
            for table in self._tables
            if isinstance(table, TableStore)
            and table.event == name
            and table.own_records
            and not table.foreign
        }


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
    if type(records) is not list or not {*map(type, records)} <= {dict}:  # every row a dict (C speed)
        raise ProtocolError("snapshot frame needs a list of objects 'records'", event=SNAPSHOT, payload=data)
    return Event(name, Snapshot(topic, seq, tuple(records)), EventKind.SNAPSHOT, seq)
