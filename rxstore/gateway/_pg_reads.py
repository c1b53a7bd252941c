"""Reading the PostgreSQL change log: bounded pages of changes and paged snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from rxstore.gateway._pg_schema import Conn
from rxstore.gateway.sql import ident

__all__ = ["READ_BOUNDED_SQL", "PostgresSnapshotReader", "begin_snapshot", "rows_sql"]

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


def rows_sql(topic: str, keys: Mapping[str, str]) -> str:
    """The query of a topic's rows as JSON objects, in primary-key order."""
    key = keys.get(topic)
    order = f" ORDER BY t.{ident(key)}" if key else ""
    return f"SELECT to_jsonb(t) FROM {ident(topic)} AS t{order}"


class PostgresSnapshotReader:
    """A :class:`~rxstore.gateway.changelog.SnapshotReader` over one connection's open transaction."""

    def __init__(self, conn: Conn, seq: int, skip: frozenset[int], keys: Mapping[str, str]) -> None:
        self.seq = seq
        self.skip = skip
        self._conn = conn
        self._keys = keys
        self._topic: str | None = None
        self._cursor: Any = None
        self._held: Any = None

    async def fetch(self, topic: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Return the next rows of ``topic`` (at most ``limit``) and whether more follow."""
        if topic != self._topic:
            self._cursor = await self._conn.cursor(rows_sql(topic, self._keys))
            self._topic, self._held = topic, None
        raw = [self._held] if self._held is not None else []
        raw.extend(r[0] for r in await self._cursor.fetch(limit + 1 - len(raw)))
        self._held = raw.pop() if len(raw) > limit else None
        return raw, self._held is not None
