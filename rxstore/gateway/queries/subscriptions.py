"""Live-query subscriptions on the gateway: each as a client sees it, and the index that routes changes.

A client that follows only whole tables is served as before (by topic, its
frames shared with every client of the same topics). A client with at least
one subset (a where clause or a column subset, see :mod:`rxstore.protocol.subsets`) is
*indexed*: each of its subscriptions, whole-table ones included, is a
:class:`Subscription` in the :class:`SubscriptionIndex`, which finds the
subscriptions a change may concern by ``(topic, column, value)`` for their
``=`` / ``in`` terms (an ``or`` group by every branch's, when every branch
has some: :func:`index_keys`), so that the cost of a change grows with the
subscriptions it matches, not with all of them. :func:`subscription_event`
then says what the change is to that subscription: an INSERT when the row
enters the subset, a DELETE of the key when it leaves, an UPDATE when it stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from rxstore.gateway.access.auth import User
from rxstore.gateway.api import RowFilter
from rxstore.gateway.queries.relations import RelationState, relation_event
from rxstore.gateway.queries.visibility import visible_change
from rxstore.gateway.queries.windows import REFILL, Refill, WindowState, window_event
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Condition, Group, Subset, Term

__all__ = [
    "Subscription",
    "SubscriptionIndex",
    "events_of_subscriptions",
    "index_keys",
    "subscription_event",
]


@attrs.define(eq=False)
class Subscription:
    """One subscription of one client.

    Attributes:
        id: Its event name: the name its snapshot and changes travel under.
        subset: What it follows.
        client: The client's sid.
        user: The client's user (for ``authorize``).
        key: The topic's primary key.
        key_only: Whether the topic's envelopes carry only the old row's key.
        since: Changes up to this seq are in its snapshot (left out).
        skip: Seqs above ``since`` that its snapshot holds too (left out).
        window: A window's rows as the client holds them (set by its snapshot), else ``None``.
        relation: A relation's values as of its position (set by its snapshot), else ``None``.
    """

    id: str
    subset: Subset
    client: str
    user: User
    key: str
    key_only: bool = False
    since: int = -1
    skip: frozenset[int] = frozenset()
    window: WindowState | None = None
    relation: RelationState | None = None
    relational: bool = attrs.field(
        init=False, default=attrs.Factory(lambda self: self.subset.relation is not None, takes_self=True)
    )
    """Whether its subset has a relation term (its ``relation`` set by its snapshot)."""

    @property
    def topic(self) -> str:
        """The table it follows."""
        return self.subset.topic

    @property
    def stateful(self) -> bool:
        """Whether changes move a state of its own (a window's rows, a relation's values)."""
        return self.window is not None or self.relational

    def index_keys(self) -> tuple[tuple[str, Any], ...] | None:
        """The ``(column, value)`` pairs it is filed under (``None``: it is checked against every change).

        A row in the subset has at least one of them (see :func:`index_keys`).
        """
        return index_keys(self.subset.where)

    def filings(self) -> tuple[tuple[str, tuple[tuple[str, Any], ...] | None], ...]:
        """``(topic, index keys)`` it is filed under: its table, and a relation's related table.

        A relation is filed under its current values (none before its snapshot) and
        under its subquery's keys in the related table (``user_id = alice``).
        """
        term = self.subset.relation
        if term is None:
            return ((self.topic, index_keys(self.subset.where)),)
        bound = self.relation.bound.where if self.relation is not None else ()
        related = term.value
        return ((self.topic, index_keys(bound) if bound else ()), (related.topic, index_keys(related.where)))


def subscription_event(sub: Subscription, change: Change, authorize: RowFilter | None) -> list[Any] | None:
    """The ``[id, envelope]`` that ``change`` is to ``sub``, or ``None`` if it is nothing to it.

    A whole-table subscription gets the change as the topic's clients do (see
    :func:`~rxstore.gateway.queries.visibility.visible_change`). A subset gets an INSERT
    when the row enters it, a DELETE carrying only the key when it leaves (the
    old row's content is not sent), an UPDATE when it stays; the rows are
    projected to its columns. A row is in it when ``where`` and ``authorize``
    both allow it.
    """
    seq = change.seq
    if seq <= sub.since or (sub.skip and seq in sub.skip):
        return None
    subset = sub.subset
    if sub.window is not None:
        return window_event(sub.id, sub.window, sub.user, change, authorize, sub.key_only)
    if sub.relational:
        relation = sub.relation
        if relation is None:
            return None  # not read yet: its snapshot sets it
        if change.topic != subset.topic:
            return relation_event(relation, change)
        subset = relation.bound
    if subset.whole:
        if authorize is not None:
            visible = visible_change(authorize, sub.user, change, sub.key)
            if visible is None:
                return None
            change = visible
        payload = change.to_payload()
        if sub.key_only and change.old is not None:
            payload["old"] = {sub.key: change.old.get(sub.key)}
        return [sub.id, payload]
    topic, user, key = change.topic, sub.user, sub.key
    record, old = change.record, change.old
    now = (
        record is not None
        and subset.matches(record)
        and (authorize is None or authorize(user, topic, record))
    )
    if change.op is Op.UPDATE and old is None:
        before = True  # the log does not know: a DELETE is harmless, an UPDATE is an upsert
    else:
        before = (
            old is not None and subset.matches(old) and (authorize is None or authorize(user, topic, old))
        )
    if not now and not before:
        return None
    payload = change.to_payload()
    if now:
        assert record is not None
        payload["record"] = subset.project(record, key)
        if before and old is not None:  # stays in
            payload["op"] = Op.UPDATE.value
            payload["old"] = {key: old.get(key)} if sub.key_only else subset.project(old, key)
        else:  # enters (or the log does not know where it was: an upsert)
            payload["op"] = Op.INSERT.value
            payload["old"] = None
    else:  # leaves: its key only
        row = old if old is not None else record
        payload["op"] = Op.DELETE.value
        payload["record"] = None
        payload["old"] = {key: (row or {}).get(key)}
    return [sub.id, payload]


def events_of_subscriptions(
    changes: Sequence[Change],
    subscriptions: Mapping[str, Sequence[Subscription]],
    cursor: int,
    authorize: RowFilter | None,
    refill: Refill | None = None,
) -> list[Any]:
    """The ``[id, envelope]`` pairs of ``changes`` (after ``cursor``) for one client's subscriptions.

    Args:
        changes: A batch read from the log, in seq order.
        subscriptions: The client's subscriptions by topic.
        cursor: The last seq the client has.
        authorize: The row filter (``None``: every row).
        refill: Where a window that must be read again is noted: the events stop
            after the change that needs it (its seq in ``refill.seq``).
    """
    events: list[Any] = []
    for change in changes:
        if change.seq <= cursor:
            continue
        for sub in subscriptions.get(change.topic, ()):
            event = subscription_event(sub, change, authorize)
            if event is REFILL:
                if refill is None:
                    raise RuntimeError("a window needs a refill where none can be made")
                refill.seq = change.seq
                refill.windows.append(sub)
            elif event is not None:
                events.append(event)
        if refill is not None and refill.windows:
            break
    return events


class SubscriptionIndex:
    """Every indexed subscription, found per change by ``(topic, column, value)``.

    A subscription is filed under each of its :func:`index_keys` (the values of
    an ``=`` or ``in`` term, or of every branch of an ``or``); one without is
    checked against every change of its topic.
    A change looks up its new and its old row's values of the indexed columns
    (an UPDATE may move a row out of a subset), so its cost is the number of
    indexed columns of its topic plus the subscriptions it may concern.
    """

    def __init__(self) -> None:
        self._by_value: dict[str, dict[str, dict[Any, dict[int, Subscription]]]] = {}
        """topic -> column -> value -> id(sub) -> sub."""
        self._scanned: dict[str, dict[int, Subscription]] = {}
        """topic -> id(sub) -> sub, for subscriptions without an ``=`` / ``in`` term."""
        self._filed: dict[int, tuple[tuple[str, tuple[tuple[str, Any], ...] | None], ...]] = {}
        """id(sub) -> what it was filed under (:meth:`Subscription.filings` when added)."""
        self.count = 0

    def add(self, sub: Subscription) -> None:
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

    def remove(self, sub: Subscription) -> None:
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

    def refile(self, sub: Subscription) -> None:
        """File ``sub`` again under what it is filed under now (a relation read again); if it is filed."""
        if id(sub) in self._filed:
            self.remove(sub)
            self.add(sub)

    def candidates(self, change: Change) -> Iterable[Subscription]:
        """The subscriptions ``change`` may concern (a superset: each still checks its whole where)."""
        topic = change.topic
        scanned = self._scanned.get(topic)
        columns = self._by_value.get(topic)
        if columns is None:
            return scanned.values() if scanned else ()
        found: dict[int, Subscription] = dict(scanned) if scanned else {}
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


def index_keys(where: Sequence[Condition]) -> tuple[tuple[str, Any], ...] | None:
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


def _condition_keys(condition: Condition) -> tuple[tuple[str, Any], ...] | None:
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
