"""Subscriptions filed by ranges of one column, found by a row's value without looking at the others.

A :class:`RangeIndex` holds the :class:`~rxstore.gateway.queries.intervals.Interval` s of one
column and answers a stabbing query: the subscriptions with an interval holding a row's value,
in ``O(log n + found)``.

How: the bounds of every interval, sorted, cut the column's values into slots (each bound
itself, and the open stretch between two bounds), and a segment tree over the slots holds
each interval at the ``O(log n)`` nodes that cover its slots; a value's slot is found by
bisection and the subscriptions are those held on the path from its leaf to the root.

Values are compared as :class:`~rxstore.protocol.subsets.Term` compares them, which is not
one order of Python values: numbers sort before text, and the strings ``"Infinity"``,
``"-Infinity"`` and ``"NaN"`` are numbers against a number but text against text. So there
are two *domains*, numbers (NaN as a point above every number) and text, each with its own
slots and tree: a bound in the other domain is below (a number against text) or above
(text against numbers) all of it, and a row's non-finite string is looked up in both. Such
a string compares as a number with a number bound and as text with a text bound, so an
interval with one of each is also checked directly for it (a rare row, a rarer interval).

An interval whose bound is not yet a slot boundary is *pending*: checked directly
(:meth:`~rxstore.gateway.queries.intervals.Interval.holds`) until there are enough of them
(8 plus the square root of the number filed) or the checks have cost about as much as a
rebuild (one per interval filed), when the slots are rebuilt, at the next lookup: a burst
of subscriptions costs one rebuild, and pending ones are not checked for long.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from math import isqrt
from typing import Any, Final, Generic, TypeVar

from rxstore.gateway.queries.intervals import Interval
from rxstore.protocol.where.terms import NON_FINITE

__all__ = ["RangeIndex"]

T = TypeVar("T")

_NUMBERS: Final = 0
_TEXT: Final = 1
_DOMAINS: Final = (_NUMBERS, _TEXT)
_BELOW: Final[Any] = object()
"""A bound below every value of a domain (a number, against text)."""
_ABOVE: Final[Any] = object()
"""A bound above every value of a domain (text, against numbers)."""
_MISSING: Final[Any] = object()
"""An interval whose bound is not a slot boundary yet."""

Slots = tuple[int, int] | None
"""First and last slot of an interval in a domain; ``None``: it holds no value of the domain."""


class RangeIndex(Generic[T]):
    """The subscriptions filed by intervals of one column: :meth:`find` them by a row's value.

    Args:
        column: The column the intervals compare.
        pending: How many intervals with new bounds wait, checked one by one, before the
            slots are rebuilt (plus the square root of the number filed).
    """

    def __init__(self, column: str, *, pending: int = 8) -> None:
        self.column = column
        self.pending = pending
        self._entries: dict[int, tuple[T, tuple[Interval, ...]]] = {}
        """key -> (subscription, its intervals), placed or pending."""
        self._pending: dict[int, tuple[T, tuple[Interval, ...]]] = {}
        self._mixed: dict[int, tuple[T, tuple[Interval, ...]]] = {}
        """Entries with an interval bounded by a number and by text (see the module)."""
        self._placed: dict[int, list[tuple[int, int]]] = {}
        """key -> the (domain, node) it is held at."""
        self._points: list[list[Any]] = [[], []]
        """Per domain: the sorted bounds (no NaN)."""
        self._trees: list[list[dict[int, T] | None]] = [[], []]
        self._size: list[int] = [0, 0]
        """Per domain: the tree's leaves (a power of two, at least the number of slots)."""
        self._held: list[int] = [0, 0]
        """Per domain: the nodes that hold something (none: no lookup)."""
        self._checks = 0
        """Pending intervals checked one by one since the last rebuild."""
        self._rebuild()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: int, sub: T, intervals: Sequence[Interval]) -> None:
        """File ``sub`` (under ``key``, e.g. its ``id``) by ``intervals``: a row in any of them finds it."""
        entry = self._entries[key] = (sub, tuple(intervals))
        if not self._place(key, entry):
            self._pending[key] = entry
        for interval in intervals:
            lower, upper = interval.lower, interval.upper
            if (
                lower is not None
                and upper is not None
                and (type(lower.value) is str) != (type(upper.value) is str)
            ):
                self._mixed[key] = entry

    def remove(self, key: int) -> None:
        """Unfile what was filed under ``key``; a key not filed is ignored."""
        if self._entries.pop(key, None) is None:
            return
        self._mixed.pop(key, None)
        if self._pending.pop(key, None) is not None:
            return
        trees, held = self._trees, self._held
        for domain, node in self._placed.pop(key, ()):
            tree = trees[domain]
            filed = tree[node]
            if filed is not None:
                filed.pop(key, None)
                if not filed:
                    tree[node] = None
            held[domain] -= 1

    def find(self, row: Mapping[str, Any], found: dict[int, T]) -> None:
        """Add to ``found`` (key -> subscription) every one with an interval that may hold ``row``'s value."""
        pending = self._pending
        if pending:
            self._checks += len(pending)
            filed = len(self._entries)
            if self._checks > 64 + filed or len(pending) > self.pending + isqrt(filed):
                self._rebuild()
        value = row.get(self.column)
        kind = type(value)
        held = self._held
        if type(value) is str:
            if held[_TEXT]:
                self._stab(_TEXT, value, found)
            number = NON_FINITE.get(value)
            if number is not None:
                if held[_NUMBERS]:
                    self._stab(_NUMBERS, number, found)
                if self._mixed:
                    _check(self._mixed, row, found)
        elif kind is int or kind is float or kind is bool:
            if held[_NUMBERS]:
                self._stab(_NUMBERS, value, found)
        else:
            return  # NULL is in no range; a JSON column's list or object is never compared
        if self._pending:
            _check(self._pending, row, found)

    def _stab(self, domain: int, value: Any, found: dict[int, T]) -> None:
        points = self._points[domain]
        if value != value:  # NaN: the top slot, above every number
            slot = 2 * len(points) + 1
        else:
            i = bisect_left(points, value)
            slot = 2 * i + 1 if i < len(points) and points[i] == value else 2 * i
        tree = self._trees[domain]
        node = slot + self._size[domain]
        while node:
            filed = tree[node]
            if filed:
                found.update(filed)
            node >>= 1

    def _place(self, key: int, entry: tuple[T, tuple[Interval, ...]]) -> bool:
        """Hold ``entry`` in the trees; ``False`` (nothing held) if a bound is not a slot boundary."""
        sub, intervals = entry
        spans: list[tuple[int, int, int]] = []
        for domain in _DOMAINS:
            points = self._points[domain]
            for interval in intervals:
                slots = _slots(interval, domain, points)
                if slots is _MISSING:
                    return False
                if slots is not None:
                    spans.append((domain, *slots))
        placed = self._placed[key] = []
        for domain, first, last in spans:
            tree, size = self._trees[domain], self._size[domain]
            low, high = first + size, last + size + 1
            while low < high:  # the canonical nodes of [first, last]
                if low & 1:
                    placed.append((domain, low))
                    low += 1
                if high & 1:
                    high -= 1
                    placed.append((domain, high))
                low >>= 1
                high >>= 1
        for domain, node in placed:
            self._held[domain] += 1
            tree = self._trees[domain]
            filed = tree[node]
            if filed is None:
                filed = tree[node] = {}
            filed[key] = sub
        return True

    def _rebuild(self) -> None:
        """Slots from the bounds of every interval filed now; everything placed again."""
        for domain in _DOMAINS:
            bounds: set[Any] = set()
            for _, intervals in self._entries.values():
                for interval in intervals:
                    for term in (interval.lower, interval.upper):
                        if term is not None:
                            point = _point(term.value, domain)
                            if point is not _BELOW and point is not _ABOVE and point == point:
                                bounds.add(point)
            points = self._points[domain] = sorted(bounds)
            size = 1 << (2 * len(points) + 1).bit_length()  # slots: 2 per bound, 1 below, NaN's above
            self._size[domain] = size
            self._trees[domain] = [None] * (2 * size)
        self._held = [0, 0]
        self._checks = 0
        self._placed.clear()
        self._pending.clear()
        for key, entry in self._entries.items():
            if not self._place(key, entry):
                raise AssertionError("a bound is missing from the slots just built")


def _check(
    entries: dict[int, tuple[T, tuple[Interval, ...]]], row: Mapping[str, Any], found: dict[int, T]
) -> None:
    """Add the ``entries`` with an interval holding ``row``'s value to ``found``, one by one."""
    for key, (sub, intervals) in entries.items():
        for interval in intervals:
            if interval.holds(row):
                found[key] = sub
                break


def _point(value: Any, domain: int) -> Any:
    """A bound's value as a point of ``domain``, or ``_BELOW`` / ``_ABOVE`` when it lies outside it."""
    if type(value) is str:
        if domain == _TEXT:
            return value
        number = NON_FINITE.get(value)
        return _ABOVE if number is None else number
    return value if domain == _NUMBERS else _BELOW


def _slots(interval: Interval, domain: int, points: list[Any]) -> Any:
    """The interval's :data:`Slots` in ``domain``, or ``_MISSING`` if a bound is not among ``points``.

    Slot ``2i + 1`` is ``points[i]``, slot ``2i`` the values between ``points[i - 1]`` and it,
    slot ``2m`` those above the last point, ``2m + 1`` NaN.
    """
    top = 2 * len(points) + 1
    first, last = 0, top
    lower, upper = interval.lower, interval.upper
    if lower is not None:
        point = _point(lower.value, domain)
        closed = lower.op == ">="
        if point is _ABOVE or (point != point and not closed):
            return None
        if point != point:
            first = top
        elif point is not _BELOW:
            i = _index(points, point)
            if i < 0:
                return _MISSING
            first = 2 * i + 1 if closed else 2 * i + 2
    if upper is not None:
        point = _point(upper.value, domain)
        closed = upper.op == "<="
        if point is _BELOW:
            return None
        if point != point:
            last = top if closed else top - 1
        elif point is not _ABOVE:
            i = _index(points, point)
            if i < 0:
                return _MISSING
            last = 2 * i + 1 if closed else 2 * i
    return (first, last) if first <= last else None


def _index(points: list[Any], point: Any) -> int:
    """Where ``point`` is in ``points``, or -1."""
    i = bisect_left(points, point)
    return i if i < len(points) and points[i] == point else -1
