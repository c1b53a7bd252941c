"""One write of the state file: the changes since the last one, and the cursor they lead to."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Batch", "Outgoing"]

Outgoing = tuple[str, str, Any, dict[str, Any], float]
"""A mutation as the file keeps it: ``(id, name, args, optimistic rows by store, timeout)``."""


@attrs.frozen
class Batch:
    """What one transaction writes (made on the loop thread, written by the writer thread).

    Attributes:
        cleared: Subscriptions whose rows are replaced (a snapshot or a reset came).
        rows: Subscription id -> primary key -> the row now, as JSON text (``None``: deleted);
            changed rows only.
        subs: Subscription id -> (its spec, its table's seq): every followed subscription.
        states: Domain store name -> its state, encoded (the stores whose state changed).
        cursor_known: Whether the cursor fields are to be written (a batch of the outbox alone is not).
        cursor: The cursor the rows belong to.
        cursor_event: The event name of the cursor's change.
        cursor_ts: The commit time of the cursor's change (``None``: unknown).
        epoch: The change log's epoch of the cursor.
        outbox_added: Mutations accepted since the last write.
        outbox_removed: Ids of mutations settled since the last write.
        changes: How many changes the batch coalesces (a metric).
    """

    cleared: frozenset[str] = frozenset()
    rows: dict[str, dict[Any, str | None]] = attrs.field(factory=dict)
    subs: dict[str, tuple[dict[str, Any], int | None]] = attrs.field(factory=dict)
    states: dict[str, Any] = attrs.field(factory=dict)
    cursor_known: bool = False
    cursor: int | None = None
    cursor_event: str | None = None
    cursor_ts: float | None = None
    epoch: str | None = None
    outbox_added: tuple[Outgoing, ...] = ()
    outbox_removed: tuple[str, ...] = ()
    changes: int = 0

    @property
    def row_count(self) -> int:
        """The rows written or deleted."""
        return sum(len(rows) for rows in self.rows.values())
