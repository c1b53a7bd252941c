"""Live-query subsets: which rows of a table a subscription follows, and which columns.

A :class:`Subset` is a table, a where clause and an optional column subset.
The where clause is an AND of *conditions*: :class:`~rxstore.protocol.where.terms.Term` s
(``column op value``) and :class:`~rxstore.protocol.where.groups.Group` s (``or``,
``not``, a nested ``and``), bounded by :data:`MAX_TERMS` terms and
:data:`MAX_DEPTH` nested groups. A value may be a
:class:`~rxstore.protocol.where.claims.Claim` of the connection's token
(``{"claim": "sub"}``), which the gateway fills in (:meth:`Subset.resolve`).
The same value is built by the client (from the friendly forms of
:func:`terms_of`), sent on the wire (:meth:`Subset.to_wire` /
:func:`parse_subscription`), compiled to SQL by the gateway for snapshots, and
evaluated in Python by :meth:`Subset.matches` for live changes, with the
semantics of SQL (see :mod:`rxstore.protocol.where.terms` and, for the three-valued
logic of ``not`` and ``or`` over NULL, :mod:`rxstore.protocol.where.groups`):

* a term on a NULL (or missing) column is unknown, except ``is null``: it does
  not match, ``!=`` included, and neither does its ``not``;
* numbers compare by value (``1 == 1.0``; booleans are the integers 0 and 1,
  as SQLite stores them); strings by code point (SQLite's ``BINARY``,
  PostgreSQL's ``"C"`` collation);
* the strings ``"Infinity"``, ``"-Infinity"`` and ``"NaN"`` (how the gateway
  sends non-finite numbers) compare as those floats against a number, and NaN
  as PostgreSQL orders it: equal to itself, above every other number.

Example:
    >>> s = Subset("messages", terms_of({"channel": "general"}))
    >>> s.matches({"id": 1, "channel": "general"}), s.matches({"id": 2, "channel": None})
    (True, False)
    >>> s.to_wire("general")
    {'id': 'general', 'topic': 'messages', 'where': [['channel', '=', 'general']], 'columns': None}
    >>> mine = ("owner", "=", Claim("sub"))
    >>> either = Subset("tickets", terms_of([{"or": [("status", "=", "open"), mine]}]))
    >>> either.to_wire("t")["where"]
    [{'or': [['status', '=', 'open'], ['owner', '=', {'claim': 'sub'}]]}]
    >>> either.resolve({"sub": "ann"}).matches({"status": "done", "owner": "ann"})
    True
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import count
from typing import Any, Final

import attrs

from rxstore.protocol.errors import RxStoreError
from rxstore.protocol.where.claims import CLAIM_KEY, Claim
from rxstore.protocol.where.groups import GROUP_KINDS, Condition, Group
from rxstore.protocol.where.relations import MAX_RELATION_VALUES, RELATION_KEYS, Relation
from rxstore.protocol.where.terms import COMPARISONS, NULL_TESTS, OPS, Scalar, Term
from rxstore.protocol.windows import (
    MAX_LIMIT,
    Order,
    WindowError,
    after_of,
    keyset_key,
    limit_of,
    order_of,
    sort_key,
)

__all__ = [
    "COMPARISONS",
    "GROUP_KINDS",
    "MAX_COLUMNS",
    "MAX_DEPTH",
    "MAX_ID_CHARS",
    "MAX_IN_VALUES",
    "MAX_LIMIT",
    "MAX_RELATION_VALUES",
    "MAX_TERMS",
    "MAX_TEXT_CHARS",
    "NULL_TESTS",
    "OPS",
    "Claim",
    "Condition",
    "Group",
    "Order",
    "Relation",
    "Scalar",
    "Subset",
    "SubsetError",
    "Term",
    "WhereItem",
    "WhereSpec",
    "columns_of",
    "parse_subscription",
    "terms_in",
    "terms_of",
    "window_of",
]

MAX_TERMS: Final = 16
"""Most terms in one where clause, counted in all its groups."""
MAX_DEPTH: Final = 4
"""Most groups (``or``, ``not``, a nested ``and``) inside one another in a where clause."""
MAX_IN_VALUES: Final = 1000
"""Most values of one ``in`` term."""
MAX_TEXT_CHARS: Final = 1024
"""Longest string value (and column name, and claim name) in a term."""
MAX_COLUMNS: Final = 256
"""Most columns in a column subset."""
MAX_ID_CHARS: Final = 64
"""Longest subscription id."""

_GROUP_FORMS: Final = '{"or": [...]}, {"and": [...]}, a list (and) or {"not": condition}'


class SubsetError(RxStoreError, ValueError):
    """A where clause, column subset or subscription is not valid.

    Attributes:
        code: ``invalid_subscription`` (its shape, an operator, a column, a value's
            type, a claim the token lacks), ``forbidden_topic`` or
            ``too_many_subscriptions``: the code a gateway's acknowledgement carries.

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
class Subset:
    """The rows of ``topic`` that satisfy every condition, with ``columns`` of them (``None``: all).

    Attributes:
        topic: The table.
        where: The conditions (terms and groups), all of which a row must satisfy (none: every row).
        columns: The columns to send, or ``None`` for all; the gateway adds the primary key.

    Example:
        >>> mine = Subset("posts", terms_of([("author", "=", "ann")]), ("title",))
        >>> mine.matches({"id": 1, "author": "ann"}), mine.project({"id": 1, "title": "t"}, "id")
        (True, {'id': 1, 'title': 't'})
    """

    topic: str
    where: tuple[Condition, ...] = ()
    columns: tuple[str, ...] | None = None
    order_by: Order = ()
    limit: int | None = None
    after: tuple[Any, ...] | None = None

    @property
    def whole(self) -> bool:
        """Every row and every column: a whole-table subscription."""
        return not self.where and self.columns is None and not self.windowed

    @property
    def windowed(self) -> bool:
        """Whether it is a window: ordered, and kept to its first ``limit`` rows (or past ``after``)."""
        return bool(self.order_by) or self.limit is not None or self.after is not None

    @property
    def relation(self) -> Term | None:
        """Its term whose values are a subquery (a :class:`Relation`), or ``None``."""
        for term in terms_in(self.where):
            if type(term.value) is Relation:
                return term
        return None

    def bound(self, values: frozenset[Any]) -> Subset:
        """This subset with its relation term's values ``values`` (checked with one lookup per row).

        A subset without a relation is returned as it is.

        Example:
            >>> members = {"select": "channel", "from": "members"}
            >>> mine = Subset("messages", terms_of([("channel", "in", members)]))
            >>> mine.bound(frozenset({"a"})).matches({"channel": "a"})
            True
        """
        term = self.relation
        if term is None:
            return self
        bound = Term(term.column, "in", values)
        return attrs.evolve(self, where=tuple(_replaced(c, term, bound) for c in self.where))

    def matches(self, row: Mapping[str, Any] | None) -> bool:
        """Whether ``row`` (``None``: no row) is in the subset: the where clause is true (not unknown).

        A window's ``after`` and ``limit`` are not checked here: see :meth:`place`.
        """
        if row is None:
            return False
        # a loop, not all() of a generator: faster, and this runs per change and subscription
        for condition in self.where:  # noqa: SIM110
            if not condition.matches(row):
                return False
        return True

    def place(self, row: Mapping[str, Any], key: str) -> tuple[Any, ...] | None:
        """``row``'s sort key in the window's order (primary key ``key`` last); ``None``: before ``after``."""
        place = sort_key(row, self.order_by, key)
        if self.after is not None and not place > keyset_key(self.after, self.order_by):
            return None
        return place

    def project(self, row: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
        """``row`` with only the subset's columns, its order columns and ``key`` (the primary key)."""
        columns = self.columns
        if columns is None:
            return dict(row)
        if self.order_by:
            columns = (*columns, *(c for c, _ in self.order_by if c not in columns))
        return {name: row.get(name) for name in _with_key(columns, key)}

    def resolve(self, claims: Mapping[str, Any]) -> Subset:
        """The subset with each :class:`~rxstore.protocol.where.claims.Claim` replaced by the claim's value.

        The gateway calls it with the claims of the connection's token. A claim
        used as a comparison's value (or among an ``in`` term's values) must be a
        string, number or boolean; one used as a whole ``in`` list, a list of 1 to
        :data:`MAX_IN_VALUES` of them.

        Raises:
            SubsetError: The token lacks a claim, or its value does not fit (the
                message names the term and the claim).
        """
        numbers = count(1)
        where = tuple(_resolved(condition, claims, numbers) for condition in self.where)
        return self if where == self.where else attrs.evolve(self, where=where)

    def to_wire(self, id: str, since: int | None = None) -> dict[str, Any]:
        """The subscription object of the wire protocol (docs/protocol.md)."""
        wire: dict[str, Any] = {
            "id": id,
            "topic": self.topic,
            "where": [condition.to_wire() for condition in self.where],
            "columns": None if self.columns is None else list(self.columns),
        }
        if self.order_by:
            wire["order_by"] = [[column, direction] for column, direction in self.order_by]
        if self.limit is not None:
            wire["limit"] = self.limit
        if self.after is not None:
            wire["after"] = list(self.after)
        if since is not None:
            wire["since"] = since
        return wire


WhereItem = Condition | Sequence[Any] | Mapping[str, Any]
"""One item of a where clause's list: a term (``("col", op, value)`` or a :class:`Term`), a
group (``{"or": [...]}``, ``{"not": item}``, ``{"and": [...]}``, a list of items, or a
:class:`Group`)."""

WhereSpec = Mapping[str, Any] | Iterable[WhereItem] | None
"""What a user writes for a where clause: ``{"col": value}``, or a list of terms and groups."""


def terms_of(spec: WhereSpec) -> tuple[Condition, ...]:
    """Read a where clause from its friendly forms; check operators, arity, value types and bounds.

    ``{"channel": "general", "kind": ["a", "b"]}`` is ``channel = 'general' AND kind
    IN ('a', 'b')`` (a ``None`` value is ``is null``); a list gives the AND of its
    items: ``(column, op, value)`` or ``(column, "is null")`` terms for any operator
    of :data:`OPS`, and groups: ``{"or": [item, ...]}``, ``{"not": item}``, and a
    nested list (or ``{"and": [...]}``) for an AND inside them. A value may be a
    claim: ``{"claim": "sub"}`` or :class:`~rxstore.protocol.where.claims.Claim`.

    Example:
        >>> terms_of([{"or": [("status", "=", "open"), {"not": ("owner", "is null")}]}])
        (Group(kind='or', items=(Term(column='status', op='=', value='open'), Group(kind='not', \
items=(Term(column='owner', op='is null', value=None),)))),)

    Raises:
        SubsetError: An unknown operator or group, a bad value or claim, a malformed group,
            more than :data:`MAX_TERMS` terms or :data:`MAX_DEPTH` nested groups.
    """
    if spec is None:
        return ()
    raw: list[Any]
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
    return _conditions(raw, 0, (count(1), count(1)))


def terms_in(where: Iterable[Condition]) -> Iterator[Term]:
    """The terms of a where clause, in all its groups, in reading order ("term 1", "term 2"...)."""
    for condition in where:
        if type(condition) is Group:
            yield from terms_in(condition.items)
        else:
            yield condition  # type: ignore[misc]


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
    order_by = data.get("order_by")
    if order_by is not None and type(order_by) is not list:
        raise SubsetError(f"subscription {sub_id!r}: 'order_by' must be a list of [column, 'asc' | 'desc']")
    try:
        subset = window_of(
            Subset(topic, terms_of(where or ()), columns_of(columns)),
            order_by,
            data.get("limit"),
            data.get("after"),
        )
    except SubsetError as exc:
        raise SubsetError(f"subscription {sub_id!r}: {exc}", code=exc.code) from None
    return sub_id, subset, since


def window_of(subset: Subset, order_by: Any, limit: Any, after: Any = None) -> Subset:
    """``subset`` kept to a window: ordered by ``order_by``, its first ``limit`` rows past ``after``.

    Raises:
        SubsetError: A bad ``order_by``, a ``limit`` that is not 1 to :data:`MAX_LIMIT`, a bad ``after``.
    """
    try:
        order = order_of(order_by)
        return attrs.evolve(subset, order_by=order, limit=limit_of(limit), after=after_of(after, order))
    except WindowError as exc:
        raise SubsetError(str(exc)) from None


# -- reading a where clause ------------------------------------------------------


_Numbers = tuple[Iterator[int], Iterator[int]]
"""The numbers of the next term and the next group, in reading order (for messages)."""


def _conditions(items: Sequence[Any], depth: int, numbers: _Numbers) -> tuple[Condition, ...]:
    return tuple(_condition(item, depth, numbers) for item in items)


def _condition(item: Any, depth: int, numbers: _Numbers) -> Condition:
    if type(item) is Term or type(item) is Group:
        item = item.to_wire()  # checked as if it came from the wire
    if isinstance(item, Mapping):
        return _group(item, depth, numbers)
    if _is_list(item) and item and (_is_list(item[0]) or isinstance(item[0], Mapping | Term | Group)):
        return _group({"and": item}, depth, numbers)
    index = next(numbers[0])
    if index > MAX_TERMS:
        raise SubsetError(f"a where clause has at most {MAX_TERMS} terms, counted in all its groups")
    return _term(index, item)


def _group(item: Mapping[Any, Any], depth: int, numbers: _Numbers) -> Group:
    number = next(numbers[1])
    if len(item) != 1:
        raise SubsetError(
            f"group {number}: a group is {_GROUP_FORMS}, with one key; got keys {_short(list(item))}"
        )
    ((kind, body),) = item.items()
    if kind not in GROUP_KINDS:
        raise SubsetError(f"group {number}: unknown group {_short(kind)} (one of {', '.join(GROUP_KINDS)})")
    if depth >= MAX_DEPTH:
        raise SubsetError(f"group {number}: groups nest at most {MAX_DEPTH} deep (MAX_DEPTH)")
    if kind == "not":
        if body is None or (_is_list(body) and not body):
            raise SubsetError(f"group {number}: 'not' takes one condition, got {_short(body)}")
        return Group("not", (_condition(body, depth + 1, numbers),))
    if not _is_list(body) or not body:
        raise SubsetError(
            f"group {number}: {kind!r} takes a list of 1 or more conditions, got {_short(body)}"
        )
    if len(body) > MAX_TERMS:
        raise SubsetError(f"a where clause has at most {MAX_TERMS} terms, counted in all its groups")
    return Group(kind, _conditions(body, depth + 1, numbers))


def _term(index: int, item: Any) -> Term:
    if not _is_list(item) or not 2 <= len(item) <= 3:
        raise SubsetError(f"term {index}: expected (column, op, value) or (column, 'is null'), got {item!r}")
    column, op = item[0], item[1]
    _check_name(column, f"term {index}")
    if type(op) is not str or op not in OPS:
        raise SubsetError(f"term {index}: unknown operator {_short(op)} (one of {', '.join(OPS)})")
    if op in NULL_TESTS:
        if len(item) == 3 and item[2] is not None:
            raise SubsetError(f"term {index}: {op!r} takes no value")
        return Term(column, op)
    if len(item) != 3:
        raise SubsetError(f"term {index}: {op!r} needs a value")
    value = item[2]
    if op != "in":
        return Term(column, op, _value(index, value))
    if type(value) is Relation or (isinstance(value, Mapping) and "select" in value):
        return Term(column, op, _relation(index, value))
    if type(value) is Claim or isinstance(value, Mapping):
        return Term(column, op, _claim(index, value))  # a claim whose value is the list
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise SubsetError(f"term {index}: 'in' needs a list of values, got {value!r}")
    values = tuple(value)
    if not 0 < len(values) <= MAX_IN_VALUES:
        raise SubsetError(f"term {index}: 'in' takes 1 to {MAX_IN_VALUES} values, got {len(values)}")
    return Term(column, op, tuple(_value(index, element) for element in values))


def _value(index: int, value: Any) -> Any:
    if type(value) is Claim or isinstance(value, Mapping):
        return _claim(index, value)
    _check_scalar(index, value)
    return value


def _claim(index: int, value: Any) -> Claim:
    if type(value) is Claim:
        value = value.to_wire()
    if CLAIM_KEY not in value:
        raise SubsetError(
            f'term {index}: a value must be a string, number, boolean or {{"claim": "<name>"}}, '
            f"got {_short(value)}"
        )
    name = value[CLAIM_KEY]
    if len(value) != 1 or type(name) is not str or not 0 < len(name) <= MAX_TEXT_CHARS:
        raise SubsetError(
            f'term {index}: a claim is {{"claim": "<name>"}}, a name string of 1-{MAX_TEXT_CHARS} '
            f"characters, got {_short(value)}"
        )
    return Claim(name)


def _relation(index: int, value: Any) -> Relation:
    """A subquery ``{"select": column, "from": table, "where": [...]}``, one level deep."""
    if type(value) is Relation:
        value = value.to_wire()
    if not set(value) <= RELATION_KEYS:
        raise SubsetError(
            f'term {index}: a subquery is {{"select": column, "from": table, "where": [...]}}, '
            f"got keys {_short(sorted(map(str, value)))}"
        )
    select, topic, where = value.get("select"), value.get("from"), value.get("where")
    _check_name(select, f"term {index}: the subquery's 'select'")
    if type(topic) is not str or not 0 < len(topic) <= MAX_TEXT_CHARS:
        raise SubsetError(f"term {index}: the subquery's 'from' must be a table name string")
    if where is not None and not _is_list(where):
        raise SubsetError(f"term {index}: the subquery's 'where' must be a list of terms and groups")
    try:
        conditions = terms_of(where or ())
    except SubsetError as exc:
        raise SubsetError(f"term {index}: in its subquery: {exc}", code=exc.code) from None
    for number, term in enumerate(terms_in(conditions), start=1):
        if type(term.value) is Relation:
            raise SubsetError(
                f"term {index}: in its subquery: term {number}: a subquery cannot hold another "
                "(relations are one level deep)"
            )
    return Relation(select, topic, conditions)


def _is_list(item: Any) -> bool:
    return isinstance(item, Sequence) and not isinstance(item, str | bytes)


def _short(value: Any) -> str:
    """``repr(value)``, cut short: a message never carries a whole hostile payload."""
    return reprlib.repr(value)


def _check_name(name: Any, where: str) -> None:
    if type(name) is not str or not 0 < len(name) <= MAX_TEXT_CHARS:
        raise SubsetError(f"{where}: a column name must be a string of 1-{MAX_TEXT_CHARS} characters")


def _check_scalar(index: int, value: Any, what: str = "a value") -> None:
    kind = type(value)
    if kind is str:
        if len(value) > MAX_TEXT_CHARS:
            raise SubsetError(f"term {index}: a string value has at most {MAX_TEXT_CHARS} characters")
    elif kind is float:
        if not math.isfinite(value):
            raise SubsetError(f"term {index}: {what} must be a finite number, got {value!r}")
    elif kind is not int and kind is not bool:
        got = (
            type(value).__name__
            if value is not None
            else "null (use 'is null')"
            if what == "a value"
            else "null"
        )
        raise SubsetError(f"term {index}: {what} must be a string, number or boolean, got {got}")


def _with_key(columns: tuple[str, ...], key: str | None) -> tuple[str, ...]:
    if key is None or key in columns:
        return columns
    return (key, *columns)


# -- filling in claims -------------------------------------------------------------


def _replaced(condition: Condition, term: Term, bound: Term) -> Condition:
    """``condition`` with ``term`` (found by identity, in groups too) replaced by ``bound``."""
    if condition is term:
        return bound
    if type(condition) is Group:
        return Group(condition.kind, tuple(_replaced(item, term, bound) for item in condition.items))
    return condition


def _resolved(condition: Condition, claims: Mapping[str, Any], numbers: Iterator[int]) -> Condition:
    if type(condition) is Group:
        items = tuple(_resolved(item, claims, numbers) for item in condition.items)
        return condition if items == condition.items else Group(condition.kind, items)
    term: Term = condition  # type: ignore[assignment]
    index = next(numbers)
    value = term.value
    if type(value) is Relation:
        try:
            where = Subset(value.topic, value.where).resolve(claims).where
        except SubsetError as exc:
            raise SubsetError(f"term {index}: in its subquery: {exc}", code=exc.code) from None
        return term if where == value.where else Term(term.column, term.op, attrs.evolve(value, where=where))
    if type(value) is Claim:
        if term.op == "in":
            return Term(term.column, term.op, _claim_list(index, value, claims))
        return Term(term.column, term.op, _claim_scalar(index, value, claims, term.op))
    if type(value) is tuple and any(type(element) is Claim for element in value):
        filled = (_claim_scalar(index, e, claims, "in") if type(e) is Claim else e for e in value)
        return Term(term.column, term.op, tuple(filled))
    return term


def _claim_value(index: int, claim: Claim, claims: Mapping[str, Any]) -> Any:
    if claim.name not in claims:
        raise SubsetError(f"term {index}: the token has no claim {claim.name!r}")
    return claims[claim.name]


def _claim_scalar(index: int, claim: Claim, claims: Mapping[str, Any], op: str) -> Any:
    value = _claim_value(index, claim, claims)
    if _is_list(value):
        raise SubsetError(f"term {index}: claim {claim.name!r} is a list: {op!r} takes one value of it")
    _check_scalar(index, value, f"claim {claim.name!r}")
    return value


def _claim_list(index: int, claim: Claim, claims: Mapping[str, Any]) -> tuple[Any, ...]:
    value = _claim_value(index, claim, claims)
    values = tuple(value) if _is_list(value) else (value,)  # a claim of one value: 'in' that one
    if not 0 < len(values) <= MAX_IN_VALUES:
        raise SubsetError(
            f"term {index}: claim {claim.name!r} must hold 1 to {MAX_IN_VALUES} values for 'in', "
            f"got {len(values)}"
        )
    for element in values:
        _check_scalar(index, element, f"each value of claim {claim.name!r}")
    return values
