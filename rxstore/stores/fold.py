"""How a table store folds a frame: changes, snapshots and resets into one persistent-map mutation.

The body of :meth:`TableStore.reduce_batch <rxstore.stores.table.TableStore.reduce_batch>`,
in two forms: :func:`reduce_envelopes` for a
:class:`~rxstore.protocol.frames.ChangeFrame` (checked change envelopes of one name:
the gateway's batches, no event object per change) and :func:`reduce_events`
for anything else (events built by hand, snapshots, a foreign server's payloads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import immutables

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import Change, Event, EventKind, Op, Snapshot
from rxstore.protocol.frames import ChangeFrame
from rxstore.protocol.records import batch_records, envelope_records, structure_records
from rxstore.stores.foreign import foreign_change, not_a_change
from rxstore.stores.state import TableState, new_state

if TYPE_CHECKING:
    from rxstore.stores.table import TableStore

__all__ = ["reduce_envelopes", "reduce_events", "rows_of"]

R = TypeVar("R")
_new = object.__new__


def reduce_events(store: TableStore[R], state: TableState[R], events: Sequence[Event]) -> TableState[R]:
    """``store.reduce_batch`` of any events: snapshots, changes, messages, in one map mutation."""
    rows, seq, key_name, table, parse = state.rows, state.seq, store.primary_key, store.table, store._parse
    mutation: Any = None  # immutables.MapMutation, opened on the first change
    to_record, own = store.to_record, store.own_records
    as_is = store.record_type is None and own  # rows kept as they came: skip the call
    # A batch's rows structured in one msgspec call, where the record type allows (else None).
    structured = batch_records(events, store.record_type) if own and len(events) > 1 else None
    for index, event in enumerate(events):
        kind = event.kind
        if kind is EventKind.CHANGE:
            # The envelope itself (validated by the root store, or the wire form of a Change).
            change_seq = event.seq
            if change_seq is None or (seq is not None and change_seq <= seq):
                continue
            try:
                envelope = event.data
                if type(envelope) is not dict:  # an event built by hand around a Change
                    envelope = cast(Change, event.change).to_payload()
                if envelope["topic"] != table:
                    raise ProtocolError(
                        f"change seq={change_seq} of {envelope['topic']!r} is not a {table!r} change"
                    )
                op = envelope["op"]
                row = envelope.get("record") if op != "DELETE" else envelope["old"]
                try:
                    key = row[key_name]
                except (KeyError, TypeError):
                    raise ProtocolError(
                        f"change seq={change_seq} on {table!r} has no {key_name!r} in its row"
                    ) from None
                hash(key)  # an unhashable key fails here, before the map is touched
                if op == "DELETE":
                    if mutation is None:
                        mutation = rows.mutate()
                    mutation.pop(key, None)
                else:
                    done = structured[index] if structured else None  # None: a row not in the batch call
                    record = done if done is not None else row if as_is else to_record(row)
                    old = envelope.get("old")
                    old_key = key if old is None or op != "UPDATE" else old.get(key_name, key)
                    moved = old_key != key  # the UPDATE changed the primary key: move the row
                    if moved:
                        hash(old_key)
                    if mutation is None:
                        mutation = rows.mutate()
                    if moved:
                        mutation.pop(old_key, None)
                    mutation[key] = record
            except Exception as exc:
                store.report(event, exc)
                continue
            seq = change_seq
        elif kind is EventKind.SNAPSHOT:
            snapshot = cast(Snapshot, event.data)
            mutation = None
            rows = rows_of(store, snapshot, event)
            seq = snapshot.seq
        elif kind is EventKind.RESET:
            mutation = None
            rows = immutables.Map()
            seq = None
        elif parse is not None:  # a foreign server's payload: no seq, applied as it comes
            try:
                parsed = foreign_change(store, event, parse)
            except Exception as exc:
                store.report(event, exc)
                continue
            if parsed is not None:
                if mutation is None:
                    mutation = rows.mutate()
                if parsed[0] is Op.DELETE:
                    mutation.pop(parsed[1], None)
                else:
                    mutation[parsed[1]] = parsed[2]
        else:  # a message under this table's event name: for other stores, not for this one
            store._report_error(not_a_change(store, event))
    if mutation is not None:
        rows = mutation.finish()
    if rows is state.rows and seq == state.seq:
        return state
    return new_state(rows, seq)


def reduce_envelopes(store: TableStore[R], state: TableState[R], frame: ChangeFrame) -> TableState[R]:
    """:meth:`reduce_batch` of a frame of checked change envelopes: no event object per change."""
    rows, seq, key_name, table = state.rows, state.seq, store.primary_key, store.table
    envelopes = frame.envelopes
    own = store.own_records
    record_type = store.record_type
    as_is = record_type is None and own  # rows kept as they came
    structured = envelope_records(envelopes, record_type) if own and len(envelopes) > 1 else None
    to_record = store.to_record
    mutation: Any = rows.mutate()
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
            row: Any = envelope["record"] if op != "DELETE" else old
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
            store.report(frame[index], exc)
            continue
        seq = change_seq
    if seq == state.seq:
        return state
    after: TableState[R] = _new(TableState)  # new_state(), inlined: one per frame
    fields = after.__dict__
    fields["rows"] = mutation.finish()
    fields["seq"] = seq
    fields["_memo"] = {}
    return after


def rows_of(store: TableStore[R], snapshot: Snapshot, event: Event) -> immutables.Map[Any, R]:
    """A snapshot's rows as the store's map (a row that does not fit is reported and left out)."""
    mutation: Any = immutables.Map().mutate()
    key_name, own = store.primary_key, store.own_records and store.record_type
    records = structure_records(list(snapshot.records), own) if own else None  # one msgspec call
    for index, row in enumerate(snapshot.records):
        try:
            mutation[row[key_name]] = records[index] if records is not None else store.to_record(row)
        except Exception as exc:
            store.report(event, exc)
    return cast(immutables.Map[Any, R], mutation.finish())
