"""The subscription index: the live-query subscriptions a change may concern, found by its row's values.

:class:`SubscriptionIndex` files each subscription by ``(topic, column, value)`` for its
``=`` / ``in`` terms and by ``(topic, column, interval)`` for its ranges (``<``, ``<=``,
``>``, ``>=``, both sides of a column in one interval), an ``or`` group by every branch's
when every branch has some, a ``not`` by what it negates turned around (:func:`index_keys`),
so that the cost of a change grows with the subscriptions it may match, not with all of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from rxstore.gateway.queries.intervals import Interval
from rxstore.gateway.queries.ranges import RangeIndex
from rxstore.protocol.events import Change
from rxstore.protocol.subsets import Condition, Group, Term

__all__ = ["Filed", "SubscriptionIndex", "index_keys"]

Keys = tuple[tuple[str, Any], ...]
"""``(column, value)`` pairs a subscription is filed under; a value may be an :class:`Interval`."""


class Filed(Protocol):
    """What the index files: anything that says where it is filed.

    A :class:`~rxstore.gateway.queries.subscriptions.Subscription` is one.
    """

    def filings(self) -> tuple[tuple[str, Keys | None], ...]:
        """``(topic, index keys)`` pairs; keys ``None``: checked against every change of the topic."""
        ...


S = TypeVar("S", bound=Filed)


class SubscriptionIndex(Generic[S]):
    """Every indexed subscription, found per change by ``(topic, column, value)``.

    A subscription is filed under each of its :func:`index_keys`: a value of an ``=`` or
    ``in`` term in a dict, an interval in the column's
    :class:`~rxstore.gateway.queries.ranges.RangeIndex`; one without keys is checked against
    every change of its topic. A change looks up its new and its old row's values of the
    indexed columns (an UPDATE may move a row out of a subset), so its cost is the number
    of indexed columns of its topic (a dict lookup for values, a bisection and a tree path
    for ranges) plus the subscriptions it may concern.
    """

    def __init__(self) -> None:
        self._by_value: dict[str, dict[str, dict[Any, dict[int, S]]]] = {}
        """topic -> column -> value -> id(sub) -> sub."""
        self._by_range: dict[str, dict[str, RangeIndex[S]]] = {}
        """topic -> column -> its intervals."""
        self._scanned: dict[str, dict[int, S]] = {}
        """topic -> id(sub) -> sub, for subscriptions without index keys."""
        self._filed: dict[int, tuple[tuple[str, Keys | None], ...]] = {}
        """id(sub) -> what it was filed under (its ``filings()`` when added)."""
        self.count = 0

    def add(self, sub: S) -> None:
        """File ``sub`` (once)."""
        if id(sub) in self._filed:
            return
        filings = self._filed[id(sub)] = sub.filings()
        for topic, keys in filings:
            if keys is None:
                self._scanned.setdefault(topic, {})[id(sub)] = sub
                continue
            columns = self._by_value.setdefault(topic, {})
            ranges: dict[str, list[Interval]] = {}
            for column, value in keys:
                if type(value) is Interval:
                    ranges.setdefault(column, []).append(value)
                else:
                    columns.setdefault(column, {}).setdefault(_hashable(value), {})[id(sub)] = sub
            if not columns:
                del self._by_value[topic]
            if ranges:
                by_range = self._by_range.setdefault(topic, {})
                for column, intervals in ranges.items():
                    index = by_range.get(column)
                    if index is None:
                        index = by_range[column] = RangeIndex(column)
                    index.add(id(sub), sub, intervals)
        self.count += 1

    def remove(self, sub: S) -> None:
        """Unfile ``sub``; a subscription not filed is ignored."""
        filings = self._filed.pop(id(sub), None)
        if filings is None:
            return
        for topic, keys in filings:
            if keys is None:
                scanned = self._scanned.get(topic, {})
                scanned.pop(id(sub), None)
                if not scanned:
                    self._scanned.pop(topic, None)
                continue
            columns = self._by_value.get(topic, {})
            by_range = self._by_range.get(topic, {})
            for column, value in keys:
                if type(value) is Interval:
                    index = by_range.get(column)
                    if index is not None:
                        index.remove(id(sub))
                        if not len(index):
                            del by_range[column]
                    continue
                values = columns.get(column, {})
                value = _hashable(value)
                filed = values.get(value)
                if filed is not None and filed.pop(id(sub), None) is not None:
                    if not filed:
                        del values[value]
                    if not values:
                        columns.pop(column, None)
            if not columns:
                self._by_value.pop(topic, None)
            if not by_range:
                self._by_range.pop(topic, None)
        self.count -= 1

    def refile(self, sub: S) -> None:
        """File ``sub`` again under what it is filed under now (a relation read again); if it is filed."""
        if id(sub) in self._filed:
            self.remove(sub)
            self.add(sub)

    def candidates(self, change: Change) -> Iterable[S]:
        """The subscriptions ``change`` may concern (a superset: each still checks its whole where)."""
        topic = change.topic
        scanned = self._scanned.get(topic)
        columns = self._by_value.get(topic)
        ranges = self._by_range.get(topic)
        if columns is None and ranges is None:
            return scanned.values() if scanned else ()
        found: dict[int, S] = dict(scanned) if scanned else {}
        record, old = change.record, change.old
        # The old row is looked up only where its value differs: equal values find the same.
        if columns is not None:
            for column, values in columns.items():
                value = None
                if record is not None:
                    value = record.get(column)
                    filed = values.get(_hashable(value))
                    if filed:
                        found.update(filed)
                if old is not None and (record is None or old.get(column) != value):
                    filed = values.get(_hashable(old.get(column)))
                    if filed:
                        found.update(filed)
        if ranges is not None:
            for column, index in ranges.items():
                if record is not None:
                    index.find(record, found)
                if old is not None and (record is None or old.get(column) != record.get(column)):
                    index.find(old, found)
        return found.values()


def index_keys(where: Sequence[Condition]) -> Keys | None:
    """``(column, value)`` pairs such that every row satisfying ``where`` has one of them, or ``None``.

    A pair's value is a value of the column or an :class:`Interval` of it. An ``=`` term
    gives its one pair, an ``in`` term one per value, ``is null`` the value ``None``, a range
    an interval (``!=`` two: below and above); an AND (the where clause, a nested ``and``)
    the pairs of one item: a term's values first, then a group's values, then the two sides
    of a column as one interval, then any item's; an ``or`` the union of its items' pairs,
    only if every item has some; a ``not`` the pairs of what it negates turned around (SQL's
    ``NOT`` of a comparison is the opposite comparison, and De Morgan's laws hold in its
    three-valued logic); ``in`` under a ``not`` and ``is not null`` none.

    Example:
        >>> from rxstore.protocol.subsets import terms_of
        >>> index_keys(terms_of([("ts", ">", 5), {"or": [("a", "=", 1), ("b", "in", [2, 3])]}]))
        (('a', 1), ('b', 2), ('b', 3))
        >>> (column, interval), = index_keys(terms_of([("ts", ">=", 5), ("ts", "<", 9)]))
        >>> column, interval.lower.to_wire(), interval.upper.to_wire()
        ('ts', ['ts', '>=', 5], ['ts', '<', 9])
        >>> index_keys(terms_of([{"or": [("a", "=", 1), ("b", "is not null")]}])) is None
        True
    """
    return _and_keys(where, False)


_NEGATED = {
    **{"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"},
    **{"is null": "is not null", "is not null": "is null"},
}
"""The term that is true where a term is false (SQL's ``NOT`` of it; a NULL stays unknown)."""
_SCALARS = (str, int, float, bool)


def _and_keys(items: Sequence[Condition], negated: bool) -> Keys | None:
    """The keys of an AND of ``items`` (each negated if ``negated``: then it is their OR's negation)."""
    grouped: Keys | None = None
    other: Keys | None = None
    sides: dict[str, list[Term | None]] = {}
    """column -> [lower, upper]: one-sided ranges of terms, to join into one interval."""
    for item in items:
        keys = _keys(item, negated)
        if keys is None:
            continue
        if _values_only(keys):
            if type(item) is Term:
                return keys
            if grouped is None:
                grouped = keys
            continue
        if other is None:
            other = keys
        if type(item) is Term and len(keys) == 1:
            column, interval = keys[0]
            side = sides.setdefault(column, [None, None])
            if side[0] is None:
                side[0] = interval.lower
            if side[1] is None:
                side[1] = interval.upper
    if grouped is not None:
        return grouped
    for column, (lower, upper) in sides.items():
        if lower is not None and upper is not None:
            return ((column, Interval(column, lower, upper)),)
    return other


def _keys(condition: Condition, negated: bool) -> Keys | None:
    if type(condition) is Term:
        return _term_keys(condition, negated)
    group: Group = condition  # type: ignore[assignment]
    if group.kind == "not":
        return _keys(group.items[0], not negated)
    if (group.kind == "and") != negated:  # an AND, or the negation of an OR (De Morgan)
        return _and_keys(group.items, negated)
    union: list[tuple[str, Any]] = []
    for item in group.items:
        keys = _keys(item, negated)
        if keys is None:
            return None
        union.extend(keys)
    return tuple(dict.fromkeys(union))


def _term_keys(term: Term, negated: bool) -> Keys | None:
    op, column, value = term.op, term.column, term.value
    if negated:
        if op not in _NEGATED:
            return None  # NOT IN: every value but a few
        op = _NEGATED[op]
        term = Term(column, op, value)
    if op == "=":
        return ((column, value),)
    if op == "in":
        return tuple((column, one) for one in value) if type(value) in (tuple, frozenset) else None
    if op == "is null":
        return ((column, None),)
    if type(value) not in _SCALARS:
        return None  # a null test, a claim not filled in
    if op in (">", ">="):
        return ((column, Interval(column, lower=term)),)
    if op in ("<", "<="):
        return ((column, Interval(column, upper=term)),)
    if op == "!=":
        return (
            (column, Interval(column, upper=Term(column, "<", value))),
            (column, Interval(column, lower=Term(column, ">", value))),
        )
    return None


def _values_only(keys: Keys) -> bool:
    return all(type(value) is not Interval for _, value in keys)


def _hashable(value: Any) -> Any:
    """A value as an index key: keys are equal where terms compare equal.

    A non-finite float is its string (``inf`` is ``"Infinity"``, every NaN ``"NaN"``); a list
    or object (a JSON column's) is ``None``, as a NULL.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return value if -_INFINITY < value < _INFINITY else _NON_FINITE_NAMES.get(value, "NaN")
    return None


_INFINITY = math.inf
_NON_FINITE_NAMES = {math.inf: "Infinity", -math.inf: "-Infinity"}
