"""Live-query subsets: which rows of a table a subscription follows, and which columns.

A :class:`Subset` is a table, a where clause (an AND of :class:`Term` s, each
``column op value``) and an optional column subset. The same value is built
by the client (from the friendly forms of :func:`terms_of`), sent on the wire
(:meth:`Subset.to_wire` / :func:`parse_subscription`), compiled to SQL by the
gateway for snapshots, and evaluated in Python by :meth:`Subset.matches` for
live changes, with the semantics of SQL:

* a term on a NULL (or missing) column is false, except ``is null``;
* ``!=`` on NULL is false (SQL's three-valued logic), like ``=``;
* numbers compare by value (``1 == 1.0``; booleans are the integers 0 and 1,
  as SQLite stores them); strings by code point (SQLite's ``BINARY``,
  PostgreSQL's ``"C"`` collation);
* values of different kinds order as SQLite orders storage classes
  (numbers < text), which only SQLite's dynamic typing can produce;
* the strings ``"Infinity"``, ``"-Infinity"`` and ``"NaN"`` (how the gateway
  sends non-finite numbers) compare as those floats against a number, and NaN
  as PostgreSQL orders it: equal to itself, above every other number.

Example:
    >>> s = Subset("messages", terms_of({"channel": "general"}))
    >>> s.matches({"id": 1, "channel": "general"}), s.matches({"id": 2, "channel": None})
    (True, False)
    >>> s.to_wire("general")
    {'id': 'general', 'topic': 'messages', 'where': [['channel', '=', 'general']], 'columns': None}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from rxstore.protocol.errors import RxStoreError

__all__ = [
    "COMPARISONS",
    "MAX_COLUMNS",
    "MAX_ID_CHARS",
    "MAX_IN_VALUES",
    "MAX_TERMS",
    "MAX_TEXT_CHARS",
    "NULL_TESTS",
    "OPS",
    "Subset",
    "SubsetError",
    "Term",
    "WhereSpec",
    "columns_of",
    "parse_subscription",
    "terms_of",
]

COMPARISONS: Final = ("=", "!=", "<", "<=", ">", ">=")
"""Operators that take one value."""
NULL_TESTS: Final = ("is null", "is not null")
"""Operators that take no value."""
OPS: Final = (*COMPARISONS, "in", *NULL_TESTS)
"""Every operator a term may use."""

MAX_TERMS: Final = 16
"""Most terms in one where clause."""
MAX_IN_VALUES: Final = 1000
"""Most values of one ``in`` term."""
MAX_TEXT_CHARS: Final = 1024
"""Longest string value (and column name) in a term."""
MAX_COLUMNS: Final = 256
"""Most columns in a column subset."""
MAX_ID_CHARS: Final = 64
"""Longest subscription id."""

Scalar = str | int | float | bool
"""A term's value: a JSON scalar (``None`` is not a value: use ``is null``)."""

_NON_FINITE: Final = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


class SubsetError(RxStoreError, ValueError):
    """A where clause, column subset or subscription is not valid.

    Attributes:
        code: ``invalid_subscription`` (its shape, an operator, a column, a value's
            type), ``forbidden_topic`` or ``too_many_subscriptions``: the code a
            gateway's acknowledgement carries.

    Example:
        >>> try:
        ...     terms_of([("likes", "~", 3)])
        ... except SubsetError as exc:
        ...     print(exc)
        term 1: unknown operator '~' (one of =, !=, <, <=, >, >=, in, is null, is not null)
    """

    def __init__(self, message: str, *, code: str = "invalid_subscription") -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen(cache_hash=True)
class Term:
    """One ``column op value`` condition.

    Attributes:
        column: The column's name.
        op: One of :data:`OPS`.
        value: A scalar for a comparison, a tuple of scalars for ``in``, ``None`` for a null test.

    Example:
        >>> Term("likes", ">=", 3).matches({"likes": 5}), Term("likes", ">=", 3).matches({"likes": None})
        (True, False)
    """

    column: str
    op: str
    value: Any = None

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` satisfies this term, with SQL semantics (see the module docstring)."""
        current = row.get(self.column)
        op = self.op
        if op == "is null":
            return current is None
        if op == "is not null":
            return current is not None
        if current is None:
            return False
        if op == "in":
            return any(_compare(current, value) == 0 for value in self.value)
        order = _compare(current, self.value)
        if op == "=":
            return order == 0
        if op == "!=":
            return order != 0
        if op == "<":
            return order < 0
        if op == "<=":
            return order <= 0
        if op == ">":
            return order > 0
        return order >= 0

    def to_wire(self) -> list[Any]:
        """``[column, op]`` or ``[column, op, value]`` (a list for ``in``)."""
        if self.op in NULL_TESTS:
            return [self.column, self.op]
        if self.op == "in":
            return [self.column, self.op, list(self.value)]
        return [self.column, self.op, self.value]


@attrs.frozen(cache_hash=True)
class Subset:
    """The rows of ``topic`` that satisfy every term, with ``columns`` of them (``None``: all).

    Attributes:
        topic: The table.
        where: The terms, all of which a row must satisfy (none: every row).
        columns: The columns to send, or ``None`` for all; the gateway adds the primary key.

    Example:
        >>> mine = Subset("posts", terms_of([("author", "=", "ann")]), ("title",))
        >>> mine.matches({"id": 1, "author": "ann"}), mine.project({"id": 1, "title": "t"}, "id")
        (True, {'id': 1, 'title': 't'})
    """

    topic: str
    where: tuple[Term, ...] = ()
    columns: tuple[str, ...] | None = None

    @property
    def whole(self) -> bool:
        """Every row and every column: a whole-table subscription."""
        return not self.where and self.columns is None

    def matches(self, row: Mapping[str, Any] | None) -> bool:
        """Whether ``row`` (``None``: no row) is in the subset."""
        if row is None:
            return False
        return all(term.matches(row) for term in self.where)

    def project(self, row: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
        """``row`` with only the subset's columns (and ``key``, the primary key)."""
        columns = self.columns
        if columns is None:
            return dict(row)
        return {name: row.get(name) for name in _with_key(columns, key)}

    def to_wire(self, id: str, since: int | None = None) -> dict[str, Any]:
        """The subscription object of the wire protocol (docs/protocol.md)."""
        wire: dict[str, Any] = {
            "id": id,
            "topic": self.topic,
            "where": [term.to_wire() for term in self.where],
            "columns": None if self.columns is None else list(self.columns),
        }
        if since is not None:
            wire["since"] = since
        return wire


WhereSpec = Mapping[str, Any] | Iterable[Sequence[Any]] | None
"""What a user writes for a where clause: ``{"col": value}`` or ``[("col", op, value), ...]``."""


def terms_of(spec: WhereSpec) -> tuple[Term, ...]:
    """Read a where clause from its friendly forms; check operators, arity and value types.

    ``{"channel": "general", "kind": ["a", "b"]}`` is ``channel = 'general' AND kind
    IN ('a', 'b')`` (a ``None`` value is ``is null``); a sequence of ``(column, op,
    value)`` or ``(column, "is null")`` tuples gives any operator of :data:`OPS`.

    Raises:
        SubsetError: An unknown operator, a bad value, too many terms or values.
    """
    if spec is None:
        return ()
    raw: list[Sequence[Any]]
    if isinstance(spec, Mapping):
        raw = []
        for column, value in spec.items():
            if value is None:
                raw.append((column, "is null"))
            elif isinstance(value, list | tuple | set | frozenset):
                raw.append((column, "in", list(value)))
            else:
                raw.append((column, "=", value))
    elif isinstance(spec, str | bytes):
        raise SubsetError("a where clause is a mapping or a list of (column, op, value) terms, not a string")
    else:
        raw = list(spec)
    if len(raw) > MAX_TERMS:
        raise SubsetError(f"a where clause has at most {MAX_TERMS} terms, got {len(raw)}")
    return tuple(_term(index, item) for index, item in enumerate(raw, start=1))


def columns_of(columns: Iterable[str] | None) -> tuple[str, ...] | None:
    """Check a column subset: distinct non-empty names, at most :data:`MAX_COLUMNS`.

    Raises:
        SubsetError: A name that is not a non-empty string, or too many.
    """
    if columns is None:
        return None
    if isinstance(columns, str):
        raise SubsetError("columns is a list of column names, not a string")
    names = tuple(dict.fromkeys(columns))
    if len(names) > MAX_COLUMNS:
        raise SubsetError(f"a column subset has at most {MAX_COLUMNS} columns, got {len(names)}")
    for name in names:
        _check_name(name, "columns")
    return names


def parse_subscription(data: Any) -> tuple[str, Subset, int | None]:
    """Read a subscription object of the wire protocol: ``(id, subset, since)``.

    Raises:
        SubsetError: Its shape or a term is not valid (the message says which).
    """
    if type(data) is not dict:
        raise SubsetError("a subscription must be an object {id, topic, where, columns}")
    sub_id, topic, since = data.get("id"), data.get("topic"), data.get("since")
    if type(sub_id) is not str or not 0 < len(sub_id) <= MAX_ID_CHARS or not sub_id.isprintable():
        raise SubsetError(f"a subscription 'id' must be a printable string of 1-{MAX_ID_CHARS} characters")
    if sub_id.startswith("rxstore:"):
        raise SubsetError(f"subscription id {sub_id!r}: names starting with 'rxstore:' are reserved")
    if type(topic) is not str or not topic:
        raise SubsetError(f"subscription {sub_id!r} needs a 'topic' string")
    if since is not None and (type(since) is not int or since < 0):
        raise SubsetError(f"subscription {sub_id!r}: 'since' must be a non-negative integer or null")
    where = data.get("where")
    if where is not None and type(where) is not list:
        raise SubsetError(f"subscription {sub_id!r}: 'where' must be a list of [column, op, value] terms")
    columns = data.get("columns")
    if columns is not None and type(columns) is not list:
        raise SubsetError(f"subscription {sub_id!r}: 'columns' must be a list of names or null")
    try:
        subset = Subset(topic, terms_of(where or ()), columns_of(columns))
    except SubsetError as exc:
        raise SubsetError(f"subscription {sub_id!r}: {exc}", code=exc.code) from None
    return sub_id, subset, since


# -- helpers -------------------------------------------------------------------


def _term(index: int, item: Any) -> Term:
    if isinstance(item, str | bytes) or not isinstance(item, Sequence) or not 2 <= len(item) <= 3:
        raise SubsetError(f"term {index}: expected (column, op, value) or (column, 'is null'), got {item!r}")
    column, op = item[0], item[1]
    _check_name(column, f"term {index}")
    if type(op) is not str or op not in OPS:
        raise SubsetError(f"term {index}: unknown operator {op!r} (one of {', '.join(OPS)})")
    if op in NULL_TESTS:
        if len(item) == 3 and item[2] is not None:
            raise SubsetError(f"term {index}: {op!r} takes no value")
        return Term(column, op)
    if len(item) != 3:
        raise SubsetError(f"term {index}: {op!r} needs a value")
    value = item[2]
    if op == "in":
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise SubsetError(f"term {index}: 'in' needs a list of values, got {value!r}")
        values = tuple(value)
        if not 0 < len(values) <= MAX_IN_VALUES:
            raise SubsetError(f"term {index}: 'in' takes 1 to {MAX_IN_VALUES} values, got {len(values)}")
        for element in values:
            _check_scalar(index, element)
        return Term(column, op, values)
    _check_scalar(index, value)
    return Term(column, op, value)


def _check_name(name: Any, where: str) -> None:
    if type(name) is not str or not 0 < len(name) <= MAX_TEXT_CHARS:
        raise SubsetError(f"{where}: a column name must be a string of 1-{MAX_TEXT_CHARS} characters")


def _check_scalar(index: int, value: Any) -> None:
    kind = type(value)
    if kind is str:
        if len(value) > MAX_TEXT_CHARS:
            raise SubsetError(f"term {index}: a string value has at most {MAX_TEXT_CHARS} characters")
    elif kind is float:
        if not math.isfinite(value):
            raise SubsetError(f"term {index}: a value must be a finite number, got {value!r}")
    elif kind is not int and kind is not bool:
        what = "null (use 'is null')" if value is None else type(value).__name__
        raise SubsetError(f"term {index}: a value must be a string, number or boolean, got {what}")


def _with_key(columns: tuple[str, ...], key: str | None) -> tuple[str, ...]:
    if key is None or key in columns:
        return columns
    return (key, *columns)


def _number(value: Any) -> float | int | None:
    """``value`` as a number, or ``None`` if it is text (non-finite strings are numbers)."""
    if type(value) is str:
        return _NON_FINITE.get(value)
    return value  # type: ignore[no-any-return]


def _compare(current: Any, value: Any) -> int:
    """-1, 0 or 1: ``current`` against ``value`` in SQL's order (both not NULL)."""
    if type(current) is str and type(value) is str:
        return int((current > value) - (current < value))
    a, b = _number(current), _number(value)
    if a is None or b is None:  # text against a number: numbers sort first (SQLite)
        if a is None and b is None:
            return int((current > value) - (current < value))
        return 1 if a is None else -1
    if a != a or b != b:  # NaN: equal to itself, above every number (PostgreSQL)
        return (a != a) - (b != b)
    return (a > b) - (a < b)
