"""What folding a table's frames needs to know: the spec that :mod:`rxstore.stores.folding.fold` folds by."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from rxstore.protocol.errors import RxStoreError
from rxstore.protocol.events import Event, Op
from rxstore.protocol.windows import Order

__all__ = ["TableFold"]

R = TypeVar("R")


@attrs.frozen
class TableFold(Generic[R]):
    """What folding a table's frames needs to know (a :class:`~rxstore.stores.table.TableStore` makes one).

    Attributes:
        name: The store's name, in errors.
        table: The table its changes must be of.
        key: The primary key's column.
        record_type: The record type rows are structured into, or ``None`` (dicts).
        own_records: Whether rows become records by ``record_type`` alone (a batch is
            structured in one msgspec call); else each goes through ``to_record``.
        to_record: Turns one row into a record.
        report: Reports the failure of one event (the store's ``errors``).
        report_error: Reports an error that is not an event's failure.
        parse: A foreign server's payload -> ``(op, row)``, or ``None`` (the rxstore gateway).
        foreign_ops: The op words ``parse`` may return besides :class:`~rxstore.protocol.events.Op`.
        window: A window's ``order_by`` (its rows kept in order, an INSERT's ``out`` applied),
            or ``None``: the store follows no window.

    Example:
        >>> from rxstore.protocol.events import Event, EventKind
        >>> from rxstore.stores.folding.fold import reduce_events
        >>> from rxstore.stores.state import TableState
        >>> fold = TableFold("Posts", "posts", "id", None, True, dict, print, print)
        >>> change = {"seq": 3, "topic": "posts", "op": "INSERT", "record": {"id": "p1"}}
        >>> after = reduce_events(fold, TableState(), [Event("post_update", change, EventKind.CHANGE, 3)])
        >>> dict(after.rows), after.seq
        ({'p1': {'id': 'p1'}}, 3)
    """

    name: str
    table: str
    key: str
    record_type: type[Any] | None
    own_records: bool
    to_record: Callable[[Mapping[str, Any]], R]
    report: Callable[[Event, Exception], None]
    report_error: Callable[[RxStoreError], None]
    parse: Callable[[Any], Any] | None = None
    foreign_ops: Mapping[str, Op] = attrs.field(factory=dict)
    window: Order | None = None
