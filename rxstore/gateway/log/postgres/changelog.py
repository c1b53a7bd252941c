"""The PostgreSQL change log (asyncpg): WAL or trigger capture, a sequencer, LISTEN/NOTIFY.

Changes reach ``rxstore_changes`` with ``seq NULL`` in one of two ways: read
from the WAL by the capture leader (``rxstore.gateway.log.postgres.capture``; no
trigger in the users' transactions) or written by a capture trigger inside
them. PostgreSQL takes sequence values at insert, not at commit, so the
*sequencer* numbers the committed, unnumbered rows afterwards::

    BEGIN
      pg_try_advisory_xact_lock(SEQUENCER_LOCK_KEY)    -- one sequencer at a time
      UPDATE rxstore_changes SET seq = head + row_number() OVER (ORDER BY id)
       WHERE seq IS NULL                               -- the visible ones only
      UPDATE rxstore_head SET seq = head + n
      NOTIFY rxstore_seq
    COMMIT

Sequencing transactions are serialized by the lock and commit atomically, so
every snapshot sees seqs ``1..head`` with no hole: ``seq > cursor`` never skips.
Every gateway node sequences on NOTIFY, on a poll and when it (re)connects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import asyncpg

from rxstore.gateway.codec import dump_json, load_json
from rxstore.gateway.log.contract import (
    AppliedMutation,
    LogSnapshot,
    SnapshotReader,
    Statement,
    fold_skip,
    trim_needed,
)
from rxstore.gateway.log.postgres.capture import RETAINED_WARNING_BYTES
from rxstore.gateway.log.postgres.decode import CAPTURE_SCHEMA, MUTATION_PREFIX
from rxstore.gateway.log.postgres.reads import (
    READ_BOUNDED_SQL,
    PostgresSnapshotReader,
    begin_snapshot,
    column_kinds,
    rows_sql,
    ts_at,
)
from rxstore.gateway.log.postgres.retention import trim_prefix
from rxstore.gateway.log.postgres.schema import (
    CHANGES_CHANNEL,
    CONNECTION_ERRORS,
    SCHEMA,
    SCHEMA_LOCK_KEY,
    SEQ_CHANNEL,
    SEQUENCER_LOCK_KEY,
    ensure_epoch,
    init_connection,
    redact,
)
from rxstore.gateway.log.postgres.sequencer import SequencedLog
from rxstore.gateway.log.postgres.watch import watch_table
from rxstore.gateway.log.sql import OPS, check_topic
from rxstore.protocol.errors import NotConnected
from rxstore.protocol.events import Change

Capture = Literal["auto", "wal", "trigger"]
"""How changes are captured: from the WAL, with triggers, or ``auto`` (the WAL when it can)."""

__all__ = ["CHANGES_CHANNEL", "SCHEMA_LOCK_KEY", "SEQUENCER_LOCK_KEY", "SEQ_CHANNEL", "PostgresChangeLog"]

_INTERNAL: tuple[str, ...] = ("rxstore_", "pg_")
"""Prefixes of tables that cannot be topics."""


class PostgresChangeLog(SequencedLog):
    """The change log in a PostgreSQL database (production / scale-out).

    Every gateway node may open the same database: they share one log and
    sequence it cooperatively. ``json``/``jsonb`` values are decoded to Python
    objects (and encoded from them) by :meth:`fetch` and :meth:`execute`.

    Args:
        url: ``postgresql://user:password@host:port/database``.
        poll_interval: Seconds between safety-net sequencer runs and liveness checks.
        batch: The most changes one sequencer transaction numbers, and the changes the WAL
            capture holds in memory before it appends them (a bigger transaction waits in the
            database, in parts; see docs/operations.md, "One huge transaction").
        pool_size: The most pooled connections (one more is used for LISTEN).
        connect_timeout: Seconds to wait for a new connection.
        max_backoff: The longest pause between reconnection attempts.
        capture: ``"wal"`` (a logical slot read by one capture leader among the
            nodes: no trigger in the users' transactions), ``"trigger"``, or
            ``"auto"`` (the default): a new log captures from the WAL when the
            server has ``wal_level=logical`` (PostgreSQL's own ``pgoutput``),
            else with triggers; an existing log keeps the mode it was made with.
        slot_warning_bytes: WAL capture: WAL the replication slot may retain before
            ``/healthz`` warns (1 GiB; see docs/operations.md, ``max_slot_wal_keep_size``).
    """

    def __init__(
        self,
        url: str,
        *,
        poll_interval: float = 0.5,
        batch: int = 5000,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        max_backoff: float = 2.0,
        capture: Capture = "auto",
        slot_warning_bytes: int = RETAINED_WARNING_BYTES,
    ) -> None:
        if capture not in ("auto", "wal", "trigger"):
            raise ValueError(f"capture must be 'auto', 'wal' or 'trigger', got {capture!r}")
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"not a PostgreSQL URL: {redact(url)!r}")
        if poll_interval <= 0 or batch < 1 or pool_size < 1:
            raise ValueError("poll_interval, batch and pool_size must be positive")
        super().__init__()
        self.url = url
        self.poll_interval = poll_interval
        self.batch = batch
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.capture: Capture = capture
        self.slot_warning_bytes = slot_warning_bytes
        """The capture mode asked for; once open, the one in use (``"wal"`` or ``"trigger"``)."""
        self.capture_reason = ""
        """Why the log uses its capture mode (``rxstore serve`` prints it)."""
        self._supervisor: asyncio.Task[None] | None = None
        self._capture_task: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the log schema if missing and start LISTEN; idempotent.

        Raises:
            NotConnected: The database cannot be reached.
        """
        async with self._lifecycle:
            if self._pool is not None:
                return
            try:
                pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    init=init_connection,
                    timeout=self.connect_timeout,
                    server_settings={"application_name": "rxstore"},
                )
            except CONNECTION_ERRORS as exc:
                raise NotConnected(f"cannot connect to {redact(self.url)}: {exc}") from exc
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
                    fresh = await conn.fetchval("SELECT to_regclass('rxstore_changes') IS NULL")
                    await conn.execute(SCHEMA)
                    await conn.execute(CAPTURE_SCHEMA)
                    await ensure_epoch(conn, replace=bool(fresh))  # a new (or re-created) log: a new epoch
                async with pool.acquire() as conn:
                    await self._choose_capture(conn, fresh=bool(fresh))
                self._pool = pool
                await self._connect_listener()
                await self._sequence(force=True)  # rows written while no gateway ran
            except BaseException as exc:
                self._pool = None
                await self._drop_listener()
                pool.terminate()
                if isinstance(exc, CONNECTION_ERRORS):
                    raise NotConnected(f"cannot open the log at {redact(self.url)}: {exc}") from exc
                raise
            self._healthy = True
            self._supervisor = asyncio.create_task(self._supervise(), name="rxstore-pg-supervisor")
            if self._capturer is not None:
                self._capture_task = asyncio.create_task(self._capturer.run(), name="rxstore-pg-capture")
                await self.wait_captured()  # what was written while no gateway ran is in the log now

    async def close(self) -> None:
        """Stop the background task, LISTEN connection and pool; idempotent."""
        async with self._lifecycle:
            pool, supervisor, capture = self._pool, self._supervisor, self._capture_task
            if pool is None:
                return
            self._pool = self._supervisor = self._capture_task = None
            self._healthy = False
            for task in (supervisor, capture):
                if task is not None:
                    task.cancel()
                    await asyncio.wait([task])
            await self._drop_listener()
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, *CONNECTION_ERRORS):
                pool.terminate()
            self._signal.notify()

    @property
    def healthy(self) -> bool:
        """False while the LISTEN connection is lost (and being re-established)."""
        return self._healthy

    # -- public API ---------------------------------------------------------

    async def watch(self, table: str, *, primary_key: str = "id", old: str = "full") -> None:
        """Capture the changes of ``table`` (idempotent); topic = table name.

        With WAL capture, the table gets ``REPLICA IDENTITY FULL`` (its old rows
        are logged; ``old="key"``: the default identity, old rows are the key)
        and a statement trigger that logs what a ``TRUNCATE`` removes; no row
        trigger. With trigger capture it gets the capture trigger:

        The trigger writes whole rows with ``to_jsonb``, so added or dropped
        columns need no new trigger. A ``TRUNCATE`` of the table is logged as
        one DELETE per row it removes (a statement trigger, same transaction).

        Raises:
            ValueError: The table does not exist or has no column ``primary_key``.
        """
        check_topic(table, internal=_INTERNAL)
        async with self._connection() as conn, conn.transaction():
            await watch_table(conn, table, primary_key, wal=self.capture == "wal", full=old == "full")

    async def read(self, after: int, *, limit: int = 1000, max_bytes: int | None = None) -> list[Change]:
        """Return sequenced changes with ``seq > after`` in seq order, at most ``limit``.

        Runs the sequencer first when changes may be waiting for a seq, so a
        write made through :meth:`execute` is readable when it returns.
        ``max_bytes`` bounds the stored size of the rows returned (one change
        at least); rows past it are not even sent by the server.

        Raises:
            NotConnected: The database connection is lost.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self._signal.mark_read()
        await self._settle()
        async with self._connection() as conn:
            if max_bytes is None:
                rows = await conn.fetch(
                    "SELECT seq, topic, op, record, old, ts, mutation FROM rxstore_changes "
                    "WHERE seq > $1 ORDER BY seq LIMIT $2",
                    after,
                    limit,
                )
            else:
                rows = await conn.fetch(READ_BOUNDED_SQL, after, limit, max_bytes)
        return [Change(r[0], r[1], OPS[r[2]], r[3], r[4], r[5], r[6]) for r in rows]

    @contextlib.asynccontextmanager
    async def snapshot_reader(self, topics: Sequence[str]) -> AsyncIterator[SnapshotReader]:
        """Open a paged snapshot of ``topics``: a REPEATABLE READ transaction and a server-side cursor.

        It holds one pooled connection until closed.

        Raises:
            ValueError: A topic's table does not exist.
            NotConnected: The database connection is lost.
        """
        wanted = list(dict.fromkeys(topics))
        for topic in wanted:
            check_topic(topic, internal=_INTERNAL)
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            read_at, keys, pending = await begin_snapshot(conn, wanted)
            seq, skip = fold_skip(read_at, await self._skip(conn, wanted, read_at, pending))
            # A seq folded over skipped changes was given after this transaction began: read its ts elsewhere.
            ts = await ts_at(conn, seq) if seq == read_at else await self.ts_at(seq)
            yield PostgresSnapshotReader(conn, seq, skip, keys, ts)

    async def snapshot(self, topics: Sequence[str]) -> LogSnapshot:
        """Return the rows of ``topics`` at one consistent change-log position.

        Rows are read in one REPEATABLE READ transaction together with the head
        seq and the changes that are already committed (so reflected in the
        rows) but not yet sequenced; these get seqs above the head later and
        are returned in ``skip``.

        Raises:
            ValueError: A topic's table does not exist.
            NotConnected: The database connection is lost.
        """
        wanted = list(dict.fromkeys(topics))
        for topic in wanted:
            check_topic(topic, internal=_INTERNAL)
        tables: dict[str, list[dict[str, Any]]] = {}
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            read_at, keys, pending = await begin_snapshot(conn, wanted)
            for topic in wanted:
                tables[topic] = [r[0] for r in await conn.fetch(rows_sql(topic, keys))]
            seq, skip = fold_skip(read_at, await self._skip(conn, wanted, read_at, pending))
        return LogSnapshot(seq=seq, tables=tables, skip=skip)

    async def columns(self, topic: str) -> dict[str, str]:
        """Return a watched table's columns -> kind (by its type, domains by their base), in table order.

        The table is found on the connection's ``search_path``, as :meth:`watch` finds it.

        Raises:
            ValueError: ``topic`` is not a watched table.
            NotConnected: The database connection is lost.
        """
        async with self._connection() as conn:
            return await column_kinds(conn, topic)

    async def head(self) -> int:
        """Return the highest seq in the log (0 when empty)."""
        await self._settle()
        async with self._connection() as conn:
            return int(await conn.fetchval("SELECT seq FROM rxstore_head WHERE singleton"))

    async def horizon(self) -> int:
        """Return the highest seq ever trimmed; a cursor below it cannot resume."""
        async with self._connection() as conn:
            return int(await conn.fetchval("SELECT horizon FROM rxstore_head WHERE singleton"))

    async def ts_at(self, seq: int) -> float | None:
        """Return the commit time of the change at ``seq`` (``None``: no change there); one index read."""
        async with self._connection() as conn:
            return await ts_at(conn, seq)

    async def epoch(self) -> str:
        """Return the log's identity, made with the log and changed by :meth:`mark_restore`.

        Opening a log whose identity row was made in another database or
        cluster (a ``pg_dump`` restored elsewhere, ``CREATE DATABASE ...
        TEMPLATE``) also gives it a new epoch.
        """
        async with self._connection() as conn:
            epoch = await conn.fetchval("SELECT epoch FROM rxstore_identity WHERE singleton")
            if epoch is None:  # the row was deleted under us: the log's identity is lost, make a new one
                async with conn.transaction():
                    await ensure_epoch(conn, replace=False)
                epoch = await conn.fetchval("SELECT epoch FROM rxstore_identity WHERE singleton")
        return str(epoch)

    async def mark_restore(self) -> str:
        """Give the log a new epoch (after restoring a backup into this database); return it.

        Clients that come back with a cursor of the old epoch get a reset and a snapshot.
        """
        async with self._connection() as conn, conn.transaction():
            await ensure_epoch(conn, replace=True)
            return str(await conn.fetchval("SELECT epoch FROM rxstore_identity WHERE singleton"))

    async def trim(self, *, max_age: float | None = None, max_rows: int | None = None) -> int:
        """Delete changes older than ``max_age`` seconds or beyond the newest ``max_rows``.

        Only sequenced changes, and only a prefix of the log, are removed: a
        change is kept if any older change is kept. With ``max_age``, mutation
        ids older than it are forgotten too (see :meth:`apply_mutation`).

        Returns:
            The number of changes removed.
        """
        if not trim_needed(max_age, max_rows):
            return 0
        await self._settle()
        async with self._connection() as conn, conn.transaction():
            return await trim_prefix(conn, max_age, max_rows)

    async def wait(self, timeout: float) -> None:
        """Return when new changes may be readable, or after ``timeout`` seconds.

        Returns at once if new seqs were assigned since this task's last :meth:`read`.
        """
        await self._signal.wait(timeout)

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one write statement (``$1`` placeholders) in its own transaction; wake tailers.

        With WAL capture it returns once the change is in the log (as with triggers).
        """
        async with self._connection() as conn:
            await conn.execute(sql, *args)
            await self._captured(conn)
        self._dirty = True
        self._kick.set()

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

        The changes they write carry ``mutation`` (the capture trigger reads the
        transaction-local setting ``rxstore.mutation``); ``fingerprint`` and
        ``result`` (as JSON) are kept with the id. If a statement fails, nothing
        is kept (not even the mutation id), so it can be retried. A concurrent
        duplicate waits for the first and then returns False.

        Returns:
            False when this user's mutation was applied before (nothing was run).
        """
        async with self._connection() as conn, conn.transaction():
            new = await conn.fetchval(
                "INSERT INTO rxstore_mutations (user_id, mutation, applied_at, fingerprint, result) "
                "VALUES ($1, $2, extract(epoch FROM now()), $3, $4) ON CONFLICT DO NOTHING RETURNING true",
                user,
                mutation,
                fingerprint,
                dump_json(result),
            )
            if not new:
                return False
            await conn.execute("SELECT set_config('rxstore.mutation', $1, true)", mutation)
            if self._capturer is not None:  # WAL capture reads the id from the WAL, in order
                await conn.execute("SELECT pg_logical_emit_message(true, $1, $2)", MUTATION_PREFIX, mutation)
            for sql, args in statements:
                await conn.execute(sql, *args)
        async with self._connection() as conn:
            await self._captured(conn)
        self._dirty = True
        self._kick.set()
        return True

    async def applied_mutation(self, mutation: str, user: str) -> AppliedMutation | None:
        """What was kept when this user's mutation was applied (``None``: not applied, or trimmed)."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT fingerprint, result FROM rxstore_mutations WHERE user_id = $1 AND mutation = $2",
                user,
                mutation,
            )
        if row is None:
            return None
        return AppliedMutation(
            row["fingerprint"], None if row["result"] is None else load_json(row["result"])
        )

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run one query (``$1`` placeholders) and return its rows as dicts."""
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [dict(row.items()) for row in rows]
