"""A snapshot's maps built chunk by chunk as its chunks arrive, and shown only when it is whole.

A big snapshot comes in chunks (``"more": true``); the router holds them until the last
(:class:`~rxstore.client.snapshots.chunks.SnapshotChunks`). Building the table's map only
then made the map's build a serial tail after the last chunk (about 0.1 s at 200,000 rows,
0.5-0.9 s at a million). A :class:`ChunkedBuild` builds it as each chunk arrives, while
the gateway reads the next, for each ``(primary key, record type)`` that follows the
subscription: one map mutation each, never finished before the last chunk, so no store
ever shows part of a snapshot. The snapshot's rows then carry the maps
(:class:`~rxstore.stores.folding.built_rows.BuiltRows`), and
:func:`~rxstore.stores.folding.fold.rows_of` takes the one of its store instead of
building it again.

Only rows that become records by ``record_type`` alone (``own_records``) are built
ahead; a chunk with a row that does not fit drops that build, and the store builds the
map from the whole snapshot as before, reporting each bad row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import immutables

from rxstore.protocol.records import structure_records
from rxstore.stores.folding.built_rows import BuiltRows, Spec
from rxstore.stores.folding.collector import collector_paused

__all__ = ["ChunkedBuild"]


class ChunkedBuild:
    """The maps of one snapshot, one per spec, built a chunk at a time.

    Args:
        specs: ``(primary key column, record type or None)`` of each store that follows the snapshot.

    Example:
        >>> build = ChunkedBuild([("id", None)])
        >>> build.add([{"id": 1}, {"id": 2}]); build.add([{"id": 3}])
        >>> rows = build.rows_of([{"id": 1}, {"id": 2}, {"id": 3}])
        >>> len(rows), sorted(rows.maps[("id", None)].keys())
        (3, [1, 2, 3])
    """

    __slots__ = ("_mutations", "rows")

    def __init__(self, specs: Iterable[Spec]) -> None:
        self._mutations: dict[Spec, Any] = {spec: immutables.Map().mutate() for spec in specs}
        """Spec -> its map's mutation (``immutables.MapMutation``), finished by :meth:`rows_of` only."""
        self.rows = 0
        """Rows added so far."""

    def add(self, records: Sequence[Any]) -> None:
        """Put one chunk's rows into every map (a spec whose rows do not fit is dropped)."""
        self.rows += len(records)
        with collector_paused(self.rows):  # from AGED_ROWS on, each chunk's nodes go to the oldest generation
            for spec, mutation in list(self._mutations.items()):
                if not _put(mutation, spec, records):
                    del self._mutations[spec]

    def rows_of(self, records: Sequence[Any]) -> BuiltRows:
        """The whole snapshot's rows (``records``: every chunk's, in order), with the finished maps."""
        return BuiltRows(records, {spec: mutation.finish() for spec, mutation in self._mutations.items()})


def _put(mutation: Any, spec: Spec, records: Sequence[Any]) -> bool:
    """Put ``records`` into ``mutation`` as the spec's records; ``False`` if one does not fit."""
    key, record_type = spec
    values = records if record_type is None else structure_records(list(records), record_type)
    if values is None:
        return False
    try:
        for row, value in zip(records, values, strict=True):
            mutation[row[key]] = value
    except Exception:
        return False  # a row without its key, or an unhashable one: the store builds it and says which
    return True
