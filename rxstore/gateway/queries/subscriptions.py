"""Live-query subscriptions on the gateway: each as a client sees it, and what a change is to it.

A client that follows only whole tables is served as before (by topic, its
frames shared with every client of the same topics). A client with at least
one subset (a where clause or a column subset, see :mod:`rxstore.protocol.subsets`) is
*indexed*: each of its subscriptions, whole-table ones included, is a
:class:`Subscription` in the :class:`~rxstore.gateway.queries.index.SubscriptionIndex`,
which finds the subscriptions a change may concern.
:func:`subscription_event` then says what the change is to that subscription: an INSERT when
the row enters the subset, a DELETE of the key when it leaves, an UPDATE when it stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from rxstore.gateway.access.auth import User
from rxstore.gateway.api import RowFilter
from rxstore.gateway.queries.index import index_keys
from rxstore.gateway.queries.relations import RelationState, relation_event
from rxstore.gateway.queries.visibility import visible_change
from rxstore.gateway.queries.windows import REFILL, Refill, WindowState, window_event
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Subset

__all__ = [
    "Subscription",
    "events_of_subscriptions",
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

        A row in the subset has at least one of them (see :func:`~rxstore.gateway.queries.index.index_keys`).
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
    if sub.relational:
        relation = sub.relation
        if relation is None:
            return None  # not read yet: its snapshot sets it
        if change.topic != subset.topic:
            return relation_event(relation, change)
        subset = relation.bound
    if sub.window is not None:  # a relation's window checks with the bound subset (its snapshot set it)
        return window_event(sub.id, sub.window, sub.user, change, authorize, sub.key_only)
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
