"""Live-query subsets in SQL: column kinds, the gateway's checks, and the where clause.

A :class:`~rxstore.protocol.subsets.Subset` is evaluated twice: by the database for a
snapshot (:func:`where_sql`, parameterized, using the table's indexes) and by
the gateway in Python for each live change (:meth:`Subset.matches
<rxstore.protocol.subsets.Subset.matches>`). The two agree (tests/gateway/log/test_subset_sql_agreement.py
proves it on SQLite and PostgreSQL) when every term is on a column whose kind
fits its value, which :func:`check_subset` makes sure of before a subscription
is accepted:

* text: SQLite types containing CHAR, CLOB or TEXT; PostgreSQL ``text``, ``varchar``;
* integer: SQLite types containing INT; PostgreSQL ``smallint``, ``integer``, ``bigint``;
* real: SQLite types containing REAL, FLOA or DOUB, and NUMERIC affinity (``NUMERIC``,
  ``DECIMAL``...); PostgreSQL ``double precision``, ``numeric``;
* boolean: SQLite types containing BOOL (stored as 0 and 1); PostgreSQL ``boolean``;
* other (no term may use it): SQLite BLOB or no type; every other PostgreSQL type.

A PostgreSQL domain has the kind of its base type.

How each rule of :mod:`rxstore.protocol.subsets` is kept in SQL:

* Values are always parameters (``?`` / ``$n``), never SQL text; identifiers
  are quoted with :func:`~rxstore.gateway.log.sql.ident`.
* Text compares by code point: SQLite ``COLLATE BINARY`` on every text
  comparison (a column declared ``COLLATE NOCASE`` is still compared exactly);
  PostgreSQL ``COLLATE "C"`` on ``< <= > >=`` (equality and ``in`` need none).
  PostgreSQL uses an index for a text range only if the index is declared
  ``COLLATE "C"`` (or the column is): ``CREATE INDEX ... (title COLLATE "C")``.
* PostgreSQL parameters carry the value's type (``$1::bigint``, ``$1::float8``,
  ``$1::text``, ``$1::boolean``; ``in`` is ``= ANY($1::bigint[])``), so a
  ``smallint`` column compared with a large integer is simply false, and the
  index of the column is still used (the cast is on the value's side).
* NULL fails every comparison, ``!=`` included (SQL does this by itself).
* Groups are parenthesized ``(... OR ...)``, ``(... AND ...)`` and ``NOT (...)``:
  the database applies its own three-valued logic (``NOT`` of NULL is NULL),
  which :class:`~rxstore.protocol.where.groups.Group` follows in Python.
* Claims are filled in before (:meth:`Subset.resolve
  <rxstore.protocol.subsets.Subset.resolve>`): a claim reaching :func:`check_subset`
  is refused.
* Non-finite floats: PostgreSQL's ``Infinity``/``NaN`` (NaN equal to itself,
  above every number) and SQLite's infinities (SQLite stores NaN as NULL)
  order as :func:`rxstore.protocol.subsets` orders the strings the log carries for them.

Not filterable, because the database compares them differently from the
JSON the gateway sees: PostgreSQL ``real`` (float4: ``0.1`` is stored as
0.100000001..., its JSON says 0.1; use ``double precision``), ``char(n)``
(trailing blanks are ignored by comparisons, kept in the JSON) and ``citext``
(case-insensitive). A ``numeric`` column compares exactly while its values
have at most 15 significant digits (the gateway reads JSON numbers as floats).

Example:
    >>> from rxstore.protocol.subsets import Subset, terms_of
    >>> s = Subset("messages", terms_of([("channel", "=", "general"), ("ts", ">=", 1700)]))
    >>> where_sql(s, "postgres")
    ('"channel" = $1::text AND "ts" >= $2::bigint', ['general', 1700])
    >>> where_sql(s, "sqlite")
    ('"channel" COLLATE BINARY = ? AND "ts" >= ?', ['general', 1700])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

from rxstore.gateway.log.sql import ident
from rxstore.protocol.subsets import (
    Claim,
    Condition,
    Group,
    Relation,
    Subset,
    SubsetError,
    Term,
    terms_in,
)

__all__ = [
    "KINDS",
    "RELATION_KINDS",
    "Dialect",
    "check_relation",
    "check_subset",
    "column_kind",
    "where_sql",
    "window_sql",
]

Dialect = Literal["sqlite", "postgres"]
"""The SQL dialect: ``?`` placeholders and SQLite's rules, or ``$n`` and PostgreSQL's."""

KINDS: Final = ("text", "integer", "real", "boolean", "other")
"""What :func:`column_kind` returns; terms are allowed on every kind but ``other``."""

RELATION_KINDS: Final = ("text", "integer")
"""The kinds of column a relation (subquery) term may match: its values are compared as keys."""

_INT64: Final = 2**63
_EXACT_FLOAT_INT: Final = 2**53
_SHOWN_COLUMNS: Final = 20

_PG_KINDS: Final = {
    "text": "text",
    "character varying": "text",
    "varchar": "text",
    "smallint": "integer",
    "integer": "integer",
    "int": "integer",
    "bigint": "integer",
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "smallserial": "integer",
    "serial": "integer",
    "bigserial": "integer",
    "serial2": "integer",
    "serial4": "integer",
    "serial8": "integer",
    "double precision": "real",
    "float8": "real",
    "numeric": "real",
    "decimal": "real",
    "boolean": "boolean",
    "bool": "boolean",
}
"""PostgreSQL type names (``format_type`` spellings and aliases) -> kind; the rest are "other"."""

_TYPMOD = re.compile(r"\([^)]*\)")

_PG_TYPES: Final = {bool: "boolean", int: "bigint", float: "float8", str: "text"}
"""The PostgreSQL type a parameter is cast to, by the value's Python type."""

_SQL_OPS: Final = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def column_kind(declared_type: str, dialect: Dialect) -> str:
    """The kind of a column (one of :data:`KINDS`) from its declared type.

    SQLite follows its type-affinity rules (https://www.sqlite.org/datatype3.html),
    with a type containing ``BOOL`` as "boolean" first and ``NUMERIC`` affinity
    (``NUMERIC``, ``DECIMAL``, ``DATE``...) as "real"; PostgreSQL takes the
    ``format_type`` name or an alias (``int4``, ``float8``), ignoring a type
    modifier; arrays are "other".

    Example:
        >>> column_kind("VARCHAR(20)", "sqlite"), column_kind("BOOLEAN", "sqlite"), column_kind("", "sqlite")
        ('text', 'boolean', 'other')
        >>> column_kind("character varying(20)", "postgres"), column_kind("real", "postgres")
        ('text', 'other')
    """
    if dialect == "sqlite":
        return _sqlite_kind(declared_type.upper())
    name = _TYPMOD.sub("", declared_type).strip().lower()
    if name.endswith("]"):
        return "other"
    return _PG_KINDS.get(" ".join(name.split()), "other")


def _sqlite_kind(declared: str) -> str:
    if "BOOL" in declared:
        return "boolean"
    if "INT" in declared:
        return "integer"
    if "CHAR" in declared or "CLOB" in declared or "TEXT" in declared:
        return "text"
    if "BLOB" in declared or not declared.strip():
        return "other"
    return "real"  # REAL affinity (REAL, FLOA, DOUB) and NUMERIC affinity: numbers compare by value


def check_subset(subset: Subset, kinds: Mapping[str, str], key: str | None = None) -> None:
    """Refuse a subset the database and the gateway might not evaluate alike.

    Every term is checked, in every group; terms are numbered in reading order.

    Args:
        subset: The subset a client asked for (its shape already checked by
            :func:`~rxstore.protocol.subsets.terms_of`).
        kinds: The table's columns -> kind (:meth:`ChangeLog.columns
            <rxstore.gateway.log.contract.ChangeLog.columns>`).
        key: The table's primary key: always sent, so ``columns`` may name it or not.

    Values must fit the column's kind: a string for text (no NUL character, no
    lone surrogate: no database can hold them); an integer (not a boolean) in
    the 64-bit range for integer; an integer within ±2**53 or a float for real;
    ``true``/``false`` for boolean (not 0 or 1: PostgreSQL has no such
    comparison; SQLite's stored 0 and 1 compare equal to them).

    Raises:
        SubsetError: ``invalid_subscription``; the message names the term or
            column and says what is allowed.

    Example:
        >>> from rxstore.protocol.subsets import terms_of
        >>> kinds = {"id": "integer", "channel": "text"}
        >>> check_subset(Subset("messages", terms_of({"channel": 7})), kinds, "id")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rxstore.protocol.subsets.SubsetError: term 1: column 'channel' is text: ...
    """
    for index, term in enumerate(terms_in(subset.where), start=1):
        if type(term.value) is Claim or (type(term.value) is tuple and Claim in map(type, term.value)):
            raise SubsetError(f"term {index}: a claim the gateway has not filled in (Subset.resolve)")
        kind = kinds.get(term.column)
        if kind is None:
            raise SubsetError(f"term {index}: {_unknown(term.column, subset.topic, kinds)}")
        if kind not in KINDS or kind == "other":
            raise SubsetError(
                f"term {index}: column {term.column!r} cannot be filtered on "
                "(only text, integer, real and boolean columns can): leave it out of the where clause"
            )
        if type(term.value) is Relation:
            if kind not in RELATION_KINDS:
                raise SubsetError(
                    f"term {index}: column {term.column!r} is {kind}: a subquery matches text or "
                    "integer columns only"
                )
            continue
        values = term.value if term.op == "in" else () if term.value is None else (term.value,)
        for value in values:
            _check_value(index, term.column, kind, value)
    for name in subset.columns or ():
        if name not in kinds and name != key:
            raise SubsetError(f"columns: {_unknown(name, subset.topic, kinds)}")
    _check_window(subset, kinds, key)


def check_relation(subset: Subset, kinds: Mapping[str, str], related: Mapping[str, str]) -> None:
    """Refuse a subset's relation (subquery) term that the gateway cannot follow exactly.

    Args:
        subset: The subset, its claims filled in and :func:`check_subset` passed.
        kinds: The subset's table's columns -> kind.
        related: The subquery's table's columns -> kind.

    The subquery's where clause is checked as any where clause (on its own table),
    its ``select`` column must be of the kind of the term's column (text or
    integer). A subset holds at most one relation term; it may stand inside an ``or``
    or a ``not`` (SQL's ``x IN (empty)`` is false even for a NULL ``x``, and the gateway
    evaluates it so: :meth:`Term.truth <rxstore.protocol.where.terms.Term.truth>`), and a
    window may hold it.

    Raises:
        SubsetError: ``invalid_subscription``, naming the term and the problem.
    """
    terms = [(n, t) for n, t in enumerate(terms_in(subset.where), start=1) if type(t.value) is Relation]
    if not terms:
        return
    index, term = terms[0]
    relation: Relation = term.value
    if len(terms) > 1:
        raise SubsetError(f"term {terms[1][0]}: a subset holds at most one subquery term")
    try:
        check_subset(Subset(relation.topic, relation.where), related)
    except SubsetError as exc:
        raise SubsetError(f"term {index}: in its subquery: {exc}") from None
    select = related.get(relation.select)
    if select is None:
        raise SubsetError(
            f"term {index}: the subquery's select: {_unknown(relation.select, relation.topic, related)}"
        )
    if select != kinds.get(term.column):
        raise SubsetError(
            f"term {index}: the subquery selects {relation.topic}.{relation.select} ({select}) "
            f"for {term.column!r} ({kinds.get(term.column)}): they must be of one kind"
        )


def _check_window(subset: Subset, kinds: Mapping[str, str], key: str | None) -> None:
    """Refuse a window whose ``order_by`` the database and the gateway might not sort alike."""
    for index, (column, _) in enumerate(subset.order_by, start=1):
        kind = kinds.get(column)
        if kind is None:
            raise SubsetError(f"order_by {index}: {_unknown(column, subset.topic, kinds)}")
        if kind not in KINDS or kind == "other":
            raise SubsetError(
                f"order_by {index}: column {column!r} cannot be sorted on "
                "(only text, integer, real and boolean columns can)"
            )
    if subset.after is None:
        return
    names = [column for column, _ in subset.order_by]
    names.append(key or "")
    for index, (column, value) in enumerate(zip(names, subset.after, strict=True), start=1):
        kind = kinds.get(column)
        problem = None if value is None or kind is None else _value_problem(kind, value)
        if problem is not None:
            raise SubsetError(f"after value {index}: column {column!r} is {kind}: {problem}")


def window_sql(
    subset: Subset,
    key: str,
    dialect: Dialect,
    kinds: Mapping[str, str],
    *,
    first_param: int = 1,
    alias: str = "",
) -> tuple[str, list[Any], str]:
    """A window's where clause (its ``after`` keyset included) and its ``ORDER BY`` clause.

    The order is the one of :mod:`rxstore.protocol.windows`, written out on both
    databases: ``NULLS LAST`` ascending, ``NULLS FIRST`` descending, text by code
    point (SQLite ``COLLATE BINARY``, PostgreSQL ``COLLATE "C"``), the primary key
    ascending last. ``after`` becomes ``(a > x) OR (a = x AND b > y) ...`` with
    NULL placed as the order places it; its values are parameters.

    Returns:
        ``(condition, parameters, order)``; ``order`` starts with ``ORDER BY``, its
        columns prefixed with ``alias`` (``"t."``).

    Example:
        >>> from rxstore.protocol.subsets import window_of
        >>> w = window_of(Subset("m"), [["ts", "desc"]], 2, [5, 9])
        >>> kinds = {"id": "integer", "ts": "integer"}
        >>> window_sql(w, "id", "sqlite", kinds)  # doctest: +NORMALIZE_WHITESPACE
        ('("ts" < ? OR ("ts" = ? AND ("id" > ? OR "id" IS NULL)))', [5, 5, 9],
         'ORDER BY "ts" COLLATE BINARY DESC NULLS FIRST, "id" COLLATE BINARY ASC')
    """
    where = subset.where
    if subset.after is not None:
        where = (*where, _after_condition(subset, key))
    condition, params = where_sql(attrs.evolve(subset, where=where), dialect, first_param=first_param)
    parts = []
    for column, direction in (*subset.order_by, (key, "asc")):
        name = alias + ident(column)
        if dialect == "sqlite":
            name += " COLLATE BINARY"
        elif kinds.get(column) == "text":
            name += ' COLLATE "C"'
        nulls = "NULLS LAST" if direction == "asc" else "NULLS FIRST"
        parts.append(f"{name} {direction.upper()}" + ("" if column == key else f" {nulls}"))
    return condition, params, "ORDER BY " + ", ".join(parts)


def _after_condition(subset: Subset, key: str) -> Condition:
    """``after`` as a where condition: the rows that sort after the keyset."""
    assert subset.after is not None
    columns = (*subset.order_by, (key, "asc"))
    branches: list[Condition] = []
    equal: list[Condition] = []
    for (column, direction), value in zip(columns, subset.after, strict=True):
        later = _later(column, direction, value)
        if later is not None:
            branches.append(Group("and", (*equal, later)) if equal else later)
        equal.append(Term(column, "is null") if value is None else Term(column, "=", value))
    if not branches:
        return Group("not", (Group("or", (Term(key, "is null"), Term(key, "is not null"))),))  # nothing
    return Group("or", tuple(branches))


def _later(column: str, direction: str, value: Any) -> Condition | None:
    """The rows whose ``column`` sorts after ``value`` (``None``: none does)."""
    if direction == "asc":  # NULL last
        if value is None:
            return None
        return Group("or", (Term(column, ">", value), Term(column, "is null")))
    if value is None:  # descending, NULL first: every value comes after it
        return Term(column, "is not null")
    return Term(column, "<", value)


def _unknown(column: str, topic: str, kinds: Mapping[str, str]) -> str:
    names = list(kinds)
    shown = ", ".join(names[:_SHOWN_COLUMNS]) + (", ..." if len(names) > _SHOWN_COLUMNS else "")
    return f"{topic!r} has no column {column!r} (its columns: {shown})"


def _check_value(index: int, column: str, kind: str, value: Any) -> None:
    problem = _value_problem(kind, value)
    if problem:
        raise SubsetError(f"term {index}: column {column!r} is {kind}: {problem}")


def _value_problem(kind: str, value: Any) -> str | None:
    got = f"got {value!r} ({type(value).__name__})"
    if kind == "text":
        if type(value) is not str:
            return f"its value must be a string, {got}"
        if "\x00" in value:
            return "a string value cannot contain the NUL character (U+0000)"
        if not _encodable(value):
            return "a string value must be valid Unicode (it has a lone surrogate)"
        return None
    if kind == "integer":
        if type(value) is not int:
            return f"its value must be an integer, {got}"
        if not -_INT64 <= value < _INT64:
            return f"{value} is outside the 64-bit integer range"
        return None
    if kind == "real":
        if type(value) is float:
            return None
        if type(value) is not int:
            return f"its value must be a number, {got}"
        if not -_EXACT_FLOAT_INT <= value <= _EXACT_FLOAT_INT:
            return f"an integer value must be within ±2**53 to compare exactly, got {value}: send a float"
        return None
    if type(value) is not bool:  # boolean
        return f"its value must be true or false, {got}"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def where_sql(subset: Subset, dialect: Dialect, *, first_param: int = 1) -> tuple[str, list[Any]]:
    """The subset's where clause as a parameterized SQL condition and its parameters.

    Groups become parenthesized ``AND`` / ``OR`` and ``NOT (...)``: SQL's own
    three-valued logic, which :class:`~rxstore.protocol.where.groups.Group` follows in Python.

    Args:
        subset: The subset; its values should have passed :func:`check_subset`.
        dialect: ``"sqlite"`` (``?`` placeholders) or ``"postgres"`` (``$n``).
        first_param: The number of the first PostgreSQL placeholder.

    Returns:
        ``(condition, parameters)``, ``("", [])`` when the subset has no terms.

    Raises:
        SubsetError: An ``in`` list mixes strings, numbers and booleans.

    Example:
        >>> from rxstore.protocol.subsets import terms_of
        >>> s = Subset("t", terms_of([{"or": [("a", "=", 1), {"not": ("b", "in", [2, 3])}]}]))
        >>> where_sql(s, "sqlite")
        ('("a" = ? OR NOT ("b" IN (?, ?)))', [1, 2, 3])
    """
    params: list[Any] = []
    parts = [_condition_sql(condition, dialect, params, first_param) for condition in subset.where]
    return " AND ".join(parts), params


def _condition_sql(condition: Condition, dialect: Dialect, params: list[Any], first_param: int) -> str:
    if type(condition) is Group:
        parts = [_condition_sql(item, dialect, params, first_param) for item in condition.items]
        if condition.kind == "not":
            return f"NOT ({parts[0]})"
        return "(" + f" {condition.kind.upper()} ".join(parts) + ")"
    term: Term = condition  # type: ignore[assignment]
    if type(term.value) is Relation:
        return _relation_sql(term, dialect, params, first_param)
    if dialect == "sqlite":
        return _sqlite_term(term, params)
    return _pg_term(term, params, first_param)


def _relation_sql(term: Term, dialect: Dialect, params: list[Any], first_param: int) -> str:
    """``column IN (SELECT select FROM table WHERE ... AND select IS NOT NULL)``, values as parameters."""
    relation: Relation = term.value
    select = ident(relation.select)
    parts = [_condition_sql(condition, dialect, params, first_param) for condition in relation.where]
    parts.append(f"{select} IS NOT NULL")
    column = ident(term.column) + (" COLLATE BINARY" if dialect == "sqlite" else "")
    return f"{column} IN (SELECT {select} FROM {ident(relation.topic)} WHERE {' AND '.join(parts)})"


def _null_test(term: Term) -> str | None:
    if term.op == "is null":
        return f"{ident(term.column)} IS NULL"
    if term.op == "is not null":
        return f"{ident(term.column)} IS NOT NULL"
    return None


def _sqlite_term(term: Term, params: list[Any]) -> str:
    null_test = _null_test(term)
    if null_test is not None:
        return null_test
    column = ident(term.column)
    if term.op == "in":
        values = term.value
        _in_type(values)
        params.extend(int(v) if type(v) is bool else v for v in values)
        collate = " COLLATE BINARY" if type(values[0]) is str else ""
        return f"{column}{collate} IN ({', '.join('?' * len(values))})"
    value = term.value
    params.append(int(value) if type(value) is bool else value)
    collate = " COLLATE BINARY" if type(value) is str else ""
    return f"{column}{collate} {_SQL_OPS[term.op]} ?"


def _pg_term(term: Term, params: list[Any], first_param: int) -> str:
    null_test = _null_test(term)
    if null_test is not None:
        return null_test
    column = ident(term.column)
    placeholder = f"${first_param + len(params)}"
    if term.op == "in":
        kind = _in_type(term.value)
        values = [float(v) for v in term.value] if kind is float else list(term.value)
        params.append(values)
        return f"{column} = ANY({placeholder}::{_PG_TYPES[kind]}[])"
    value = term.value
    params.append(value)
    op = _SQL_OPS[term.op]
    if type(value) is str and op not in ("=", "<>"):
        column += ' COLLATE "C"'
    return f"{column} {op} {placeholder}::{_PG_TYPES[type(value)]}"


def _in_type(values: tuple[Any, ...]) -> type:
    """The one Python type of an ``in`` list's values (ints with floats: float)."""
    types = {type(v) for v in values}
    if types <= {int, float} and float in types:
        return float
    if len(types) != 1:
        names = ", ".join(sorted(t.__name__ for t in types))
        raise SubsetError(f"an 'in' list must hold values of one kind, got {names}")
    return types.pop()
