"""Reading the PostgreSQL change log: bounded pages of changes and paged snapshots."""

from __future__ import annotations

import decimal
import functools
import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Final

from rxstore.gateway.codec import non_finite_json
from rxstore.gateway.log.postgres.schema import Conn
from rxstore.gateway.log.sql import ident
from rxstore.gateway.log.subset_sql import column_kind, where_sql, window_sql
from rxstore.protocol.subsets import Subset

__all__ = [
    "KINDS_SQL",
    "PLAIN_TYPES",
    "READ_BOUNDED_SQL",
    "PostgresSnapshotReader",
    "begin_snapshot",
    "column_kinds",
    "rows_sql",
    "subset_rows_sql",
    "ts_at",
]

READ_BOUNDED_SQL: Final = """
SELECT seq, topic, op, record, old, ts, mutation FROM (
    SELECT seq, topic, op, record, old, ts, mutation,
           sum(coalesce(pg_column_size(record), 0) + coalesce(pg_column_size(old), 0))
               OVER (ORDER BY seq) AS total,
           row_number() OVER (ORDER BY seq) AS n
    FROM (SELECT * FROM rxstore_changes WHERE seq > $1 ORDER BY seq LIMIT $2) AS page
) AS sized
WHERE n = 1 OR total <= $3
ORDER BY seq
"""
"""A page of changes whose stored rows fit in $3 bytes (the first one always)."""


KINDS_SQL: Final = """
SELECT a.attname,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
  AND EXISTS (SELECT 1 FROM rxstore_watched WHERE topic = $2)
ORDER BY a.attnum
"""
"""A watched table's columns and their types (a domain's base type), in table order."""

PLAIN_TYPES: Final = frozenset(
    {"text", "character varying", "integer", "bigint", "smallint", "boolean", "double precision"}
)
"""Column types whose values orjson writes as ``to_jsonb`` does (a non-finite ``double precision``
as its string, see :func:`~rxstore.gateway.codec.non_finite_json`): a table of only these is read
as records and encoded by the gateway, not as the server's JSON text (about a third of its CPU)."""

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the gateway's extra installs it
    _orjson = None


async def column_kinds(conn: Conn, topic: str) -> dict[str, str]:
    """Return a watched table's columns -> kind, in table order.

    Raises:
        ValueError: ``topic`` is not a watched table.
    """
    rows = await conn.fetch(KINDS_SQL, ident(topic), topic)
    if not rows:
        raise ValueError(f"{topic!r} is not a watched table")
    return {r[0]: column_kind(r[1], "postgres") for r in rows}


async def begin_snapshot(conn: Conn, topics: Sequence[str]) -> tuple[int, dict[str, str], list[int]]:
    """Start reading ``topics`` in the connection's REPEATABLE READ transaction.

    Returns:
        The head seq, the topics' primary keys, and the ids of the changes to
        them that are committed (so in the rows) but not yet sequenced.

    Raises:
        ValueError: A topic's table does not exist.
    """
    seq = await conn.fetchval("SELECT seq FROM rxstore_head WHERE singleton")
    keys: dict[str, str] = {
        r[0]: r[1]
        for r in await conn.fetch(
            "SELECT topic, primary_key FROM rxstore_watched WHERE topic = ANY($1)", topics
        )
    }
    for topic in topics:
        if await conn.fetchval("SELECT to_regclass($1)::text", ident(topic)) is None:
            raise ValueError(f"cannot snapshot {topic!r}: no such table")
    pending = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM rxstore_changes WHERE seq IS NULL AND topic = ANY($1)", topics
        )
    ]
    return int(seq), keys, pending


async def ts_at(conn: Conn, seq: int) -> float | None:
    """The commit time of the change at ``seq`` (``None``: no change there); one read by its unique index."""
    ts = await conn.fetchval("SELECT ts FROM rxstore_changes WHERE seq = $1", seq)
    return None if ts is None else float(ts)


def rows_sql(topic: str, keys: Mapping[str, str]) -> str:
    """The query of a topic's rows as JSON objects, in primary-key order."""
    return subset_rows_sql(topic, keys, None)[0]


def subset_rows_sql(
    topic: str, keys: Mapping[str, str], subset: Subset | None, kinds: Mapping[str, str] | None = None
) -> tuple[str, list[Any]]:
    """The query of a topic's rows (those of ``subset``) as JSON objects, in primary-key order.

    A window's rows come in its own order (:func:`~rxstore.gateway.log.subset_sql.window_sql`;
    ``kinds``, the table's column kinds, say which columns sort as text).
    """
    key = keys.get(topic)
    if subset is not None and subset.windowed and key:
        condition, params, order = window_sql(subset, key, "postgres", kinds or {}, alias="t.")
        where = f" WHERE {condition}" if condition else ""
        return f"SELECT to_jsonb(t) FROM {ident(topic)} AS t{where} {order}", params
    condition, params = where_sql(subset, "postgres") if subset is not None else ("", [])
    where = f" WHERE {condition}" if condition else ""
    order = f" ORDER BY t.{ident(key)}" if key else ""
    return f"SELECT to_jsonb(t) FROM {ident(topic)} AS t{where}{order}", params


class PostgresSnapshotReader:
    """A :class:`~rxstore.gateway.log.contract.SnapshotReader` over one connection's open transaction."""

    def __init__(
        self, conn: Conn, seq: int, skip: frozenset[int], keys: Mapping[str, str], ts: float | None = None
    ) -> None:
        self.seq = seq
        self.skip = skip
        self.ts = ts
        self._conn = conn
        self._keys = keys
        self._reading: tuple[str, Subset | None, bool] | None = None
        self._cursor: Any = None
        self._held: Any = None
        self._floats: list[int] | None = None
        """The double precision columns' indexes while rows are read as records (:data:`PLAIN_TYPES`)."""

    async def fetch(
        self, topic: str, limit: int, subset: Subset | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Return the next rows of ``topic`` (of ``subset``; at most ``limit``) and whether more follow."""
        return await self._next(topic, limit, subset, text=False)

    async def fetch_text(
        self, topic: str, limit: int, subset: Subset | None = None
    ) -> tuple[list[str], bool]:
        """:meth:`fetch`, each row as the JSON text PostgreSQL writes (``row_to_json(row)``), not decoded.

        The same values as :meth:`fetch`'s rows (``to_jsonb``); a row's keys come in the
        table's column order and a ``json`` column as it was written (its spacing, a
        repeated key, whose last value is the one a decoder keeps, as jsonb does).
        ``row_to_json`` costs the server about half the CPU of ``to_jsonb``'s text
        (1.7-2.3 s against 3.2-3.4 s for 1,000,000 rows of 5 columns).
        """
        return await self._next(topic, limit, subset, text=True)

    async def _next(
        self, topic: str, limit: int, subset: Subset | None, *, text: bool
    ) -> tuple[list[Any], bool]:
        if subset is not None and subset.topic != topic:
            raise ValueError(f"a subset of {subset.topic!r} cannot be read from {topic!r}")
        if (topic, subset, text) != self._reading:
            kinds = await column_kinds(self._conn, topic) if subset is not None and subset.windowed else None
            sql, params = subset_rows_sql(topic, self._keys, subset, kinds)
            self._floats = None
            if text:
                types = [  # without a type modifier: character varying(20) is character varying
                    r[1].split("(", 1)[0] for r in await self._conn.fetch(KINDS_SQL, ident(topic), topic)
                ]
                if _orjson is not None and types and PLAIN_TYPES.issuperset(types):
                    sql = sql.replace("SELECT to_jsonb(t) ", "SELECT t.* ", 1)
                    self._floats = [i for i, kind in enumerate(types) if kind == "double precision"]
                elif not any("double precision" in kind or "real" in kind for kind in types):
                    # row_to_json writes a float as float8out does (1e+300), to_jsonb as the
                    # numeric it reads (1000...0): the same only without floats
                    sql = sql.replace("SELECT to_jsonb(t) ", "SELECT row_to_json(t)::text ", 1)
                else:
                    sql = sql.replace("SELECT to_jsonb(t) ", "SELECT to_jsonb(t)::text ", 1)
            self._cursor = await self._conn.cursor(sql, *params)
            self._reading, self._held = (topic, subset, text), None
        raw = [self._held] if self._held is not None else []
        records = await self._cursor.fetch(limit + 1 - len(raw))
        if self._floats is None:
            raw.extend(r[0] for r in records)
        else:
            raw.extend(_plain_texts(records, self._floats))
        self._held = raw.pop() if len(raw) > limit else None
        if self._held is None:  # done: asking again reads from the first row
            self._reading = None
        return raw, self._held is not None


def _plain_texts(records: Sequence[Any], floats: Sequence[int]) -> list[str]:
    """Records of :data:`PLAIN_TYPES` columns as the JSON texts ``to_jsonb`` would write.

    A ``double precision`` goes as ``to_jsonb`` writes it (:func:`jsonb_float`); whether a
    page holds one that is not written as it is (a whole number, an infinity, NaN) is found per
    float column by ``is_integer`` and by the column's sum (in C: an infinity or a NaN makes
    it one; an overflow only sends the column the slow way).
    """
    dumps = _orjson.dumps
    rows = [dict(record) for record in records]
    if floats and rows:
        names = list(rows[0])
        for index in floats:
            name = names[index]
            values = list(filter(_NOT_NONE, [row[name] for row in rows]))
            total = sum(values, 0.0)
            if total - total != 0.0 or any(map(float.is_integer, values)):
                for row in rows:
                    value = row[name]
                    if value is not None:
                        row[name] = jsonb_float(value)
    try:
        return [str(dumps(row), "utf-8") for row in rows]
    except _orjson.JSONEncodeError:  # a float written as an integer beyond 64 bits
        return [json.dumps(row, separators=(",", ":"), ensure_ascii=False) for row in rows]


def jsonb_float(value: float) -> float | int | str:
    """A ``double precision`` as ``to_jsonb`` writes it: its shortest digits read as a numeric.

    So a whole number is an integer (``1e300`` is 1 and 300 zeros, not the double's own
    digits), an infinity or NaN its string, any other value the float itself.

    Example:
        >>> jsonb_float(100.0), jsonb_float(1e16) == 10**16, jsonb_float(0.5), jsonb_float(float("-inf"))
        (100, True, 0.5, '-Infinity')
    """
    if value - value != 0.0:
        return non_finite_json(value)
    if not value.is_integer():
        return value
    return int(value) if abs(value) < 1e16 else int(decimal.Decimal(repr(value)))


_NOT_NONE: Final = functools.partial(operator.is_not, None)
