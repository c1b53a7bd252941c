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
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from rxstore.gateway.codec import dump_json, load_json
from rxstore.gateway.log.contract import AppliedMutation, LogSnapshot, SnapshotReader, Statement, trim_needed
from rxstore.gateway.log.sql import check_topic
from rxstore.gateway.log.sqlite.reads import SQLiteSnapshotReader, kinds_sync, read_sync, snapshot_sync
from rxstore.gateway.log.sqlite.retention import horizon_sync, trim_sync
from rxstore.gateway.log.sqlite.schema import (
    NOW,
    SCHEMA,
    columns_of,
    ensure_epoch,
    ensure_triggers,
    epoch_sync,
    head_sync,
    refresh_triggers,
    ts_sync,
    write_transaction,
)
from rxstore.gateway.log.wakeup import WakeSignal
from rxstore.protocol.errors import NotConnected
from rxstore.protocol.events import Change

__all__ = ["SQLiteChangeLog"]

_T = TypeVar("_T")

_INTERNAL: tuple[str, ...] = ("rxstore_", "sqlite_")
"""Prefixes of tables that cannot be topics."""


def _path_from_url(url: str) -> Path:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    raw = urllib.parse.unquote(url[len(prefix) :].split("?", 1)[0])
    if not raw or raw == ":memory:":
        raise ValueError(f"SQLite URL {url!r} needs a file path: the log is shared through the file")
    return Path(raw)


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

    async def watch(self, table: str, *, primary_key: str = "id", old: str = "full") -> None:
        """Install (or refresh) the capture triggers on ``table``; topic = table name.

        ``old`` is accepted for the :class:`~rxstore.gateway.log.contract.ChangeLog`
        protocol; the triggers always log whole old rows.

        The triggers list the table's columns; they are rebuilt whenever the
        columns change (checked here, on :meth:`open` and on schema changes).

        Raises:
            ValueError: The table does not exist or has no column ``primary_key``.
        """
        check_topic(table, internal=_INTERNAL)
        await self._call(lambda conn: self._watch_sync(conn, table, primary_key))

    async def read(self, after: int, *, limit: int = 1000, max_bytes: int | None = None) -> list[Change]:
        """Return committed changes with ``seq > after`` in seq order, at most ``limit``.

        ``max_bytes`` bounds the JSON text of the rows returned (one change at least).
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self._signal.mark_read()
        return await self._call(lambda conn: read_sync(conn, after, limit, max_bytes))

    @contextlib.asynccontextmanager
    async def snapshot_reader(self, topics: Sequence[str]) -> AsyncIterator[SnapshotReader]:
        """Open a paged snapshot of ``topics``: a read transaction on a connection of its own.

        Raises:
            ValueError: A topic's table does not exist.
            NotConnected: The log is not open.
        """
        wanted = list(dict.fromkeys(topics))
        for topic in wanted:
            check_topic(topic, internal=_INTERNAL)
        if self._executor is None:
            raise NotConnected(f"change log {self.url} is not open")
        reader = SQLiteSnapshotReader(self.path, self.busy_timeout)
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
            check_topic(topic, internal=_INTERNAL)
        return await self._call(lambda conn: snapshot_sync(conn, wanted))

    async def columns(self, topic: str) -> dict[str, str]:
        """Return a watched table's columns -> kind (by SQLite's type affinity), in table order.

        Raises:
            ValueError: ``topic`` is not a watched table.
        """
        return await self._call(lambda conn: kinds_sync(conn, topic))

    async def head(self) -> int:
        """Return the highest seq ever assigned (0 when the log is new)."""
        return await self._call(head_sync)

    async def horizon(self) -> int:
        """Return the highest seq ever trimmed; a cursor below it cannot resume."""
        return await self._call(horizon_sync)

    async def ts_at(self, seq: int) -> float | None:
        """Return the commit time of the change at ``seq`` (``None``: no change there); one key lookup."""
        return await self._call(lambda conn: ts_sync(conn, seq))

    async def epoch(self) -> str:
        """Return the log's identity, made with the log and changed by :meth:`mark_restore`."""
        return await self._call(epoch_sync)

    async def mark_restore(self) -> str:
        """Give the log a new epoch (after restoring a backup or copying the file); return it.

        Clients that come back with a cursor of the old epoch get a reset and a snapshot.
        """

        def mark(conn: sqlite3.Connection) -> str:
            with write_transaction(conn):
                ensure_epoch(conn, replace=True)
            return epoch_sync(conn)

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
        return await self._call(lambda conn: trim_sync(conn, max_age, max_rows))

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
            with write_transaction(conn):
                fresh = not columns_of(conn, "rxstore_changes")  # a new (or re-created) log: a new epoch
                for statement in SCHEMA:
                    conn.execute(statement)
                ensure_epoch(conn, replace=fresh)
                if "mutation" not in columns_of(conn, "rxstore_changes"):  # a log from before mutations
                    conn.execute("ALTER TABLE rxstore_changes ADD COLUMN mutation TEXT")
                if "fingerprint" not in columns_of(conn, "rxstore_mutations"):  # before results were kept
                    conn.execute(
                        "ALTER TABLE rxstore_mutations ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''"
                    )
                    conn.execute("ALTER TABLE rxstore_mutations ADD COLUMN result TEXT")
                refresh_triggers(conn)
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
            with write_transaction(conn):
                refresh_triggers(conn)
            self._schema_version = conn.execute("PRAGMA schema_version").fetchone()[0]
        self._data_version = version
        return True

    def _watch_sync(self, conn: sqlite3.Connection, table: str, primary_key: str) -> None:
        with write_transaction(conn):
            kind = conn.execute(
                "SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')",
                (table,),
            ).fetchone()
            if kind is None or kind[0] != "table":
                raise ValueError(f"cannot watch {table!r}: no such table")
            columns = columns_of(conn, table)
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
            ensure_triggers(conn, table, columns)
        self._schema_version = conn.execute("PRAGMA schema_version").fetchone()[0]

    def _apply_mutation_sync(
        self,
        conn: sqlite3.Connection,
        mutation: str,
        user: str,
        statements: Sequence[Statement],
        kept: tuple[str, str | None],
    ) -> bool:
        with write_transaction(conn):
            new = conn.execute(
                "INSERT INTO rxstore_mutations (user_id, mutation, applied_at, fingerprint, result) "
                f"VALUES (?, ?, {NOW}, ?, ?) ON CONFLICT DO NOTHING",
                (user, mutation, *kept),
            ).rowcount
            if not new:
                return False
            before = head_sync(conn)
            for sql, args in statements:
                conn.execute(sql, tuple(args))
            # We hold the only write lock: every change after `before` is this mutation's.
            conn.execute("UPDATE rxstore_changes SET mutation = ? WHERE seq > ?", (mutation, before))
        return True

    @staticmethod
    def _execute_sync(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> None:
        with write_transaction(conn):
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
