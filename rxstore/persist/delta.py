"""The changes not yet written: rows by key, coalesced (a row changed 10 times is written once)."""

from __future__ import annotations

from typing import Any

from rxstore.operators import Frame
from rxstore.persist.json_rows import row_text
from rxstore.protocol.events import Event, EventKind, Snapshot
from rxstore.protocol.frames import ChangeFrame

__all__ = ["Delta"]

_CHANGE, _SNAPSHOT, _PAGE, _RESET = EventKind.CHANGE, EventKind.SNAPSHOT, EventKind.PAGE, EventKind.RESET


class Delta:
    """Rows changed since the last write, per subscription; fed one frame at a time on the loop thread.

    Args:
        keys: Subscription id -> its table's primary key field.

    The cost per change is one dict store of the row's JSON text (or ``None`` when
    it is deleted): a string keeps nothing alive for the cyclic garbage collector to
    walk (keeping the row dicts until the write made its collections cost about 6 µs
    a change on a 100,000-row table), and the writer thread only writes it.
    """

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.rows: dict[str, dict[Any, str | None]] = {}
        self.cleared: set[str] = set()
        self.changes = 0
        """Changes taken since the last write (before coalescing)."""

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def take(self) -> tuple[frozenset[str], dict[str, dict[Any, str | None]], int]:
        """Return what was gathered (cleared subscriptions, rows, changes) and start afresh."""
        taken = frozenset(self.cleared), self.rows, self.changes
        self.cleared, self.rows, self.changes = set(), {}, 0
        return taken

    def add(self, frame: Frame) -> None:
        """Take one frame of a keyed view: changes, snapshots, pages, resets (messages are not rows)."""
        if type(frame) is ChangeFrame:
            self._changes(frame.name, frame.envelopes)
            return
        for event in frame:
            kind = event.kind
            if kind is _CHANGE:
                self._changes(event.name, [_envelope(event)])
            elif kind is _SNAPSHOT:
                self._snapshot(event.name, event.data)
            elif kind is _PAGE:
                self._page(event.name, event.data)
            elif kind is _RESET:
                self.cleared.update(self.keys)
                self.rows = {}

    def _changes(self, sub: str, envelopes: list[dict[str, Any]]) -> None:
        key_name = self.keys.get(sub)
        if key_name is None:
            return
        rows = self.rows.get(sub)
        if rows is None:
            rows = self.rows[sub] = {}
        for envelope in envelopes:
            record, old = envelope.get("record"), envelope.get("old")
            try:
                if record is None:
                    rows[old[key_name]] = None  # type: ignore[index]
                    continue
                key = record[key_name]
                out = envelope.get("out")
                if out:  # rows an INSERT moved out of a window
                    for moved in out:
                        rows[moved[key_name]] = None
                if old is not None:
                    old_key = old.get(key_name, key)
                    if old_key != key:  # an UPDATE that moved the row to another key
                        rows[old_key] = None
                rows[key] = row_text(record)
            except (KeyError, TypeError):
                continue  # no key or an unhashable one: the store reported it, and kept no row
        self.changes += len(envelopes)

    def _snapshot(self, sub: str, snapshot: Snapshot) -> None:
        if sub not in self.keys:
            return
        self.cleared.add(sub)
        self.rows[sub] = {}
        self._page(sub, snapshot)

    def _page(self, sub: str, page: Snapshot) -> None:
        """Rows added to a window (``store.more(n)``), or a snapshot's rows: nothing else replaced."""
        key_name = self.keys.get(sub)
        if key_name is None:
            return
        rows = self.rows.get(sub)
        if rows is None:
            rows = self.rows[sub] = {}
        for row in page.records:
            try:
                rows[row[key_name]] = row_text(row)
            except (KeyError, TypeError):
                continue
        self.changes += 1


def _envelope(event: Event) -> dict[str, Any]:
    """A change event's envelope (the wire form of its change if it was built by hand)."""
    if type(event.data) is dict:
        return event.data
    change = event.change
    return {} if change is None else change.to_payload()
