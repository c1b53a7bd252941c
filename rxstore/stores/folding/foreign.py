"""A table store's payloads that are not change envelopes: a foreign server's, or a message.

A table store follows a server other than the rxstore
gateway through a ``parse`` adapter; :func:`foreign_change` turns one such
payload into ``(op, key, record)``, and :func:`not_a_change` is the error a
store reports for a message under its table's event name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import Event, Op, parse_change

if TYPE_CHECKING:
    from rxstore.stores.folding.fold_spec import TableFold

__all__ = ["FOREIGN_OPS", "foreign_change", "not_a_change"]

R = TypeVar("R")

FOREIGN_OPS: Final[Mapping[str, Op]] = {
    **{word: Op.INSERT for word in ("insert", "inserted", "create", "created")},
    **{word: Op.UPDATE for word in ("update", "updated", "upsert", "upserted")},
    **{word: Op.DELETE for word in ("delete", "deleted", "remove", "removed")},
}
"""The op words a ``parse`` adapter may return by default (``TableStore.foreign_ops``)."""


def foreign_change(
    store: TableFold[R], event: Event, parse: Callable[[Any], Any]
) -> tuple[Op, Any, R | None] | None:
    """``(op, key, record)`` of a foreign payload (``None``: ignore it).

    Raises:
        ProtocolError: ``parse`` raised or returned something unusable.
        ValidationError: The row does not fit ``record_type``.
    """

    def refused(why: str) -> ProtocolError:
        return ProtocolError(
            f"{store.name}: {event.name!r} payload {why}; {store.table!r} left as it was",
            event=event.name,
            payload=event.data,
            store=store.name,
        )

    try:
        parsed = parse(event.data)
    except Exception as exc:
        raise refused(f"could not be parsed: parse raised {type(exc).__name__}: {exc}") from exc
    if parsed is None:
        return None
    if type(parsed) not in (tuple, list) or len(parsed) != 2:
        raise refused(f"could not be parsed: parse returned {type(parsed).__name__}, not (op, row)")
    word, row = parsed
    op = word if isinstance(word, Op) else None
    if op is None and isinstance(word, str):
        op = store.foreign_ops.get(word.lower())
    if op is None:
        known = ", ".join(sorted(store.foreign_ops))
        raise refused(f"has the unknown op {word!r} (an Op or one of: {known})")
    if not isinstance(row, Mapping):
        raise refused(f"gave a {type(row).__name__} as its row, not an object")
    try:
        key = row[store.key]
        hash(key)
    except (KeyError, TypeError):
        raise refused(f"has no usable {store.key!r} in its row") from None
    return op, key, None if op is Op.DELETE else store.to_record(row)


def not_a_change(store: TableFold[Any], event: Event) -> ProtocolError:
    """The error of a message under a table's event name: not a change envelope, so ignored by ``store``.

    Other stores accepting the same name still get it (see ``Router._to_frame``).
    """
    try:
        parse_change(event.data, event=event.name)
        why = "a message, not a change"
    except ProtocolError as exc:
        why = str(exc)
    return ProtocolError(
        f"{store.name}: {event.name!r} payload is not a change envelope ({why}); "
        f"{store.table!r} left as it was",
        event=event.name,
        payload=event.data,
        store=store.name,
    )
