"""Relations on the gateway: the values of a subscription's subquery, and each related change's step.

A subscription with a relation term (``["channel_id", "in", {"select": "channel_id",
"from": "memberships", "where": [...]}]``, see :mod:`rxstore.protocol.where.relations`)
keeps a :class:`RelationState`: the rows of the related table that satisfy the
subquery (primary key -> selected value, NULLs left out), loaded in the same read
transaction as the subscription's snapshot, so at its seq. Its subset is evaluated
for live changes with the relation term *bound* to the current values (a frozenset:
one lookup per change), and filed in the subscription index under them, so a
change of the main table finds it by key.

What a change of the related table is to it (:func:`relation_event`):

* it leaves the set of values as it was (another row of the same channel, a row
  outside the subquery): the state moves, nothing is sent;
* it adds a value (alice joins a channel) or removes one (she leaves): the rows
  that move in or out are not known here as of that change's seq.
  :data:`~rxstore.gateway.queries.windows.REFILL`: the client stops after this
  change and the subscription is read again at one log position, with its
  values, exactly as a window is refilled (see docs/live_queries.md, "Relations").

A window may hold a relation (the newest 50 messages of my channels): its
:class:`~rxstore.gateway.queries.windows.WindowState` checks the main table's
changes with the bound subset, and a value that comes or goes reads the window
again at one log position, like any refill.

A subscription whose subquery selects more than
:data:`~rxstore.protocol.where.relations.MAX_RELATION_VALUES` rows is refused at
``rxstore:subscribe``; one that grows past it later is *ended*: its snapshot is
empty and it follows nothing more (:attr:`RelationState.ended`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from rxstore.gateway.queries.windows import REFILL
from rxstore.protocol.events import Change
from rxstore.protocol.subsets import MAX_RELATION_VALUES, Relation, Subset

__all__ = ["RelationState", "relation_event"]


@attrs.define(eq=False)
class RelationState:
    """The subquery's rows as the client's position sees them, and the subset bound to their values.

    Attributes:
        subset: The subscription's subset (its claims filled in).
        key: The related table's primary key.
        rows: Related primary key -> selected value, for the rows the subquery selects.
        counts: Selected value -> how many of ``rows`` hold it (the values: its keys).
        bound: ``subset`` with the relation term's values the current ones (what changes are checked with).
        ended: More than ``MAX_RELATION_VALUES`` rows: it matches nothing and follows nothing.
        refuse: Over the bound at its snapshot, refuse the subscription (``rxstore:subscribe``)
            rather than end it.
        moved: A related change added or removed a value: it is read again (``rxstore_relation_moves``).
    """

    subset: Subset
    key: str
    rows: dict[Any, Any] = attrs.field(factory=dict)
    counts: dict[Any, int] = attrs.field(factory=dict)
    bound: Subset = attrs.field(default=None)
    ended: bool = False
    refuse: bool = False
    moved: bool = False

    def __attrs_post_init__(self) -> None:
        self.bound = self.subset.bound(frozenset())

    @property
    def relation(self) -> Relation:
        """The subquery."""
        term = self.subset.relation
        assert term is not None
        return term.value  # type: ignore[no-any-return]

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Take the rows the subquery selects (read with the snapshot); more than the bound ends it."""
        select, key = self.relation.select, self.key
        for row in rows:
            value = row.get(select)
            if value is not None:
                self.hold(row.get(key), value)
        if len(self.rows) > MAX_RELATION_VALUES:
            self.end()
        else:
            self.bound = self.subset.bound(frozenset(self.counts))

    def end(self) -> None:
        """Follow nothing more: the subquery selects too many rows (``MAX_RELATION_VALUES``)."""
        self.ended = True
        self.rows.clear()
        self.counts.clear()
        self.bound = self.subset.bound(frozenset())

    def hold(self, key: Any, value: Any) -> None:
        """Hold the related row ``key``, which selects ``value``."""
        self.rows[key] = value
        self.counts[value] = self.counts.get(value, 0) + 1

    def drop(self, key: Any) -> None:
        """Let go of the related row ``key`` (held)."""
        value = self.rows.pop(key)
        left = self.counts[value] - 1
        if left:
            self.counts[value] = left
        else:
            del self.counts[value]


def relation_event(state: RelationState, change: Change) -> list[Any] | None:
    """What a change of the related table is to the subscription: ``None`` or :data:`REFILL`.

    The state moves with ``None`` (its values stay as they were), not with :data:`REFILL`.
    """
    if state.ended:
        return None
    relation, key = state.relation, state.key
    record, old = change.record, change.old
    before_key = (old if old is not None else record or {}).get(key)
    before = state.rows.get(before_key)
    after = None
    if record is not None and relation.selects(record):
        after = record.get(relation.select)
    after_key = record.get(key) if record is not None else None
    if before is None and after is None:
        return None
    counts = state.counts
    if (before is not None and after != before and counts[before] == 1) or (
        after is not None and after != before and after not in counts
    ):
        state.moved = True  # a value goes (its rows move out) or comes (they move in)
        return REFILL
    if before is not None:
        state.drop(before_key)
    if after is not None:
        state.hold(after_key, after)
        if len(state.rows) > MAX_RELATION_VALUES:
            state.moved = True  # read again: over the bound, it ends
            return REFILL
    return None
