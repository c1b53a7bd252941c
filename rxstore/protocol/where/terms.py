"""One ``column op value`` condition of a where clause, evaluated with SQL's semantics.

A :class:`Term` is the leaf of a where clause (groups of terms are
:class:`~rxstore.protocol.where.groups.Group` s). It is evaluated as the database
evaluates it:

* a term on a NULL (or missing) column is *unknown* (SQL's NULL), except
  ``is null`` / ``is not null``; ``!=`` too. :meth:`Term.truth` says so
  (``None``), :meth:`Term.matches` counts it as not matching, as a WHERE does;
* numbers compare by value (``1 == 1.0``; booleans are the integers 0 and 1,
  as SQLite stores them); strings by code point (SQLite's ``BINARY``,
  PostgreSQL's ``"C"`` collation);
* values of different kinds order as SQLite orders storage classes
  (numbers < text), which only SQLite's dynamic typing can produce;
* the strings ``"Infinity"``, ``"-Infinity"`` and ``"NaN"`` (how the gateway
  sends non-finite numbers) compare as those floats against a number, and NaN
  as PostgreSQL orders it: equal to itself, above every other number.

Example:
    >>> Term("likes", ">=", 3).truth({"likes": 5}), Term("likes", ">=", 3).truth({"likes": None})
    (True, None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from rxstore.protocol.where.claims import Claim

__all__ = ["COMPARISONS", "NON_FINITE", "NULL_TESTS", "OPS", "Scalar", "Term"]

COMPARISONS: Final = ("=", "!=", "<", "<=", ">", ">=")
"""Operators that take one value."""
NULL_TESTS: Final = ("is null", "is not null")
"""Operators that take no value."""
OPS: Final = (*COMPARISONS, "in", *NULL_TESTS)
"""Every operator a term may use."""

Scalar = str | int | float | bool
"""A term's value: a JSON scalar (``None`` is not a value: use ``is null``)."""

NON_FINITE: Final = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
"""The strings that compare as these floats against a number (how the gateway sends them)."""


@attrs.frozen(cache_hash=True)
class Term:
    """One ``column op value`` condition.

    Attributes:
        column: The column's name.
        op: One of :data:`OPS`.
        value: A scalar for a comparison, a tuple of scalars for ``in``, ``None`` for a null
            test; a :class:`~rxstore.protocol.where.claims.Claim` (or one among the ``in``
            values) until the gateway fills it in; for ``in``, a
            :class:`~rxstore.protocol.where.relations.Relation` (a subquery), whose values
            the gateway holds as a frozenset.

    Example:
        >>> Term("likes", ">=", 3).matches({"likes": 5}), Term("likes", ">=", 3).matches({"likes": None})
        (True, False)
    """

    column: str
    op: str
    value: Any = None

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` satisfies this term: :meth:`truth` is true (unknown is not)."""
        current = row.get(self.column)
        op = self.op
        if op == "is null":
            return current is None
        if op == "is not null":
            return current is not None
        if current is None:
            return False
        if op == "in":
            values = self.value
            if type(values) is frozenset:  # a relation's values, held by the gateway (text or integer)
                return current in values
            return any(_compare(current, value) == 0 for value in values)
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

    def truth(self, row: Mapping[str, Any]) -> bool | None:
        """SQL's value of this term on ``row``: ``None`` (unknown) when it compares a NULL column.

        A relation's values held empty are SQL's ``x IN (an empty subquery)``: false, a NULL
        ``x`` included (which a ``not`` turns true).
        """
        if row.get(self.column) is None and self.op not in NULL_TESTS:
            if type(self.value) is frozenset and not self.value:
                return False
            return None
        return self.matches(row)

    def to_wire(self) -> list[Any]:
        """``[column, op]`` or ``[column, op, value]`` (a list for ``in``; a claim as ``{"claim": name}``)."""
        if self.op in NULL_TESTS:
            return [self.column, self.op]
        if self.op == "in" and type(self.value) is tuple:
            return [self.column, self.op, [_wire_value(value) for value in self.value]]
        return [self.column, self.op, _wire_value(self.value)]


def _wire_value(value: Any) -> Any:
    """A value as sent: a claim or a relation (subquery) as its object, a scalar as it is."""
    return value.to_wire() if type(value) is Claim or hasattr(value, "to_wire") else value


def _number(value: Any) -> float | int | None:
    """``value`` as a number, or ``None`` if it is text (non-finite strings are numbers)."""
    if type(value) is str:
        return NON_FINITE.get(value)
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
