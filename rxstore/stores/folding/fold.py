"""How a table's frames fold into its state: changes, snapshots and resets in one persistent-map mutation.

The fold is a function of a small spec, :class:`~rxstore.stores.folding.fold_spec.TableFold`
(the table, its key, how rows become records, where failures go), not of the store:
:func:`reduce_envelopes` folds a :class:`~rxstore.protocol.frames.ChangeFrame`
(checked change envelopes of one name: the gateway's batches, no event object
per change) and :func:`reduce_events` anything else (events built by hand,
snapshots, resets, a foreign server's payloads). Both apply changes with one
loop, :func:`_apply_changes`: the one definition of applying a change to a
table. A window's frames (``fold.window`` set) go through :func:`_apply_window`:
each change applied by that loop, then its row moved in the window's order and
the rows its ``out`` names removed, in the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import immutables

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import ROW_OF, Change, Event, EventKind, Op, Snapshot
from rxstore.protocol.frames import ChangeFrame
from rxstore.protocol.records import envelope_records, structure_records
from rxstore.stores.folding.built_rows import BuiltRows
from rxstore.stores.folding.collector import collector_paused
from rxstore.stores.folding.fold_spec import TableFold
from rxstore.stores.folding.foreign import foreign_change, not_a_change
from rxstore.stores.state import TableState, new_state
from rxstore.stores.window import Window

__all__ = ["reduce_envelopes", "reduce_events", "rows_of"]

R = TypeVar("R")
_new = object.__new__


def reduce_envelopes(fold: TableFold[R], state: TableState[R], frame: ChangeFrame) -> TableState[R]:
    """Fold a frame of checked change envelopes: no event object per change."""
    if fold.window is not None:
        return _reduce_window(fold, state, frame)
    envelopes = frame.envelopes
    mutation: Any = state.rows.mutate()
    seq = _apply_changes(fold, mutation, state.seq, envelopes, frame)
    if seq == state.seq:
        return state
    after: TableState[R] = _new(TableState)  # new_state(), inlined: one per frame
    fields = after.__dict__
    fields["rows"] = mutation.finish()
    fields["seq"] = seq
    fields["_memo"] = {}
    return after


def reduce_events(fold: TableFold[R], state: TableState[R], events: Sequence[Event]) -> TableState[R]:
    """Fold any events (snapshots, changes, resets, foreign payloads, messages) in one map mutation."""
    rows, seq, parse = state.rows, state.seq, fold.parse
    mutation: Any = None  # immutables.MapMutation, opened on the first change
    run: list[Event] = []  # consecutive changes, applied together
    window = None if fold.window is None else _window_of(fold, state)

    def flush() -> None:
        nonlocal mutation, seq
        opened = mutation is None
        if opened:
            mutation = rows.mutate()
        before = seq
        envelopes = [_envelope(event) for event in run]
        if window is None:
            seq = _apply_changes(fold, mutation, seq, envelopes, run)
        else:
            seq = _apply_window(fold, mutation, seq, envelopes, run, window)
        if opened and seq == before:  # nothing applied: the rows stay the same object
            mutation = None
        run.clear()

    for event in events:
        kind = event.kind
        if kind is EventKind.CHANGE:
            if event.seq is not None:
                run.append(event)
            continue
        if run:
            flush()
        if kind is EventKind.SNAPSHOT:
            snapshot = cast(Snapshot, event.data)
            mutation = None
            rows = rows_of(fold, snapshot, event)
            seq = snapshot.seq
            if window is not None:
                window = _window_of_snapshot(fold, snapshot, rows)
        elif kind is EventKind.PAGE:  # rows added to a window (rxstore:more): nothing replaced
            if mutation is None:
                mutation = rows.mutate()
            _add_page(fold, mutation, window, cast(Snapshot, event.data), event)
        elif kind is EventKind.RESET:
            mutation = None
            rows = immutables.Map()
            seq = None
            if window is not None:
                window = Window(window.order, fold.key)
        elif parse is not None:  # a foreign server's payload: no seq, applied as it comes
            try:
                parsed = foreign_change(fold, event, parse)
            except Exception as exc:
                fold.report(event, exc)
                continue
            if parsed is not None:
                if mutation is None:
                    mutation = rows.mutate()
                if parsed[0] is Op.DELETE:
                    mutation.pop(parsed[1], None)
                else:
                    mutation[parsed[1]] = parsed[2]
        else:  # a message under this table's event name: for other stores, not for this one
            fold.report_error(not_a_change(fold, event))
    if run:
        flush()
    if mutation is not None:
        rows = mutation.finish()
    if rows is state.rows and seq == state.seq:
        return state
    return new_state(rows, seq, window)


def _add_page(
    fold: TableFold[Any], mutation: Any, window: Window | None, page: Snapshot, event: Event
) -> None:
    """Add a page's rows (``rxstore:more``) to the rows, and to the window's order."""
    key = fold.key
    added = rows_of(fold, page, event)  # a row that does not fit is reported and left out
    for row in page.records:
        value = row.get(key)
        if type(value) in (str, int, float, bool) and value in added:  # a bad key was reported
            mutation[value] = added[value]
            if window is not None:
                window.put(value, row)


def _reduce_window(fold: TableFold[R], state: TableState[R], frame: ChangeFrame) -> TableState[R]:
    """:func:`reduce_envelopes` of a window: the rows and their order moved together (one copy per frame)."""
    window = _window_of(fold, state)
    mutation: Any = state.rows.mutate()
    seq = _apply_window(fold, mutation, state.seq, frame.envelopes, frame, window)
    if seq == state.seq:
        return state
    return new_state(mutation.finish(), seq, window)


def _window_of(fold: TableFold[Any], state: TableState[Any]) -> Window:
    """A copy of ``state``'s window to move, or one made from its rows (the first frame of a new order)."""
    window = state.window
    if window is not None and window.order == fold.window and window.key == fold.key:
        return window.copy()
    return Window.of_rows(fold.window or (), fold.key, state.rows.values())


def _window_of_snapshot(fold: TableFold[Any], snapshot: Snapshot, rows: immutables.Map[Any, Any]) -> Window:
    """The window of a snapshot's rows (those it kept: a row that did not fit is not in ``rows``)."""
    key = fold.key
    kept = [row for row in snapshot.records if row.get(key) in rows]
    return Window.of_rows(fold.window or (), key, kept)


def _apply_window(
    fold: TableFold[Any],
    mutation: Any,
    seq: int | None,
    envelopes: Sequence[dict[str, Any]],
    events: Sequence[Event],
    window: Window,
) -> int | None:
    """:func:`_apply_changes` one change at a time, each applied one moved in ``window`` with its ``out``."""
    key = fold.key
    for index, envelope in enumerate(envelopes):
        before = seq
        seq = _apply_changes(fold, mutation, seq, (envelope,), _At(events, index))
        if seq == before:
            continue  # a duplicate, or reported
        if envelope["op"] == "DELETE":
            window.drop(envelope["old"][key])
            continue
        row = envelope["record"]
        old = envelope.get("old")
        if old is not None:
            window.drop(old.get(key))  # an UPDATE that moved the primary key
        window.put(row[key], row)
        for gone in envelope.get("out") or ():
            value = gone.get(key)
            try:
                mutation.pop(value, None)
            except TypeError:
                continue  # an unhashable key names no row
            window.drop(value)
    return seq


class _At(Sequence[Event]):
    """``events[index:]`` without building the events first (a frame makes them only when asked)."""

    __slots__ = ("_events", "_index")

    def __init__(self, events: Sequence[Event], index: int) -> None:
        self._events = events
        self._index = index

    def __len__(self) -> int:
        return len(self._events) - self._index

    def __getitem__(self, index: Any) -> Any:
        return self._events[self._index + index]


def _envelope(event: Event) -> dict[str, Any]:
    """A change event's envelope (the wire form of its :class:`Change` if it was built by hand)."""
    envelope = event.data
    if type(envelope) is not dict:
        envelope = cast(Change, event.change).to_payload()
    return cast(dict[str, Any], envelope)


def _apply_changes(
    fold: TableFold[Any],
    mutation: Any,
    seq: int | None,
    envelopes: Sequence[dict[str, Any]],
    events: Sequence[Event],
) -> int | None:
    """Apply change envelopes after ``seq`` to ``mutation``; the seq of the last one applied.

    A change that fails (another table's, a row without its key, a record that
    does not fit) is reported as ``events[i]`` and leaves the map as it was.
    """
    key_name, table = fold.key, fold.table
    own = fold.own_records
    record_type = fold.record_type
    as_is = record_type is None and own  # rows kept as they came
    structured = envelope_records(envelopes, record_type) if own and len(envelopes) > 1 else None
    to_record = fold.to_record
    row_of = ROW_OF
    index = -1
    for envelope in envelopes:
        index += 1
        change_seq = envelope["seq"]
        if seq is not None and change_seq <= seq:
            continue
        try:
            if envelope["topic"] != table:
                raise ProtocolError(
                    f"change seq={change_seq} of {envelope['topic']!r} is not a {table!r} change"
                )
            op = envelope["op"]
            old = envelope.get("old")
            row: Any = envelope[row_of[op]]
            try:
                key = row[key_name]
            except (KeyError, TypeError):
                raise ProtocolError(
                    f"change seq={change_seq} on {table!r} has no {key_name!r} in its row"
                ) from None
            if op == "DELETE":
                hash(key)  # an unhashable key fails here, before the map is touched
                mutation.pop(key, None)
            else:
                if as_is:
                    record = row
                else:
                    done = structured[index] if structured else None  # None: not in the batch call
                    record = done if done is not None else to_record(row)
                if old is not None and op == "UPDATE":
                    old_key = old.get(key_name, key)
                    if old_key != key:  # the UPDATE changed the primary key: move the row
                        hash(key), hash(old_key)  # both hashable, before the map is touched
                        mutation.pop(old_key, None)
                mutation[key] = record  # hashes the key first: an unhashable one leaves the map as it was
        except Exception as exc:
            fold.report(events[index], exc)
            continue
        seq = change_seq
    return seq


def rows_of(fold: TableFold[R], snapshot: Snapshot, event: Event) -> immutables.Map[Any, R]:
    """A snapshot's rows as the table's map (a row that does not fit is reported and left out).

    A snapshot that came in chunks carries its map already built for this store's key and
    record type (:class:`~rxstore.stores.folding.built_rows.BuiltRows`): that one is
    taken. Otherwise rows kept as they came, or structured in one msgspec call, go into
    the map in one tight loop; if any row fails there, the map is built again a row at
    a time, each failure reported.
    """
    rows = snapshot.records
    if type(rows) is BuiltRows and fold.own_records:
        built = rows.maps.get((fold.key, fold.record_type))
        if built is not None:
            return built
    with collector_paused(len(rows)):
        key_name, own = fold.key, fold.own_records and fold.record_type
        records = structure_records(list(rows), own) if own else None  # one msgspec call
        if fold.own_records and (records is not None or not own):
            built = _bulk(key_name, rows, rows if records is None else records)
            if built is not None:
                return built
        mutation: Any = immutables.Map().mutate()
        for index, row in enumerate(rows):
            try:
                mutation[row[key_name]] = records[index] if records is not None else fold.to_record(row)
            except Exception as exc:
                fold.report(event, exc)
        return cast(immutables.Map[Any, R], mutation.finish())


def _bulk(key_name: str, rows: Sequence[Any], records: Sequence[Any]) -> immutables.Map[Any, Any] | None:
    """``records`` by their rows' keys, in one pass with no call per row; ``None`` if a row fails."""
    mutation: Any = immutables.Map().mutate()
    try:
        for row, record in zip(rows, records, strict=True):
            mutation[row[key_name]] = record
    except Exception:
        return None  # a row without its key, or an unhashable one: built again, a row at a time
    return cast(immutables.Map[Any, Any], mutation.finish())
