"""The order of a window's rows on the client: kept by bisection as changes arrive, never sorted per event.

A :class:`~rxstore.stores.table.TableStore` that follows a window (``order_by`` /
``limit`` / ``after``, see :mod:`rxstore.protocol.windows`) keeps, beside its rows,
a :class:`Window`: each row's place in the window's order (its sort key, the
primary key last) in a sorted list. A change moves one entry (``bisect``); an
INSERT's ``out`` drops the entries it names. :meth:`TableState.ordered()
<rxstore.stores.state.TableState.ordered>` reads the rows in that order.

Example:
    >>> window = Window.of_rows((("ts", "desc"),), "id", [{"id": 1, "ts": 5}, {"id": 2, "ts": 9}])
    >>> window.put(3, {"id": 3, "ts": 7}); window.drop(2); window.keys()
    [3, 1]
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from typing import Any

from rxstore.protocol.windows import Order, sort_key

__all__ = ["Window"]


class Window:
    """The keys of a window's rows in its order: ``(sort key, primary key)`` sorted, and each key's place.

    Attributes:
        order: The window's ``order_by`` (the primary key is the last tiebreaker).
        key: The primary key's column.
        entries: ``(sort key, primary key value)``, sorted.
        places: Primary key value -> its sort key.
    """

    __slots__ = ("entries", "key", "order", "places")

    def __init__(
        self,
        order: Order,
        key: str,
        entries: list[tuple[tuple[Any, ...], Any]] | None = None,
        places: dict[Any, tuple[Any, ...]] | None = None,
    ) -> None:
        self.order = order
        self.key = key
        self.entries = entries if entries is not None else []
        self.places = places if places is not None else {}

    @classmethod
    def of_rows(cls, order: Order, key: str, rows: Iterable[Any]) -> Window:
        """A window of ``rows`` (mappings, or records whose attributes are the columns), sorted once."""
        window = cls(order, key)
        for row in rows:
            fields: Any = row if isinstance(row, Mapping) else _Fields(row)
            window.places[fields.get(key)] = sort_key(fields, order, key)
        window.entries = sorted(((place, value) for value, place in window.places.items()), key=_first)
        return window

    def copy(self) -> Window:
        """A copy to move (one per frame: a state's window is never changed once published)."""
        return Window(self.order, self.key, self.entries.copy(), self.places.copy())

    def put(self, value: Any, row: Mapping[str, Any]) -> None:
        """Hold the row ``value`` (its key) at the place ``row``'s order columns give it."""
        if value in self.places:
            self.drop(value)
        place = sort_key(row, self.order, self.key)
        insort(self.entries, (place, value), key=_first)
        self.places[value] = place

    def drop(self, value: Any) -> None:
        """Stop holding the row ``value`` (nothing if it is not held)."""
        place = self.places.pop(value, None)
        if place is not None:
            del self.entries[bisect_left(self.entries, place, key=_first)]

    def keys(self) -> list[Any]:
        """The primary keys, in the window's order."""
        return [value for _, value in self.entries]


class _Fields:
    """A record's attributes read as a row's columns (``get``), to place a record that is not a mapping."""

    __slots__ = ("record",)

    def __init__(self, record: Any) -> None:
        self.record = record

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self.record, name, default)


def _first(entry: tuple[tuple[Any, ...], Any]) -> tuple[Any, ...]:
    return entry[0]
