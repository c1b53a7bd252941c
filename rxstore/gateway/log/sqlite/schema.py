"""The SQLite change log's tables, capture triggers and write transactions.

The capture triggers list a table's columns and build each row's JSON in SQL
(``json_object``), so they are rebuilt when the columns change. Everything
here runs on the log's worker thread, given its :class:`sqlite3.Connection`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from rxstore.gateway.log.sql import ident, literal
from rxstore.protocol.events import Op

__all__ = [
    "NOW",
    "SCHEMA",
    "columns_of",
    "ensure_epoch",
    "ensure_triggers",
    "epoch_sync",
    "head_sync",
    "refresh_triggers",
    "ts_sync",
    "write_transaction",
]

NOW: Final = "((julianday('now') - 2440587.5) * 86400.0)"
"""Wall-clock time in Unix seconds (millisecond precision) as an SQL expression."""

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS rxstore_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
        record TEXT,
        old TEXT,
        ts REAL NOT NULL,
        mutation TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS rxstore_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO rxstore_meta (key, value) VALUES ('horizon', 0)",
    """CREATE TABLE IF NOT EXISTS rxstore_watched (
        topic TEXT PRIMARY KEY,
        primary_key TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rxstore_mutations (
        user_id TEXT NOT NULL,
        mutation TEXT NOT NULL,
        applied_at REAL NOT NULL,
        fingerprint TEXT NOT NULL DEFAULT '',
        result TEXT,
        PRIMARY KEY (user_id, mutation)
    )""",
    """CREATE TABLE IF NOT EXISTS rxstore_identity (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        epoch TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
)


_HEAD_SQL: Final = "SELECT seq FROM sqlite_sequence WHERE name = 'rxstore_changes'"

_MAX_JSON_PAIRS: Final = 49
"""Columns per ``json_object``/``json_insert`` call (SQLite allows 100 arguments)."""


def _row_json(alias: str, columns: Sequence[str]) -> str:
    """Return an SQL expression building the JSON object of a row (``NEW``/``OLD``)."""

    def value(column: str) -> str:
        ref = f"{alias}.{ident(column)}"
        return (
            f"CASE typeof({ref}) WHEN 'blob' THEN hex({ref}) WHEN 'real' THEN {_real_json(ref)} "
            f"ELSE {ref} END"
        )

    first, rest = columns[:_MAX_JSON_PAIRS], columns[_MAX_JSON_PAIRS:]
    expr = "json_object(" + ", ".join(f"{literal(c)}, {value(c)}" for c in first) + ")"
    for start in range(0, len(rest), _MAX_JSON_PAIRS):
        chunk = rest[start : start + _MAX_JSON_PAIRS]
        paths = ", ".join(f"{literal(_json_path(c))}, {value(c)}" for c in chunk)
        expr = f"json_insert({expr}, {paths})"
    return expr


def _real_json(ref: str) -> str:
    """Return an SQL expression giving a REAL as an exact JSON number.

    ``json_object`` (SQLite 3.40) writes REALs with 15 significant digits, so
    e.g. a ``time.time()`` value would not survive. This uses the shortest of
    ``%!.15g``/``%!.17g`` that reads back equal, else ``%!.20e``; infinities
    become ``±9e999`` (read back as ``±inf``). Exact for all values in normal
    ranges; SQLite's printf can still be one ulp off beyond about 1e±200.
    """
    g15, g17 = f"printf('%!.15g', {ref})", f"printf('%!.17g', {ref})"
    return (
        f"CASE WHEN {ref} > 1.7976931348623157e308 THEN json('9e999') "
        f"WHEN {ref} < -1.7976931348623157e308 THEN json('-9e999') "
        f"WHEN CAST({g15} AS REAL) = {ref} THEN json({g15}) "
        f"WHEN CAST({g17} AS REAL) = {ref} THEN json({g17}) "
        f"ELSE json(printf('%!.20e', {ref})) END"
    )


def _json_path(column: str) -> str:
    if '"' in column:
        raise ValueError(f"cannot capture column {column!r}: it contains a double quote")
    return f'$."{column}"'


def _trigger_name(table: str, op: Op) -> str:
    return f"rxstore__{table}__{op.value.lower()}"


def _trigger_sql(table: str, op: Op, columns: Sequence[str]) -> str:
    record = "NULL" if op is Op.DELETE else _row_json("NEW", columns)
    old = "NULL" if op is Op.INSERT else _row_json("OLD", columns)
    return (
        f"CREATE TRIGGER {ident(_trigger_name(table, op))} "
        f"AFTER {op.value} ON {ident(table)} FOR EACH ROW BEGIN "
        "INSERT INTO rxstore_changes (topic, op, record, old, ts) "
        f"VALUES ({literal(table)}, '{op.value}', {record}, {old}, {NOW}); END"
    )


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def ensure_epoch(conn: sqlite3.Connection, *, replace: bool) -> None:
    """Give the log a new epoch (``replace``), or its first one if it has none; in a write transaction."""
    conflict = (
        "DO UPDATE SET epoch = excluded.epoch, created_at = excluded.created_at" if replace else "DO NOTHING"
    )
    conn.execute(
        f"INSERT INTO rxstore_identity (singleton, epoch, created_at) VALUES (1, ?, {NOW}) "
        f"ON CONFLICT (singleton) {conflict}",
        (uuid.uuid4().hex,),
    )


def epoch_sync(conn: sqlite3.Connection) -> str:
    """Return the log's epoch, making a new one if its row was deleted."""
    row = conn.execute("SELECT epoch FROM rxstore_identity WHERE singleton = 1").fetchone()
    if row is None:  # the row was deleted under us: the log's identity is lost, make a new one
        with write_transaction(conn):
            ensure_epoch(conn, replace=False)
        row = conn.execute("SELECT epoch FROM rxstore_identity WHERE singleton = 1").fetchone()
    return str(row[0])


def columns_of(conn: sqlite3.Connection, table: str) -> list[str]:
    """Return the columns ``SELECT *`` gives for ``table`` (none if there is no such table)."""
    # table_xinfo also lists generated columns (hidden 2/3), as SELECT * does.
    rows = conn.execute(
        "SELECT name FROM pragma_table_xinfo(?) WHERE hidden != 1 ORDER BY cid", (table,)
    ).fetchall()
    return [row[0] for row in rows]


def ensure_triggers(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> None:
    """(Re)create the capture triggers of ``table`` whose SQL differs from what ``columns`` need."""
    existing: Mapping[str, str] = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
            (table,),
        ).fetchall()
    )
    for op in Op:
        name, sql = _trigger_name(table, op), _trigger_sql(table, op, columns)
        if existing.get(name) != sql:
            conn.execute(f"DROP TRIGGER IF EXISTS {ident(name)}")
            conn.execute(sql)


def head_sync(conn: sqlite3.Connection) -> int:
    """Return the highest seq ever assigned (0 when the log is new)."""
    row = conn.execute(_HEAD_SQL).fetchone()
    return int(row[0]) if row else 0


def ts_sync(conn: sqlite3.Connection, seq: int) -> float | None:
    """Return the commit time of the change at ``seq`` (``None``: no change there); one key lookup."""
    row = conn.execute("SELECT ts FROM rxstore_changes WHERE seq = ?", (seq,)).fetchone()
    return float(row[0]) if row else None


def refresh_triggers(conn: sqlite3.Connection) -> None:
    """Rebuild the triggers of every watched table whose column list changed."""
    for topic, _ in conn.execute("SELECT topic, primary_key FROM rxstore_watched").fetchall():
        columns = columns_of(conn, topic)
        if columns:  # a dropped table keeps its registration; re-created, it is captured
            ensure_triggers(conn, topic, columns)
