"""Windows of a live query: ``order_by``, ``limit`` and an ``after`` keyset, and the one sort order.

A *window* keeps the first ``limit`` rows of a subset in an order: the
``order_by`` columns, each ascending or descending, then the primary key
ascending as the last tiebreaker (so the order is total). The order is SQL's,
the same in the database (``ORDER BY``) and in Python (:func:`sort_key`):

* NULL sorts after every value ascending (``NULLS LAST``), so first descending
  (``NULLS FIRST``): PostgreSQL's default, written out for SQLite too;
* numbers (booleans as 0 and 1) by value, NaN above every number (PostgreSQL's
  order), then text by code point (SQLite ``BINARY``, PostgreSQL ``"C"``).

``after`` starts a window past a keyset: the order values of the last row a
client has, one per ``order_by`` column and the primary key's last.

Example:
    >>> order = order_of([("ts", "desc")])
    >>> rows = [{"id": 1, "ts": 5}, {"id": 2, "ts": None}, {"id": 3, "ts": 9}]
    >>> [r["id"] for r in sorted(rows, key=lambda r: sort_key(r, order, "id"))]
    [2, 3, 1]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from rxstore.protocol.errors import RxStoreError

__all__ = [
    "DIRECTIONS",
    "MAX_LIMIT",
    "MAX_ORDER_COLUMNS",
    "Order",
    "WindowError",
    "after_of",
    "desc_value_key",
    "keyset_key",
    "keyset_of",
    "limit_of",
    "order_of",
    "sort_key",
    "value_key",
]

MAX_LIMIT: Final = 1000
"""Most rows a window keeps (``limit``)."""
MAX_ORDER_COLUMNS: Final = 8
"""Most ``order_by`` columns (the primary key is added to them)."""
DIRECTIONS: Final = ("asc", "desc")

Order = tuple[tuple[str, str], ...]
"""``((column, "asc" | "desc"), ...)``: a window's order, the primary key not included."""

_NON_FINITE: Final = {"Infinity": math.inf, "-Infinity": -math.inf}
_REVERSED_BYTES: Final = bytes(0xFE - b if b <= 0xFE else 0 for b in range(256))


class WindowError(RxStoreError, ValueError):
    """An ``order_by``, ``limit`` or ``after`` is not valid (the subsets' error wraps it)."""


def order_of(spec: Iterable[Any] | str | None) -> Order:
    """Read ``order_by``: column names (ascending) or ``(column, "asc" | "desc")`` pairs.

    Raises:
        WindowError: Not a list, a bad name or direction, a column twice, too many.
    """
    if spec is None:
        return ()
    if isinstance(spec, str):
        spec = [spec]
    order: list[tuple[str, str]] = []
    for index, item in enumerate(spec, start=1):
        if isinstance(item, str):
            column, direction = item, "asc"
        elif isinstance(item, Sequence) and len(item) == 2:
            column, direction = item[0], item[1]
        else:
            raise WindowError(
                f"order_by {index}: expected a column or [column, 'asc' | 'desc'], got {item!r:.80}"
            )
        if type(column) is not str or not 0 < len(column) <= 1024:
            raise WindowError(f"order_by {index}: a column name must be a string of 1-1024 characters")
        if direction not in DIRECTIONS:
            raise WindowError(f"order_by {index}: direction must be 'asc' or 'desc', got {direction!r:.40}")
        if any(column == seen for seen, _ in order):
            raise WindowError(f"order_by {index}: column {column!r} is named twice")
        order.append((column, direction))
    if len(order) > MAX_ORDER_COLUMNS:
        raise WindowError(f"order_by has at most {MAX_ORDER_COLUMNS} columns, got {len(order)}")
    return tuple(order)


def limit_of(limit: Any) -> int | None:
    """Check ``limit``: ``None``, or an integer from 1 to :data:`MAX_LIMIT`.

    Raises:
        WindowError: Not a positive integer, or over :data:`MAX_LIMIT` (the message names it).
    """
    if limit is None:
        return None
    if type(limit) is not int or limit < 1:
        raise WindowError(f"limit must be a positive integer, got {limit!r:.40}")
    if limit > MAX_LIMIT:
        raise WindowError(f"limit is at most {MAX_LIMIT} (MAX_LIMIT), got {limit}")
    return limit


def after_of(after: Any, order: Order) -> tuple[Any, ...] | None:
    """Check an ``after`` keyset: one value per ``order_by`` column, then the primary key's.

    Raises:
        WindowError: Not a list of that length, or a value that is not a string, number, boolean or null.
    """
    if after is None:
        return None
    if not order:
        raise WindowError("after needs an order_by")
    if isinstance(after, str | bytes | Mapping) or not isinstance(after, Sequence):
        raise WindowError("after is a list: the last row's order_by values, then its primary key")
    if len(after) != len(order) + 1:
        raise WindowError(
            f"after holds {len(order) + 1} values (one per order_by column, then the primary key), "
            f"got {len(after)}"
        )
    for index, value in enumerate(after, start=1):
        kind = type(value)
        if value is not None and kind not in (str, int, float, bool):
            raise WindowError(f"after value {index}: a string, number, boolean or null, got {kind.__name__}")
        if kind is float and not math.isfinite(value):
            raise WindowError(f"after value {index}: a finite number, got {value!r}")
        if kind is str and len(value) > 1024:
            raise WindowError(f"after value {index}: a string has at most 1024 characters")
    if after[-1] is None:
        raise WindowError("after: the primary key's value (the last) cannot be null")
    return tuple(after)


def value_key(value: Any) -> tuple[Any, ...]:
    """One value's place in the ascending order: numbers, NaN, text, then NULL."""
    kind = type(value)
    if value is None:
        return (3,)
    if kind is str:
        number = _NON_FINITE.get(value)
        if number is not None:
            return (0, number)
        if value == "NaN":
            return (1,)
        return (2, value)
    if kind is float and math.isnan(value):
        return (1,)
    if kind is int or kind is float or kind is bool:
        return (0, value)
    return (2, str(value))  # never a filterable kind: still a total order


def desc_value_key(value: Any) -> tuple[Any, ...]:
    """One value's place in the descending order: NULL, text, NaN, then numbers, each reversed.

    A plain tuple, compared natively as :func:`value_key`'s: a number is negated, text is its
    UTF-8 bytes each taken from ``0xFE`` with ``0xFF`` after them (UTF-8 has neither byte, so a
    longer text with the same start sorts first); the value itself comes last (for
    :func:`keyset_of`), compared only where the reversed parts are equal.
    """
    kind = type(value)
    if value is None:
        return (0,)
    if kind is str:
        number = _NON_FINITE.get(value)
        if number is not None:
            return (3, -number, number)
        if value == "NaN":
            return (2,)
        return (1, _reversed_text(value), value)
    if kind is float and math.isnan(value):
        return (2,)
    if kind is int or kind is float or kind is bool:
        return (3, -value, value)
    text = str(value)  # never a filterable kind: still a total order, as value_key's
    return (1, _reversed_text(text), text)


def _reversed_text(text: str) -> bytes:
    """``text`` as bytes whose ascending order is the text's descending code point order."""
    return text.encode("utf-8", "surrogatepass").translate(_REVERSED_BYTES) + b"\xff"


def sort_key(row: Mapping[str, Any], order: Order, key: str) -> tuple[Any, ...]:
    """``row``'s place in a window's order: its ``order_by`` values, then its primary key.

    A tuple of tuples that compares natively (no Python ``__lt__``): descending columns are
    :func:`desc_value_key`'s.
    """
    get = row.get
    if len(order) == 1:  # the common window: one column
        column, direction = order[0]
        value = get(column)
        return (value_key(value) if direction == "asc" else desc_value_key(value), value_key(get(key)))
    parts: list[Any] = [
        value_key(get(column)) if direction == "asc" else desc_value_key(get(column))
        for column, direction in order
    ]
    parts.append(value_key(get(key)))
    return tuple(parts)


def keyset_key(after: Sequence[Any], order: Order) -> tuple[Any, ...]:
    """The :func:`sort_key` of an ``after`` keyset."""
    row = {column: value for (column, _), value in zip(order, after, strict=False)}
    row["\x00key"] = after[-1]
    return sort_key(row, order, "\x00key")


def keyset_of(place: tuple[Any, ...]) -> tuple[Any, ...]:
    """The ``after`` keyset of a row at ``place`` (a :func:`sort_key`): its order values, then its key.

    Example:
        >>> order = order_of([("ts", "desc"), "title"])
        >>> keyset_of(sort_key({"id": 7, "ts": 5, "title": None}, order, "id"))
        (5, None, 7)
    """
    return tuple(_value_of(part) for part in place)


def _value_of(place: tuple[Any, ...]) -> Any:
    """The value whose :func:`value_key` or :func:`desc_value_key` is ``place`` (NaN, non-finite: floats)."""
    if len(place) == 3:  # descending: the value is kept last
        return place[2]
    if len(place) == 2:
        return place[1]
    return math.nan if place[0] in (1, 2) else None
