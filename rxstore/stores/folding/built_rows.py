"""A snapshot's rows with their maps, built as its chunks arrived (:mod:`~rxstore.stores.folding.chunked`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import immutables

__all__ = ["BuiltRows", "Spec"]

Spec = tuple[str, type[Any] | None]
"""What a map of a snapshot's rows is built by: ``(primary key column, record type or None)``."""


class BuiltRows(tuple[Any, ...]):
    """A snapshot's rows (a tuple, as ``Snapshot.records`` always is) with their maps by spec.

    :func:`~rxstore.stores.folding.fold.rows_of` takes the map of its store's spec from
    :attr:`maps` when one is there: built as the chunks arrived, it holds what the
    store would build from these rows. It encodes as a tuple with :mod:`json` and
    msgspec; orjson encodes no tuple subclass: give it ``tuple(records)``.

    Example:
        >>> rows = BuiltRows([{"id": 1}], {("id", None): immutables.Map({1: {"id": 1}})})
        >>> rows == ({"id": 1},), rows.maps[("id", None)][1]
        (True, {'id': 1})
    """

    maps: Mapping[Spec, immutables.Map[Any, Any]]

    def __new__(cls, records: Iterable[Any], maps: Mapping[Spec, immutables.Map[Any, Any]]) -> BuiltRows:
        """The rows ``records``, with ``maps``."""
        rows = super().__new__(cls, records)
        rows.maps = maps
        return rows

    def __reduce__(self) -> tuple[type[tuple[Any, ...]], tuple[tuple[Any, ...]]]:
        """A copy or a pickle is the plain rows: the maps are the fold's shortcut, not part of the value."""
        return tuple, (tuple(self),)
