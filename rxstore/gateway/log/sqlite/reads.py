"""Reading the SQLite change log: pages of changes, and snapshots of watched tables.

A snapshot is a WAL read transaction: it sees the tables and the head seq at
one instant while writers go on. :class:`SQLiteSnapshotReader` holds such a
transaction on a read-only connection of its own and pages through it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rxstore.gateway.codec import load_json, non_finite_json
from rxstore.gateway.log.contract import LogSnapshot
from rxstore.gateway.log.sql import OPS, ident
from rxstore.gateway.log.sqlite.schema import columns_of, head_sync, ts_sync
from rxstore.gateway.log.subset_sql import column_kind, where_sql, window_sql
from rxstore.protocol.errors import NotConnected
from rxstore.protocol.events import Change
from rxstore.protocol.subsets import Subset

__all__ = [
    "SQLiteSnapshotReader",
    "jsonable",
    "kinds_sync",
    "read_sync",
    "rows_sql",
    "snapshot_sync",
    "within_bytes",
]


_INF, _MINUS_INF = float("inf"), float("-inf")


def jsonable(value: object) -> object:
    """A value read from SQLite as the triggers write it: BLOBs as upper-case hex, inf as "Infinity"."""
    if isinstance(value, bytes):
        return value.hex().upper()
    if type(value) is float and value - value != 0.0:  # inf: the log's 9e999 reads as "Infinity"
        return non_finite_json(value)
    return value


def _jsonable_rows(names: list[str], raw: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows read from SQLite as dicts of :func:`jsonable` values.

    Most rows hold no BLOB and no infinity: they are zipped as they are, and only
    the others go through :func:`jsonable` value by value (found with C-level
    ``in`` tests, not a Python call per value: ~25% of a snapshot's read CPU).
    """
    rows = [dict(zip(names, row, strict=True)) for row in raw]
    for index, row in enumerate(raw):
        if _INF in row or _MINUS_INF in row or bytes in map(type, row):
            rows[index] = {n: jsonable(v) for n, v in zip(names, row, strict=True)}
    return rows


def read_sync(conn: sqlite3.Connection, after: int, limit: int, max_bytes: int | None = None) -> list[Change]:
    """Return the changes with ``seq > after`` (at most ``limit``, and ``max_bytes`` of row JSON)."""
    rows = conn.execute(
        "SELECT seq, topic, op, record, old, ts, mutation FROM rxstore_changes "
        "WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    if max_bytes is not None:
        rows = within_bytes(rows, max_bytes)
    return [
        Change(
            seq,
            topic,
            OPS[op],
            load_json(record, big_ints=False) if record is not None else None,
            load_json(old, big_ints=False) if old is not None else None,
            float(ts),
            mutation,
        )
        for seq, topic, op, record, old, ts, mutation in rows
    ]


def within_bytes(rows: list[Any], max_bytes: int) -> list[Any]:
    """The first ``rows`` (one at least) whose record and old JSON texts fit in ``max_bytes``."""
    total = 0
    for index, row in enumerate(rows):
        total += len(row[3] or "") + len(row[4] or "")
        if total > max_bytes and index:
            return rows[:index]
    return rows


def kinds_sync(conn: sqlite3.Connection, topic: str) -> dict[str, str]:
    """Return a watched table's columns -> kind, in table order.

    Raises:
        ValueError: ``topic`` is not a watched table.
    """
    watched = conn.execute("SELECT 1 FROM rxstore_watched WHERE topic = ?", (topic,)).fetchone()
    rows = conn.execute(
        "SELECT name, type FROM pragma_table_xinfo(?) WHERE hidden != 1 ORDER BY cid", (topic,)
    ).fetchall()
    if watched is None or not rows:
        raise ValueError(f"{topic!r} is not a watched table")
    return {name: column_kind(declared or "", "sqlite") for name, declared in rows}


def rows_sql(topic: str, key: str | None, subset: Subset | None = None) -> tuple[str, list[Any]]:
    """The query of a topic's rows (those of ``subset``), in ``key`` order (``None``: no order).

    A window's rows come in its own order (:func:`~rxstore.gateway.log.subset_sql.window_sql`).
    """
    if subset is not None and subset.windowed and key is not None:
        condition, params, window_order = window_sql(subset, key, "sqlite", {})
        where = f" WHERE {condition}" if condition else ""
        return f"SELECT * FROM {ident(topic)}{where} {window_order}", params
    condition, params = where_sql(subset, "sqlite") if subset is not None else ("", [])
    where = f" WHERE {condition}" if condition else ""
    order = f" ORDER BY {ident(key)}" if key is not None else ""
    return f"SELECT * FROM {ident(topic)}{where}{order}", params


def snapshot_sync(conn: sqlite3.Connection, topics: Sequence[str]) -> LogSnapshot:
    """Return the rows of ``topics`` and the head seq, read in one transaction."""
    conn.execute("BEGIN")  # a WAL read transaction: one consistent view
    try:
        seq = head_sync(conn)
        keys = dict(conn.execute("SELECT topic, primary_key FROM rxstore_watched").fetchall())
        tables: dict[str, list[dict[str, Any]]] = {}
        for topic in topics:
            columns = columns_of(conn, topic)
            if not columns:
                raise ValueError(f"cannot snapshot {topic!r}: no such table")
            key = keys.get(topic)
            order = f" ORDER BY {ident(key)}" if key in columns else ""
            cursor = conn.execute(f"SELECT * FROM {ident(topic)}{order}")
            names = [d[0] for d in cursor.description]
            tables[topic] = [{n: jsonable(v) for n, v in zip(names, row, strict=True)} for row in cursor]
    finally:
        conn.execute("COMMIT")
    return LogSnapshot(seq=seq, tables=tables)


class SQLiteSnapshotReader:
    """A :class:`~rxstore.gateway.log.contract.SnapshotReader` on a read-only connection of its own.

    Its methods run in worker threads (``asyncio.to_thread``), one at a time: a
    lock keeps :meth:`close` (run when the reading task is cancelled) from
    closing the connection under a fetch that is still running.
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.seq = 0
        self.skip: frozenset[int] = frozenset()
        self.ts: float | None = None
        self._conn: sqlite3.Connection | None = None
        self._keys: dict[str, str] = {}
        self._reading: tuple[str, Subset | None] | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._names: list[str] = []
        self._held: Any = None
        self._lock = threading.Lock()

    def begin(self, topics: Sequence[str]) -> None:
        """Open the read transaction that every page of the snapshot is read in."""
        with self._lock:
            self._begin(topics)

    def _begin(self, topics: Sequence[str]) -> None:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._conn = conn
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA cache_size = -1024")  # 1 MiB: many readers may be open at once
        conn.execute("BEGIN")  # a WAL read transaction: one consistent view until close()
        self.seq = head_sync(conn)
        self.ts = ts_sync(conn, self.seq)
        self._keys = dict(conn.execute("SELECT topic, primary_key FROM rxstore_watched").fetchall())
        for topic in topics:
            if not columns_of(conn, topic):
                raise ValueError(f"cannot snapshot {topic!r}: no such table")

    def fetch_sync(
        self, topic: str, limit: int, subset: Subset | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """The next rows of ``topic`` and whether more follow (blocking: run it in a thread)."""
        with self._lock:
            return self._fetch(topic, limit, subset)

    def _fetch(self, topic: str, limit: int, subset: Subset | None) -> tuple[list[dict[str, Any]], bool]:
        conn = self._conn
        if conn is None:
            raise NotConnected("the snapshot reader is closed")
        if subset is not None and subset.topic != topic:
            raise ValueError(f"a subset of {subset.topic!r} cannot be read from {topic!r}")
        if (topic, subset) != self._reading:
            key = self._keys.get(topic)
            sql, params = rows_sql(topic, key if key in columns_of(conn, topic) else None, subset)
            if self._cursor is not None:
                self._cursor.close()
            self._cursor = conn.execute(sql, params)
            self._names = [d[0] for d in self._cursor.description]
            self._reading, self._held = (topic, subset), None
        cursor = self._cursor
        assert cursor is not None
        raw = [self._held] if self._held is not None else []
        raw.extend(cursor.fetchmany(limit + 1 - len(raw)))
        self._held = raw.pop() if len(raw) > limit else None
        if self._held is None:  # done: asking again reads from the first row
            self._reading = None
        return _jsonable_rows(self._names, raw), self._held is not None

    async def fetch(
        self, topic: str, limit: int, subset: Subset | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Return the next rows of ``topic`` (of ``subset``; at most ``limit``) and whether more follow."""
        return await asyncio.to_thread(self.fetch_sync, topic, limit, subset)

    def close(self) -> None:
        """End the read transaction and close its connection."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._cursor = None
            if conn is not None:
                conn.close()  # ends the read transaction
