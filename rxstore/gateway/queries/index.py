"""The subscription index: the live-query subscriptions a change may concern, found by its row's values.

:class:`SubscriptionIndex` files each subscription by ``(topic, column, value)`` for its
``=`` / ``in`` terms (an ``or`` group by every branch's, when every branch has some:
:func:`index_keys`), so that the cost of a change grows with the subscriptions it may
match, not with all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from rxstore.protocol.events import Change
from rxstore.protocol.subsets import Condition, Group, Term

__all__ = ["Filed", "SubscriptionIndex", "index_keys"]

Keys = tuple[tuple[str, Any], ...]
"""``(column, value)`` pairs a subscription is filed under."""


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

    A subscription is filed under each of its :func:`index_keys` (the values of
    an ``=`` or ``in`` term, or of every branch of an ``or``); one without is
    checked against every change of its topic.
    A change looks up its new and its old row's values of the indexed columns
    (an UPDATE may move a row out of a subset), so its cost is the number of
    indexed columns of its topic plus the subscriptions it may concern.
    """

    def __init__(self) -> None:
        self._by_value: dict[str, dict[str, dict[Any, dict[int, S]]]] = {}
        """topic -> column -> value -> id(sub) -> sub."""
        self._scanned: dict[str, dict[int, S]] = {}
        """topic -> id(sub) -> sub, for subscriptions without an ``=`` / ``in`` term."""
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
            for column, value in keys:
                columns.setdefault(column, {}).setdefault(value, {})[id(sub)] = sub
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
            for column, value in keys:
                values = columns.get(column, {})
                filed = values.get(value)
                if filed is not None and filed.pop(id(sub), None) is not None:
                    if not filed:
                        del values[value]
                    if not values:
                        columns.pop(column, None)
            if not columns:
                self._by_value.pop(topic, None)
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
        if columns is None:
            return scanned.values() if scanned else ()
        found: dict[int, S] = dict(scanned) if scanned else {}
        record, old = change.record, change.old
        for column, values in columns.items():
            if record is not None:
                filed = values.get(_hashable(record.get(column)))
                if filed:
                    found.update(filed)
            if old is not None:
                filed = values.get(_hashable(old.get(column)))
                if filed:
                    found.update(filed)
        return found.values()


def index_keys(where: Sequence[Condition]) -> Keys | None:
    """``(column, value)`` pairs such that every row satisfying ``where`` has one of them, or ``None``.

    An ``=`` term gives its one pair, an ``in`` term one per value; an AND (the
    where clause, a nested ``and``) the pairs of its first item that has some
    (preferring a term); an ``or`` the union of its items' pairs, only if every
    item has some; a ``not``, a range or a null test none.

    Example:
        >>> from rxstore.protocol.subsets import terms_of
        >>> index_keys(terms_of([("ts", ">", 5), {"or": [("a", "=", 1), ("b", "in", [2, 3])]}]))
        (('a', 1), ('b', 2), ('b', 3))
        >>> index_keys(terms_of([{"or": [("a", "=", 1), ("b", ">", 2)]}])) is None
        True
    """
    found = None
    for condition in where:
        keys = _condition_keys(condition)
        if keys is not None and (found is None or type(condition) is Term):
            found = keys
            if type(condition) is Term:
                break
    return found


def _condition_keys(condition: Condition) -> Keys | None:
    if type(condition) is Term:
        if condition.op == "=":
            return ((condition.column, condition.value),)
        if condition.op == "in" and type(condition.value) in (tuple, frozenset):
            return tuple((condition.column, value) for value in condition.value)
        return None  # a range, a null test, a relation not bound to its values
    group: Group = condition  # type: ignore[assignment]
    if group.kind == "and":
        return index_keys(group.items)
    if group.kind == "not":
        return None
    union: list[tuple[str, Any]] = []
    for item in group.items:
        keys = _condition_keys(item)
        if keys is None:
            return None
        union.extend(keys)
    return tuple(dict.fromkeys(union))


def _hashable(value: Any) -> Any:
    """A row value as an index key: lists and objects (JSON columns) are never term values."""
    return value if type(value) in (str, int, float, bool) else None
