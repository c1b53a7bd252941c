"""Optimistic rows of a table store: shown on top of the confirmed state until their mutation settles.

``RootStore.mutate(..., optimistic={store: rows})`` hands a
:class:`~rxstore.stores.table.TableStore` the rows a mutation is expected to write;
the store keeps them here, by mutation id, and publishes the confirmed state
with them laid on top until a change of that mutation arrives through the log
(or the mutation fails and they are dropped). Whether any is shown is the
store's pending-writes status (Firestore's ``hasPendingWrites``): a flag that
flips after the state it belongs to is published, and a count per key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from reactivex import Observable

from rxstore.protocol.events import Event, EventKind
from rxstore.stores.domain import StateSubject
from rxstore.stores.state import TableState, new_state

__all__ = ["PendingRows"]

R = TypeVar("R")


class PendingRows(Generic[R]):
    """The rows of the mutations in flight (key -> record, ``None`` for deleted), oldest first."""

    def __init__(self) -> None:
        self.rows: dict[str, Mapping[Any, R | None]] = {}
        """Mutation id -> its rows; empty when none is pending (read on every fold)."""
        self.keys: dict[Any, int] = {}
        """Key -> how many pending mutations write that row (a key is absent when none does)."""
        self.flagged = False
        """What :attr:`flag` said last."""
        self._flag: StateSubject[bool] | None = None
        """Made when first asked for (an idle store keeps no subject for it)."""

    def __bool__(self) -> bool:
        return bool(self.rows)

    @property
    def flag(self) -> Observable[bool]:
        """Whether any row is pending: the current value, then each change of it."""
        if self._flag is None:
            self._flag = StateSubject(self.flagged)
        return self._flag

    def announce(self) -> None:
        """Tell :attr:`flag` if whether any row is pending changed (called once the state is published)."""
        pending = bool(self.rows)
        if pending is not self.flagged:
            self.flagged = pending
            if self._flag is not None:
                self._flag.push(pending)

    def ids(self) -> tuple[str, ...]:
        """The mutations shown, oldest first."""
        return tuple(self.rows)

    def add(self, mutation: str, rows: Mapping[Any, R | None]) -> None:
        """Show ``rows`` until ``mutation`` settles or is dropped."""
        shown = self.rows.get(mutation)
        if shown is not None:  # the same id again: its new rows replace the old ones, in place
            self._uncount(shown)
        self.rows[mutation] = rows
        keys = self.keys
        for key in rows:
            keys[key] = keys.get(key, 0) + 1

    def drop(self, mutation: str) -> bool:
        """Stop showing the rows of ``mutation``; whether it was shown."""
        rows = self.rows.pop(mutation, None)
        if rows is None:
            return False
        self._uncount(rows)
        return True

    def _uncount(self, rows: Mapping[Any, R | None]) -> None:
        keys = self.keys
        for key in rows:
            left = keys[key] - 1
            if left:
                keys[key] = left
            else:
                del keys[key]

    def clear(self) -> None:
        """Stop showing every mutation's rows."""
        self.rows.clear()
        self.keys.clear()

    def settle(self, frame: Sequence[Event]) -> bool:
        """Drop the mutations whose changes are in ``frame``, and every one made before them.

        A root sends its mutations one at a time, in the order they were made, so
        the change of one means every earlier one was applied (or failed). Their
        own changes may never come back as changes: a snapshot read after them
        holds their rows without their ids. Left shown, an earlier mutation's row
        would cover the newer confirmed one. Returns whether any was shown.
        """
        settled = False
        rows = self.rows
        for event in frame:
            if event.kind is EventKind.CHANGE:
                mutation = event.data.get("mutation")
                if mutation is not None and mutation in rows:
                    for earlier in tuple(rows):  # oldest first, up to this one
                        self.drop(earlier)
                        if earlier == mutation:
                            break
                    settled = True
        return settled

    def overlay(self, confirmed: TableState[R]) -> TableState[R]:
        """``confirmed`` with every pending row laid on top, in the order the mutations were made."""
        mutation: Any = confirmed.rows.mutate()
        for rows in self.rows.values():
            for key, record in rows.items():
                if record is None:
                    mutation.pop(key, None)
                else:
                    mutation[key] = record
        return new_state(mutation.finish(), confirmed.seq, confirmed.window)
