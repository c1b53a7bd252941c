"""The SQLite change log: one database file, stdlib :mod:`sqlite3`, WAL mode.

Capture triggers write each row change to ``rxstore_changes`` in the writer's
transaction; ``seq`` is an ``AUTOINCREMENT`` key assigned by the trigger.
SQLite has one writer at a time, so seq order is commit order and a reader's
``seq > cursor`` never skips a change.

All :mod:`sqlite3` calls run on one dedicated worker thread, never on the
event loop. Tailers are woken at once by writes made through :meth:`execute`,
and within ``poll_interval`` by writes from other connections or processes
(``PRAGMA data_version``)::

    writer (this log)  ──x─────────────        wait() returns at x
    writer (sqlite3 CLI) ─────x─────────        wait() returns at x + poll
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from rxstore.errors import NotConnected
from rxstore.events import Change, Op
from rxstore.gateway.changelog import AppliedMutation, LogSnapshot, SnapshotReader, Statement, trim_needed
from rxstore.gateway.codec import dump_json, load_json, non_finite_json
from rxstore.gateway.wakeup import WakeSignal

__all__ = ["SQLiteChangeLog"]

_T = TypeVar("_T")

_NOW: Final = "((julianday('now') - 2440587.5) * 86400.0)"
"""Wall-clock time in Unix seconds (millisecond precision) as an SQL expression."""

_SCHEMA: Final = (
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

_OPS: Final = {op.value: op for op in Op}

_HEAD_SQL: Final = "SELECT seq FROM sqlite_sequence WHERE name = 'rxstore_changes'"

_MAX_JSON_PAIRS: Final = 49
"""Columns per ``json_object``/``json_insert`` call (SQLite allows 100 arguments)."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _path_from_url(url: str) -> Path:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    raw = urllib.parse.unquote(url[len(prefix) :].split("?", 1)[0])
    if not raw or raw == ":memory:":
        raise ValueError(f"SQLite URL {url!r} needs a file path: the log is shared through the file")
    return Path(raw)


def _check_topic(table: str) -> None:
    if not table:
        raise ValueError("table name must not be empty")
    if table.startswith(("rxstore_", "sqlite_")):
        raise ValueError(f"cannot watch {table!r}: rxstore_* and sqlite_* tables are internal")


def _jsonable(value: object) -> object:
    # The capture triggers store BLOBs as upper-case hex; snapshots do the same.
    if isinstance(value, bytes):
        return value.hex().upper()
    if type(value) is float and value - value != 0.0:  # inf: the log's 9e999 reads as "Infinity"
        return non_finite_json(value)
    return value


def _row_json(alias: str, columns: Sequence[str]) -> str:
    """Return an SQL expression building the JSON object of a row (``NEW``/``OLD``)."""

    def value(column: str) -> str:
        ref = f"{alias}.{_ident(column)}"
        return (
            f"CASE typeof({ref}) WHEN 'blob' THEN hex({ref}) WHEN 'real' THEN {_real_json(ref)} "
            f"ELSE {ref} END"
        )

    first, rest = columns[:_MAX_JSON_PAIRS], columns[_MAX_JSON_PAIRS:]
    expr = "json_object(" + ", ".join(f"{_literal(c)}, {value(c)}" for c in first) + ")"
    for start in range(0, len(rest), _MAX_JSON_PAIRS):
        chunk = rest[start : start + _MAX_JSON_PAIRS]
        paths = ", ".join(f"{_literal(_json_path(c))}, {value(c)}" for c in chunk)
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
        f"CREATE TRIGGER {_ident(_trigger_name(table, op))} "
        f"AFTER {op.value} ON {_ident(table)} FOR EACH ROW BEGIN "
        "INSERT INTO rxstore_changes (topic, op, record, old, ts) "
        f"VALUES ({_literal(table)}, '{op.value}', {record}, {old}, {_NOW}); END"
    )


class SQLiteChangeLog:
    """The change log in a SQLite file (the embedded default).

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``;
            the file and its parent directories are created on :meth:`open`.
        poll_interval: Seconds between ``PRAGMA data_version`` checks that
            notice writes by other connections and processes.
        busy_timeout: Seconds a write waits for another writer's lock.

    Example:
        >>> log = SQLiteChangeLog("sqlite:///app.db")
        >>> log.path
        PosixPath('app.db')
    """

    def __init__(self, url: str, *, poll_interval: float = 0.025, busy_timeout: float = 5.0) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
        self.url = url
        self.path = _path_from_url(url)
        self.poll_interval = poll_interval
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._poller: asyncio.Task[None] | None = None
        self._signal = WakeSignal()
        self._lifecycle = asyncio.Lock()
        self._healthy = False
        # Worker-thread state.
        self._data_version = 0
        self._schema_version = 0

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        """Open (creating) the database file and the log tables; idempotent."""
        async with self._lifecycle:
            if self._executor is not None:
                return
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rxstore-sqlite")
            try:
                conn = await asyncio.get_running_loop().run_in_executor(executor, self._open_sync)
            except BaseException:
                executor.shutdown(wait=True)
                raise
            self._executor, self._conn = executor, conn
            self._healthy = True
            self._poller = asyncio.create_task(self._poll(), name=f"rxstore-sqlite-poll {self.url}")

    async def close(self) -> None:
        """Stop polling, close the connection and join the worker thread; idempotent."""
        async with self._lifecycle:
            executor, conn, poller = self._executor, self._conn, self._poller
            if executor is None or conn is None:
                return
            self._poller = None
            if poller is not None:
                poller.cancel()
                await asyncio.wait([poller])
            self._executor = self._conn = None  # new calls now raise NotConnected
            try:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            finally:
                executor.shutdown(wait=True)
                self._healthy = False
                self._signal.notify()

    @property
    def healthy(self) -> bool:
        """True while open and the database file can be read."""
        return self._healthy

    # -- public API ---------------------------------------------------------

    async def watch(self, table: str, *, primary_key: str = "id") -> None:
        """Install (or refresh) the capture triggers on ``table``; topic = table name.

        The triggers list the table's columns; they are rebuilt whenever the
        columns change (checked here, on :meth:`open` and on schema changes).

        Raises:
            ValueError: The table does not exist or has no column ``primary_key``.
        """
        _check_topic(table)
        await self._call(lambda conn: self._watch_sync(conn, table, primary_key))

    async def read(self, after: int, *, limit: int = 1000, max_bytes: int | None = None) -> list[Change]:
        """Return committed changes with ``seq > after`` in seq order, at most ``limit``.

        ``max_bytes`` bounds the JSON text of the rows returned (one change at least).
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self._signal.mark_read()
        return await self._call(lambda conn: self._read_sync(conn, after, limit, max_bytes))

    @contextlib.asynccontextmanager
    async def snapshot_reader(self, topics: Sequence[str]) -> AsyncIterator[SnapshotReader]:
        """Open a paged snapshot of ``topics``: a read transaction on a connection of its own.

        Raises:
            ValueError: A topic's table does not exist.
            NotConnected: The log is not open.
        """
        wanted = list(dict.fromkeys(topics))
        for topic in wanted:
            _check_topic(topic)
        if self._executor is None:
            raise NotConnected(f"change log {self.url} is not open")
        reader = _SQLiteSnapshotReader(self.path, self.busy_timeout)
        try:
            await asyncio.to_thread(reader.begin, wanted)
            yield reader
        finally:
            await asyncio.to_thread(reader.close)

    async def snapshot(self, topics: Sequence[str]) -> LogSnapshot:
        """Return the rows of ``topics`` and the head seq, read in one transaction.

        Raises:
            ValueError: A topic's table does not exist.
        """
        wanted = list(dict.fromkeys(topics))
        for topic in wanted:
            _check_topic(topic)
        return await self._call(lambda conn: self._snapshot_sync(conn, wanted))

    async def head(self) -> int:
        """Return the highest seq ever assigned (0 when the log is new)."""
        return await self._call(self._head_sync)

    async def horizon(self) -> int:
        """Return the highest seq ever trimmed; a cursor below it cannot resume."""
        return await self._call(
            lambda conn: int(
                conn.execute("SELECT value FROM rxstore_meta WHERE key = 'horizon'").fetchone()[0]
            )
        )

    async def epoch(self) -> str:
        """Return the log's identity, made with the log and changed by :meth:`mark_restore`."""
        return await self._call(_epoch_sync)

    async def mark_restore(self) -> str:
        """Give the log a new epoch (after restoring a backup or copying the file); return it.

        Clients that come back with a cursor of the old epoch get a reset and a snapshot.
        """

        def mark(conn: sqlite3.Connection) -> str:
            with _write_transaction(conn):
                _ensure_epoch(conn, replace=True)
            return _epoch_sync(conn)

        return await self._call(mark)

    async def trim(self, *, max_age: float | None = None, max_rows: int | None = None) -> int:
        """Delete changes older than ``max_age`` seconds or beyond the newest ``max_rows``.

        Only a prefix of the log is removed: a change is kept if any older
        change is kept. The horizon becomes the highest trimmed seq. With
        ``max_age``, mutation ids older than it are forgotten too (see
        :meth:`apply_mutation`).

        Returns:
            The number of changes removed.
        """
        if not trim_needed(max_age, max_rows):
            return 0
        return await self._call(lambda conn: self._trim_sync(conn, max_age, max_rows))

    async def wait(self, timeout: float) -> None:
        """Return when new changes may be readable, or after ``timeout`` seconds.

        Returns at once if a change was noticed since this task's last :meth:`read`.
        """
        await self._signal.wait(timeout)

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one write statement (``?`` placeholders) in its own transaction; wake tailers."""
        try:
            await self._call(lambda conn: self._execute_sync(conn, sql, args))
        finally:
            self._signal.notify()

    async def apply_mutation(
        self,
        mutation: str,
        user: str,
        statements: Sequence[Statement],
        *,
        fingerprint: str = "",
        result: Any = None,
    ) -> bool:
        """Run ``statements`` in one transaction, once per ``(user, mutation)``; wake tailers.

        The changes they write carry ``mutation``; ``fingerprint`` and ``result``
        (as JSON) are kept with the id. If a statement fails, nothing is kept
        (not even the mutation id), so the mutation can be retried.

        Returns:
            False when this user's mutation was applied before (nothing was run).
        """
        kept = (fingerprint, dump_json(result))
        try:
            return await self._call(
                lambda conn: self._apply_mutation_sync(conn, mutation, user, statements, kept)
            )
        finally:
            self._signal.notify()

    async def applied_mutation(self, mutation: str, user: str) -> AppliedMutation | None:
        """What was kept when this user's mutation was applied (``None``: not applied, or trimmed)."""
        rows, _ = await self._call(
            lambda conn: self._fetch_sync(
                conn,
                "SELECT fingerprint, result FROM rxstore_mutations WHERE user_id = ? AND mutation = ?",
                (user, mutation),
            )
        )
        if not rows:
            return None
        result = rows[0]["result"]
        return AppliedMutation(rows[0]["fingerprint"], None if result is None else load_json(result))

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run one query (``?`` placeholders) and return its rows as dicts."""
        rows, wrote = await self._call(lambda conn: self._fetch_sync(conn, sql, args))
        if wrote:
            self._signal.notify()
        return rows

    # -- plumbing -----------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise NotConnected(f"change log {self.url} is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, fn, conn)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                changed = await self._call(self._poll_sync)
            except NotConnected:
                return
            except sqlite3.Error:
                self._healthy = False
                continue
            self._healthy = True
            if changed:
                self._signal.notify()

    # -- worker thread ------------------------------------------------------

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"cannot switch {self.path} to WAL mode (got {mode!r})")
            with _write_transaction(conn):
                fresh = not _columns(conn, "rxstore_changes")  # a new (or re-created) log: a new epoch
                for statement in _SCHEMA:
                    conn.execute(statement)
                _ensure_epoch(conn, replace=fresh)
                if "mutation" not in _columns(conn, "rxstore_changes"):  # a log from before mutations
                    conn.execute("ALTER TABLE rxstore_changes ADD COLUMN mutation TEXT")
                if "fingerprint" not in _columns(conn, "rxstore_mutations"):  # before results were kept
                    conn.execute(
                        "ALTER TABLE rxstore_mutations ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''"
                    )
                    conn.execute("ALTER TABLE rxstore_mutations ADD COLUMN result TEXT")
                self._refresh_triggers(conn)
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            self._schema_version = conn.execute("PRAGMA schema_version").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        return conn

    def _poll_sync(self, conn: sqlite3.Connection) -> bool:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return False
        if conn.execute("PRAGMA schema_version").fetchone()[0] != self._schema_version:
            # Someone altered the schema: rebuild triggers whose column list is stale.
            with _write_transaction(conn):
                self._refresh_triggers(conn)
            self._schema_version = conn.execute("PRAGMA schema_version").fetchone()[0]
        self._data_version = version
        return True

    def _refresh_triggers(self, conn: sqlite3.Connection) -> None:
        for topic, _ in conn.execute("SELECT topic, primary_key FROM rxstore_watched").fetchall():
            columns = _columns(conn, topic)
            if columns:  # a dropped table keeps its registration; re-created, it is captured
                _ensure_triggers(conn, topic, columns)

    def _watch_sync(self, conn: sqlite3.Connection, table: str, primary_key: str) -> None:
        with _write_transaction(conn):
            kind = conn.execute(
                "SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')",
                (table,),
            ).fetchone()
            if kind is None or kind[0] != "table":
                raise ValueError(f"cannot watch {table!r}: no such table")
            columns = _columns(conn, table)
            if primary_key not in columns:
                raise ValueError(
                    f"cannot watch {table!r}: it has no column {primary_key!r} "
                    f"(columns: {', '.join(columns)})"
                )
            conn.execute(
                "INSERT INTO rxstore_watched (topic, primary_key) VALUES (?, ?) "
                "ON CONFLICT (topic) DO UPDATE SET primary_key = excluded.primary_key",
                (table, primary_key),
            )
            _ensure_triggers(conn, table, columns)
        self._schema_version = conn.execute("PRAGMA schema_version").fetchone()[0]

    @staticmethod
    def _head_sync(conn: sqlite3.Connection) -> int:
        row = conn.execute(_HEAD_SQL).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _read_sync(
        conn: sqlite3.Connection, after: int, limit: int, max_bytes: int | None = None
    ) -> list[Change]:
        rows = conn.execute(
            "SELECT seq, topic, op, record, old, ts, mutation FROM rxstore_changes "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        if max_bytes is not None:
            rows = _within_bytes(rows, max_bytes)
        return [
            Change(
                seq,
                topic,
                _OPS[op],
                load_json(record, big_ints=False) if record is not None else None,
                load_json(old, big_ints=False) if old is not None else None,
                float(ts),
                mutation,
            )
            for seq, topic, op, record, old, ts, mutation in rows
        ]

    def _snapshot_sync(self, conn: sqlite3.Connection, topics: Sequence[str]) -> LogSnapshot:
        conn.execute("BEGIN")  # a WAL read transaction: one consistent view
        try:
            seq = self._head_sync(conn)
            keys = dict(conn.execute("SELECT topic, primary_key FROM rxstore_watched").fetchall())
            tables: dict[str, list[dict[str, Any]]] = {}
            for topic in topics:
                columns = _columns(conn, topic)
                if not columns:
                    raise ValueError(f"cannot snapshot {topic!r}: no such table")
                key = keys.get(topic)
                order = f" ORDER BY {_ident(key)}" if key in columns else ""
                cursor = conn.execute(f"SELECT * FROM {_ident(topic)}{order}")
                names = [d[0] for d in cursor.description]
                tables[topic] = [{n: _jsonable(v) for n, v in zip(names, row, strict=True)} for row in cursor]
        finally:
            conn.execute("COMMIT")
        return LogSnapshot(seq=seq, tables=tables)

    @staticmethod
    def _trim_sync(conn: sqlite3.Connection, max_age: float | None, max_rows: int | None) -> int:
        with _write_transaction(conn):
            cutoff = 0
            if max_rows is not None:
                row = conn.execute(
                    "SELECT seq FROM rxstore_changes ORDER BY seq DESC LIMIT 1 OFFSET ?",
                    (max_rows,),
                ).fetchone()
                if row:
                    cutoff = row[0]
            if max_age is not None:
                # The oldest change young enough to keep; everything before it goes.
                row = conn.execute(
                    f"SELECT seq FROM rxstore_changes WHERE ts >= {_NOW} - ? ORDER BY seq LIMIT 1",
                    (max_age,),
                ).fetchone()
                if row:
                    cutoff = max(cutoff, row[0] - 1)
                else:
                    last = conn.execute("SELECT max(seq) FROM rxstore_changes").fetchone()[0]
                    cutoff = max(cutoff, last or 0)
            removed = conn.execute("DELETE FROM rxstore_changes WHERE seq <= ?", (cutoff,)).rowcount
            if max_age is not None:  # mutation ids are remembered as long as changes are
                conn.execute(f"DELETE FROM rxstore_mutations WHERE applied_at < {_NOW} - ?", (max_age,))
            if removed:
                conn.execute(
                    "UPDATE rxstore_meta SET value = max(value, ?) WHERE key = 'horizon'",
                    (cutoff,),
                )
        return int(removed)

    def _apply_mutation_sync(
        self,
        conn: sqlite3.Connection,
        mutation: str,
        user: str,
        statements: Sequence[Statement],
        kept: tuple[str, str | None],
    ) -> bool:
        with _write_transaction(conn):
            new = conn.execute(
                "INSERT INTO rxstore_mutations (user_id, mutation, applied_at, fingerprint, result) "
                f"VALUES (?, ?, {_NOW}, ?, ?) ON CONFLICT DO NOTHING",
                (user, mutation, *kept),
            ).rowcount
            if not new:
                return False
            before = self._head_sync(conn)
            for sql, args in statements:
                conn.execute(sql, tuple(args))
            # We hold the only write lock: every change after `before` is this mutation's.
            conn.execute("UPDATE rxstore_changes SET mutation = ? WHERE seq > ?", (mutation, before))
        return True

    @staticmethod
    def _execute_sync(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> None:
        with _write_transaction(conn):
            conn.execute(sql, args)

    @staticmethod
    def _fetch_sync(
        conn: sqlite3.Connection, sql: str, args: Sequence[Any]
    ) -> tuple[list[dict[str, Any]], bool]:
        before = conn.total_changes
        cursor = conn.execute(sql, args)
        names = [d[0] for d in cursor.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return rows, conn.total_changes != before


def _within_bytes(rows: list[Any], max_bytes: int) -> list[Any]:
    """The first ``rows`` (one at least) whose record and old JSON texts fit in ``max_bytes``."""
    total = 0
    for index, row in enumerate(rows):
        total += len(row[3] or "") + len(row[4] or "")
        if total > max_bytes and index:
            return rows[:index]
    return rows


class _SQLiteSnapshotReader:
    """A :class:`~rxstore.gateway.changelog.SnapshotReader` on a read-only connection of its own.

    Its methods run in worker threads (``asyncio.to_thread``), one at a time: a
    lock keeps :meth:`close` (run when the reading task is cancelled) from
    closing the connection under a fetch that is still running.
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.seq = 0
        self.skip: frozenset[int] = frozenset()
        self._conn: sqlite3.Connection | None = None
        self._keys: dict[str, str] = {}
        self._topic: str | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._names: list[str] = []
        self._held: Any = None
        self._lock = threading.Lock()

    def begin(self, topics: Sequence[str]) -> None:
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
        self.seq = SQLiteChangeLog._head_sync(conn)
        self._keys = dict(conn.execute("SELECT topic, primary_key FROM rxstore_watched").fetchall())
        for topic in topics:
            if not _columns(conn, topic):
                raise ValueError(f"cannot snapshot {topic!r}: no such table")

    def fetch_sync(self, topic: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        with self._lock:
            return self._fetch(topic, limit)

    def _fetch(self, topic: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        conn = self._conn
        if conn is None:
            raise NotConnected("the snapshot reader is closed")
        if topic != self._topic:
            key = self._keys.get(topic)
            order = f" ORDER BY {_ident(key)}" if key in _columns(conn, topic) else ""
            self._cursor = conn.execute(f"SELECT * FROM {_ident(topic)}{order}")
            self._names = [d[0] for d in self._cursor.description]
            self._topic, self._held = topic, None
        cursor = self._cursor
        assert cursor is not None
        raw = [self._held] if self._held is not None else []
        raw.extend(cursor.fetchmany(limit + 1 - len(raw)))
        self._held = raw.pop() if len(raw) > limit else None
        names = self._names
        rows = [{n: _jsonable(v) for n, v in zip(names, row, strict=True)} for row in raw]
        return rows, self._held is not None

    async def fetch(self, topic: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Return the next rows of ``topic`` (at most ``limit``) and whether more follow."""
        return await asyncio.to_thread(self.fetch_sync, topic, limit)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._cursor = None
            if conn is not None:
                conn.close()  # ends the read transaction


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _ensure_epoch(conn: sqlite3.Connection, *, replace: bool) -> None:
    """Give the log a new epoch (``replace``), or its first one if it has none; in a write transaction."""
    conflict = (
        "DO UPDATE SET epoch = excluded.epoch, created_at = excluded.created_at" if replace else "DO NOTHING"
    )
    conn.execute(
        f"INSERT INTO rxstore_identity (singleton, epoch, created_at) VALUES (1, ?, {_NOW}) "
        f"ON CONFLICT (singleton) {conflict}",
        (uuid.uuid4().hex,),
    )


def _epoch_sync(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT epoch FROM rxstore_identity WHERE singleton = 1").fetchone()
    if row is None:  # the row was deleted under us: the log's identity is lost, make a new one
        with _write_transaction(conn):
            _ensure_epoch(conn, replace=False)
        row = conn.execute("SELECT epoch FROM rxstore_identity WHERE singleton = 1").fetchone()
    return str(row[0])


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    # table_xinfo also lists generated columns (hidden 2/3), as SELECT * does.
    rows = conn.execute(
        "SELECT name FROM pragma_table_xinfo(?) WHERE hidden != 1 ORDER BY cid", (table,)
    ).fetchall()
    return [row[0] for row in rows]


def _ensure_triggers(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> None:
    existing: Mapping[str, str] = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
            (table,),
        ).fetchall()
    )
    for op in Op:
        name, sql = _trigger_name(table, op), _trigger_sql(table, op, columns)
        if existing.get(name) != sql:
            conn.execute(f"DROP TRIGGER IF EXISTS {_ident(name)}")
            conn.execute(sql)
