"""Windows on the gateway: the keys and order values of the rows a client holds, and each change's step.

A window subscription (``order_by`` / ``limit`` / ``after``, see
:mod:`rxstore.protocol.windows`) keeps, per client, a :class:`WindowState`: the
primary keys and sort keys of the rows the client holds for it, at most
``limit`` of them, in order. Nothing else of a row is kept. The state is loaded
from the window's snapshot (read with the log's head in one transaction) and
moved by each change exactly as the client moves its copy, so both stay equal.

What a change is to a window (:func:`window_event`):

* a row enters (matches, sorts before the last row, or the window is not full):
  an INSERT; if the window was full, its last row moves out in the same envelope
  (``"out": [{key: value}]``);
* a row in the window stays at or before the last row: an UPDATE;
* a row leaves a window that is not full (the window holds every row of its
  subset, so none comes in): a DELETE of its key;
* a row leaves a full window, or moves past its last row: the next row beyond
  the window is not known here. :data:`REFILL`: the client stops after this
  change and reads the window again (a snapshot at a log position, in one
  transaction), see ``docs/live_queries.md``, "Windows: exact under writes".
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from rxstore.gateway.access.auth import User
from rxstore.gateway.api import RowFilter
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Subset

__all__ = ["REFILL", "Refill", "WindowState", "window_event"]

REFILL: Final[list[Any]] = ["rxstore:refill"]
"""What :func:`window_event` returns when the window must be read again (compare by identity)."""


@attrs.define(eq=False)
class WindowState:
    """The rows a client holds for one window: ``(sort key, primary key)`` in order, at most ``limit``.

    Attributes:
        subset: The window (a relation's term bound to its values, once they are read).
        key: The table's primary key.
        entries: ``(sort key, primary key value)``, sorted.
        places: Primary key value -> its sort key.
    """

    subset: Subset
    key: str
    entries: list[tuple[tuple[Any, ...], Any]] = attrs.field(factory=list)
    places: dict[Any, tuple[Any, ...]] = attrs.field(factory=dict)

    @property
    def full(self) -> bool:
        """Whether it holds ``limit`` rows (so rows of its subset may lie beyond it)."""
        limit = self.subset.limit
        return limit is not None and len(self.entries) >= limit

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add the rows of a snapshot (already in order, at most ``limit`` in all)."""
        place_of, key, entries, places = self.subset.place, self.key, self.entries, self.places
        for row in rows:
            place = place_of(row, key)
            if place is not None:
                value = row.get(key)
                if not entries or entries[-1] < (place,):  # in order: appended
                    entries.append((place, value))
                    places[value] = place
                else:
                    self.insert(place, value)

    def insert(self, place: tuple[Any, ...], value: Any) -> None:
        """Hold the row ``value`` at ``place``."""
        insort(self.entries, (place, value))  # places are unique (the key is last): never compares values
        self.places[value] = place

    def remove(self, value: Any) -> None:
        """Stop holding the row ``value``."""
        place = self.places.pop(value)
        del self.entries[bisect_left(self.entries, (place,))]  # (place,) sorts just before (place, value)

    def last(self) -> tuple[tuple[Any, ...], Any]:
        """The last row held: ``(sort key, primary key value)``."""
        return self.entries[-1]


@attrs.define(eq=False)
class Refill:
    """Windows of one client to read again, and the change after which it stops."""

    seq: int = -1
    windows: list[Any] = attrs.field(factory=list)


def window_event(
    sub_id: str,
    state: WindowState,
    user: User,
    change: Change,
    authorize: RowFilter | None,
    key_only: bool,
) -> list[Any] | None:
    """The ``[id, envelope]`` that ``change`` is to a window, ``None``, or :data:`REFILL`.

    The state moves with the envelope returned (not with :data:`REFILL`).
    """
    subset, key = state.subset, state.key
    record, old = change.record, change.old
    place = None
    if (
        record is not None
        and subset.matches(record)
        and (authorize is None or authorize(user, change.topic, record))
    ):
        place = subset.place(record, key)
    value = (record if record is not None else old or {}).get(key)
    held = state.places.get(value)
    if held is not None:
        if place is None:  # leaves
            if state.full:
                return REFILL
            state.remove(value)
            return [sub_id, _envelope(change, Op.DELETE, None, {key: value})]
        if place != held:  # it moves (an edit of other columns keeps its place)
            if state.full and place > state.entries[-1][0]:  # past the last: a row beyond may come first
                return REFILL
            state.remove(value)
            state.insert(place, value)
        assert record is not None
        before = {key: value} if key_only or old is None else subset.project(old, key)
        return [sub_id, _envelope(change, Op.UPDATE, subset.project(record, key), before)]
    if place is None:
        return None
    assert record is not None
    out = None
    if state.full:
        entries = state.entries
        last_place, last_value = entries[-1]
        if not place < last_place:
            return None  # beyond the window
        entries.pop()  # the last row moves out
        del state.places[last_value]
        out = [{key: last_value}]
    state.insert(place, value)
    payload = _envelope(change, Op.INSERT, subset.project(record, key), None)
    if out is not None:
        payload["out"] = out
    return [sub_id, payload]


def _envelope(change: Change, op: Op, record: Any, old: Any) -> dict[str, Any]:
    payload = change.to_payload()
    payload["op"] = op.value
    payload["record"] = record
    payload["old"] = old
    return payload
