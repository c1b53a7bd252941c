"""The PostgreSQL change log (asyncpg): capture triggers, a sequencer, LISTEN/NOTIFY.

PostgreSQL takes sequence values at insert, not at commit, so a tailer reading
``seq > cursor`` from a ``bigserial`` would skip the change of a transaction
that commits late. Here the capture trigger inserts its change with
``seq NULL`` (``id bigserial`` keeps insertion order) and ``NOTIFY
rxstore_changes``. The *sequencer* then numbers the committed, unnumbered rows::

    BEGIN
      pg_try_advisory_xact_lock(SEQUENCER_LOCK_KEY)    -- one sequencer at a time
      UPDATE rxstore_changes SET seq = head + row_number() OVER (ORDER BY id)
       WHERE seq IS NULL                               -- the visible ones only
      UPDATE rxstore_head SET seq = head + n
      NOTIFY rxstore_seq
    COMMIT

Sequencing transactions are serialized by the lock and commit atomically, so
every snapshot sees seqs ``1..head`` with no hole: ``seq > cursor`` never skips.
A later transaction on the same row gets a higher ``id`` and commits later, so
it is sequenced after the earlier one. Every gateway node runs the sequencer
on NOTIFY, on a periodic poll (a safety net) and when it (re)connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg

from rxstore.errors import NotConnected
from rxstore.events import Change, Op
from rxstore.gateway.changelog import AppliedMutation, LogSnapshot, SnapshotReader, Statement, trim_needed
from rxstore.gateway.codec import dump_json, load_json
from rxstore.gateway.wakeup import WakeSignal

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

__all__ = ["SCHEMA_LOCK_KEY", "SEQUENCER_LOCK_KEY", "PostgresChangeLog"]

_log = logging.getLogger(__name__)

SEQUENCER_LOCK_KEY: Final = 0x7278_7374_6F72_6531
"""Advisory lock held by the (one) running sequencer transaction (``rxstore1``)."""
SCHEMA_LOCK_KEY: Final = 0x7278_7374_6F72_6532
"""Advisory lock serializing schema creation and ``watch`` DDL (``rxstore2``)."""

CHANGES_CHANNEL: Final = "rxstore_changes"
"""NOTIFY channel of the capture trigger: unsequenced changes were committed."""
SEQ_CHANNEL: Final = "rxstore_seq"
"""NOTIFY channel of the sequencer: new seqs are readable."""

_SCHEMA: Final = f"""
SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY});

CREATE TABLE IF NOT EXISTS rxstore_changes (
    id bigserial PRIMARY KEY,
    seq bigint UNIQUE,
    topic text NOT NULL,
    op text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    record jsonb,
    old jsonb,
    ts double precision NOT NULL,
    mutation text
);
ALTER TABLE rxstore_changes ADD COLUMN IF NOT EXISTS mutation text;  -- a log from before mutations
CREATE INDEX IF NOT EXISTS rxstore_changes_unsequenced ON rxstore_changes (id) WHERE seq IS NULL;

CREATE TABLE IF NOT EXISTS rxstore_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq bigint NOT NULL DEFAULT 0,
    horizon bigint NOT NULL DEFAULT 0
);
INSERT INTO rxstore_head (singleton) VALUES (true) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS rxstore_watched (
    topic text PRIMARY KEY,
    primary_key text NOT NULL
);

CREATE TABLE IF NOT EXISTS rxstore_mutations (
    user_id text NOT NULL,
    mutation text NOT NULL,
    applied_at double precision NOT NULL,
    PRIMARY KEY (user_id, mutation)
);
-- kept since results are remembered (a table from before gets them here)
ALTER TABLE rxstore_mutations ADD COLUMN IF NOT EXISTS fingerprint text NOT NULL DEFAULT '';
ALTER TABLE rxstore_mutations ADD COLUMN IF NOT EXISTS result text;

-- The log's identity (one row): clients send the epoch with their cursor. `origin` is where it
-- was made (cluster system identifier, database oid): a copy elsewhere gets a new epoch on open.
CREATE TABLE IF NOT EXISTS rxstore_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch text NOT NULL,
    created_at double precision NOT NULL,
    origin_system text,
    origin_database bigint NOT NULL
);

CREATE OR REPLACE FUNCTION rxstore_capture() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO rxstore_changes (topic, op, record, old, ts, mutation)
    VALUES (TG_ARGV[0], TG_OP, to_jsonb(NEW), to_jsonb(OLD),
            extract(epoch FROM clock_timestamp()),
            nullif(current_setting('rxstore.mutation', true), ''));  -- set by apply_mutation
    PERFORM pg_notify('{CHANGES_CHANNEL}', '');
    RETURN NULL;
END
$fn$;

-- TRUNCATE fires no row triggers: log every row it removes as a DELETE, in its transaction.
CREATE OR REPLACE FUNCTION rxstore_capture_truncate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format(
        'INSERT INTO rxstore_changes (topic, op, record, old, ts, mutation) '
        'SELECT $1, ''DELETE'', NULL, to_jsonb(t), extract(epoch FROM clock_timestamp()), '
        'nullif(current_setting(''rxstore.mutation'', true), '''') FROM %I.%I AS t',
        TG_TABLE_SCHEMA, TG_TABLE_NAME) USING TG_ARGV[0];
    PERFORM pg_notify('{CHANGES_CHANNEL}', '');
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION rxstore_sequence(batch integer) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    head_seq bigint;
    assigned bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock({SEQUENCER_LOCK_KEY}) THEN
        RETURN -1;  -- another session is sequencing
    END IF;
    -- A fresh snapshot per statement (READ COMMITTED): sees the previous sequencer's commit.
    SELECT seq INTO head_seq FROM rxstore_head WHERE singleton FOR UPDATE;
    UPDATE rxstore_changes AS c
       SET seq = head_seq + p.n
      FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
              FROM (SELECT id FROM rxstore_changes
                     WHERE seq IS NULL ORDER BY id LIMIT batch) AS q) AS p
     WHERE c.id = p.id;
    GET DIAGNOSTICS assigned = ROW_COUNT;
    IF assigned > 0 THEN
        UPDATE rxstore_head SET seq = head_seq + assigned WHERE singleton;
        PERFORM pg_notify('{SEQ_CHANNEL}', (head_seq + assigned)::text);  -- sent at commit
    END IF;
    RETURN assigned;
END
$fn$;
"""

_CONNECTION_ERRORS: Final = (
    OSError,  # refused, reset, timeouts
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)

_Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_topic(table: str) -> None:
    if not table:
        raise ValueError("table name must not be empty")
    if table.startswith(("rxstore_", "pg_")):
        raise ValueError(f"cannot watch {table!r}: rxstore_* and pg_* tables are internal")


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def _origin(conn: _Conn) -> tuple[str | None, int]:
    """The cluster's system identifier (``None`` if this role may not read it) and the database's oid."""
    database = await conn.fetchval("SELECT oid::bigint FROM pg_database WHERE datname = current_database()")
    try:
        async with conn.transaction():  # a savepoint: a refusal must not abort the caller's transaction
            system = await conn.fetchval("SELECT system_identifier::text FROM pg_control_system()")
    except asyncpg.InsufficientPrivilegeError:
        system = None
    return system, int(database)


async def _ensure_epoch(conn: _Conn, *, replace: bool) -> None:
    """Give the log a new epoch (``replace``, or if it was made elsewhere), else keep it; in a transaction."""
    system, database = await _origin(conn)
    row = await conn.fetchrow(
        "SELECT origin_system, origin_database FROM rxstore_identity WHERE singleton FOR UPDATE"
    )
    if row is not None and not replace:
        made_system, made_database = row["origin_system"], row["origin_database"]
        if made_database == database and (system is None or made_system in (None, system)):
            return
        _log.warning(
            "rxstore: the change log was made in another database (%s/%s, now %s/%s): a restored "
            "or copied database; it gets a new epoch, clients reset and reload",
            made_system,
            made_database,
            system,
            database,
        )
    await conn.execute(
        "INSERT INTO rxstore_identity (epoch, created_at, origin_system, origin_database) "
        "VALUES ($1, extract(epoch FROM clock_timestamp()), $2, $3) ON CONFLICT (singleton) DO UPDATE "
        "SET epoch = excluded.epoch, created_at = excluded.created_at, "
        "origin_system = excluded.origin_system, origin_database = excluded.origin_database",
        uuid.uuid4().hex,
        system,
        database,
    )


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=load_json, schema="pg_catalog")


class PostgresChangeLog:
    """The change log in a PostgreSQL database (production / scale-out).

    Every gateway node may open the same database: they share one log and
    sequence it cooperatively. ``json``/``jsonb`` values are decoded to Python
    objects (and encoded from them) by :meth:`fetch` and :meth:`execute`.

    Args:
        url: ``postgresql://user:password@host:port/database``.
        poll_interval: Seconds between safety-net sequencer runs and liveness checks.
        batch: The most changes one sequencer transaction numbers.
        pool_size: The most pooled connections (one more is used for LISTEN).
        connect_timeout: Seconds to wait for a new connection.
        max_backoff: The longest pause between reconnection attempts.
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
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"not a PostgreSQL URL: {_redact(url)!r}")
        if poll_interval <= 0 or batch < 1 or pool_size < 1:
            raise ValueError("poll_interval, batch and pool_size must be positive")
        self.url = url
        self.poll_interval = poll_interval
        self.batch = batch
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()
        self._seq_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._signal = WakeSignal()
        self._dirty = True  # there may be unsequenced changes
        self._healthy = False

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
                    init=_init_connection,
                    timeout=self.connect_timeout,
                    server_settings={"application_name": "rxstore"},
                )
            except _CONNECTION_ERRORS as exc:
                raise NotConnected(f"cannot connect to {_redact(self.url)}: {exc}") from exc
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
                    fresh = await conn.fetchval("SELECT to_regclass('rxstore_changes') IS NULL")
                    await conn.execute(_SCHEMA)
                    await _ensure_epoch(conn, replace=bool(fresh))  # a new (or re-created) log: a new epoch
                self._pool = pool
                await self._connect_listener()
                await self._sequence(force=True)  # rows written while no gateway ran
            except BaseException as exc:
                self._pool = None
                await self._drop_listener()
                pool.terminate()
                if isinstance(exc, _CONNECTION_ERRORS):
                    raise NotConnected(f"cannot open the log at {_redact(self.url)}: {exc}") from exc
                raise
            self._healthy = True
            self._supervisor = asyncio.create_task(self._supervise(), name="rxstore-pg-supervisor")

    async def close(self) -> None:
        """Stop the background task, LISTEN connection and pool; idempotent."""
        async with self._lifecycle:
            pool, supervisor = self._pool, self._supervisor
            if pool is None:
                return
            self._pool = self._supervisor = None
            self._healthy = False
            if supervisor is not None:
                supervisor.cancel()
                await asyncio.wait([supervisor])
            await self._drop_listener()
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, *_CONNECTION_ERRORS):
                pool.terminate()
            self._signal.notify()

    @property
    def healthy(self) -> bool:
        """False while the LISTEN connection is lost (and being re-established)."""
        return self._healthy

    # -- public API ---------------------------------------------------------

    async def watch(self, table: str, *, primary_key: str = "id") -> None:
        """Install the capture trigger on ``table`` (idempotent); topic = table name.

        The trigger writes whole rows with ``to_jsonb``, so added or dropped
        columns need no new trigger. A ``TRUNCATE`` of the table is logged as
        one DELETE per row it removes (a statement trigger, same transaction).

        Raises:
            ValueError: The table does not exist or has no column ``primary_key``.
        """
        _check_topic(table)
        async with self._connection() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
            row = await conn.fetchrow(
                "SELECT c.oid::bigint AS oid, c.relkind::text AS kind FROM pg_class c "
                "WHERE c.oid = to_regclass($1)",
                _ident(table),
            )
            if row is None or row["kind"] not in ("r", "p"):
                raise ValueError(f"cannot watch {table!r}: no such table")
            has_key = await conn.fetchval(
                "SELECT true FROM pg_attribute WHERE attrelid = $1::bigint::oid "
                "AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                row["oid"],
                primary_key,
            )
            if not has_key:
                raise ValueError(f"cannot watch {table!r}: it has no column {primary_key!r}")
            await conn.execute(
                "INSERT INTO rxstore_watched (topic, primary_key) VALUES ($1, $2) "
                "ON CONFLICT (topic) DO UPDATE SET primary_key = excluded.primary_key",
                table,
                primary_key,
            )
            await conn.execute(
                f"CREATE OR REPLACE TRIGGER rxstore_capture "
                f"AFTER INSERT OR UPDATE OR DELETE ON {_ident(table)} "
                f"FOR EACH ROW EXECUTE FUNCTION rxstore_capture({_literal(table)})"
            )
            await conn.execute(
                f"CREATE OR REPLACE TRIGGER rxstore_capture_truncate "
                f"BEFORE TRUNCATE ON {_ident(table)} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION rxstore_capture_truncate({_literal(table)})"
            )

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
                rows = await conn.fetch(_READ_BOUNDED_SQL, after, limit, max_bytes)
        return [Change(r[0], r[1], Op(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

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
            _check_topic(topic)
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            seq = await conn.fetchval("SELECT seq FROM rxstore_head WHERE singleton")
            keys: dict[str, str] = {
                r[0]: r[1]
                for r in await conn.fetch(
                    "SELECT topic, primary_key FROM rxstore_watched WHERE topic = ANY($1)", wanted
                )
            }
            for topic in wanted:
                if await conn.fetchval("SELECT to_regclass($1)::text", _ident(topic)) is None:
                    raise ValueError(f"cannot snapshot {topic!r}: no such table")
            pending = [
                r[0]
                for r in await conn.fetch(
                    "SELECT id FROM rxstore_changes WHERE seq IS NULL AND topic = ANY($1)", wanted
                )
            ]
            skip = await self._seqs_of(pending) if pending else frozenset()
            yield _PostgresSnapshotReader(conn, int(seq), skip, keys)

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
            _check_topic(topic)
        tables: dict[str, list[dict[str, Any]]] = {}
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            seq = await conn.fetchval("SELECT seq FROM rxstore_head WHERE singleton")
            keys: dict[str, str] = {
                r[0]: r[1]
                for r in await conn.fetch(
                    "SELECT topic, primary_key FROM rxstore_watched WHERE topic = ANY($1)",
                    wanted,
                )
            }
            for topic in wanted:
                if await conn.fetchval("SELECT to_regclass($1)::text", _ident(topic)) is None:
                    raise ValueError(f"cannot snapshot {topic!r}: no such table")
                key = keys.get(topic)
                order = f" ORDER BY t.{_ident(key)}" if key else ""
                rows = await conn.fetch(f"SELECT to_jsonb(t) FROM {_ident(topic)} AS t{order}")
                tables[topic] = [r[0] for r in rows]
            pending = [
                r[0]
                for r in await conn.fetch(
                    "SELECT id FROM rxstore_changes WHERE seq IS NULL AND topic = ANY($1)",
                    wanted,
                )
            ]
        skip = await self._seqs_of(pending) if pending else frozenset()
        return LogSnapshot(seq=int(seq), tables=tables, skip=skip)

    async def head(self) -> int:
        """Return the highest seq in the log (0 when empty)."""
        await self._settle()
        async with self._connection() as conn:
            return int(await conn.fetchval("SELECT seq FROM rxstore_head WHERE singleton"))

    async def horizon(self) -> int:
        """Return the highest seq ever trimmed; a cursor below it cannot resume."""
        async with self._connection() as conn:
            return int(await conn.fetchval("SELECT horizon FROM rxstore_head WHERE singleton"))

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
                    await _ensure_epoch(conn, replace=False)
                epoch = await conn.fetchval("SELECT epoch FROM rxstore_identity WHERE singleton")
        return str(epoch)

    async def mark_restore(self) -> str:
        """Give the log a new epoch (after restoring a backup into this database); return it.

        Clients that come back with a cursor of the old epoch get a reset and a snapshot.
        """
        async with self._connection() as conn, conn.transaction():
            await _ensure_epoch(conn, replace=True)
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
            head = int(await conn.fetchval("SELECT seq FROM rxstore_head WHERE singleton FOR UPDATE"))
            cutoff = 0
            if max_rows is not None:
                cutoff = max(0, head - max_rows)
            if max_age is not None:
                young = await conn.fetchval(
                    "SELECT seq FROM rxstore_changes "
                    "WHERE seq IS NOT NULL AND ts >= extract(epoch FROM now()) - $1 "
                    "ORDER BY seq LIMIT 1",
                    float(max_age),
                )
                cutoff = max(cutoff, head if young is None else young - 1)
            status = await conn.execute(
                "DELETE FROM rxstore_changes WHERE seq IS NOT NULL AND seq <= $1", cutoff
            )
            removed = int(status.split()[-1])
            if max_age is not None:  # mutation ids are remembered as long as changes are
                await conn.execute(
                    "DELETE FROM rxstore_mutations WHERE applied_at < extract(epoch FROM now()) - $1",
                    float(max_age),
                )
            if removed:
                await conn.execute(
                    "UPDATE rxstore_head SET horizon = greatest(horizon, $1) WHERE singleton", cutoff
                )
        return removed

    async def wait(self, timeout: float) -> None:
        """Return when new changes may be readable, or after ``timeout`` seconds.

        Returns at once if new seqs were assigned since this task's last :meth:`read`.
        """
        await self._signal.wait(timeout)

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one write statement (``$1`` placeholders) in its own transaction; wake tailers."""
        async with self._connection() as conn:
            await conn.execute(sql, *args)
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
            for sql, args in statements:
                await conn.execute(sql, *args)
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

    # -- sequencer ----------------------------------------------------------

    async def _sequence(self, *, force: bool = False) -> bool:
        """Number all visible unsequenced changes.

        Returns:
            False if another session holds the sequencer lock (it will number them).
        """
        async with self._seq_lock:
            if not (force or self._dirty):
                return True  # a run that started after our caller's write just finished
            self._dirty = False
            try:
                while True:
                    async with self._connection() as conn, conn.transaction(isolation="read_committed"):
                        assigned = int(
                            await conn.fetchval("SELECT rxstore_sequence($1)", self.batch, timeout=30)
                        )
                    if assigned < 0:
                        self._dirty = True
                        return False
                    if assigned:
                        self._signal.notify()
                    if assigned < self.batch:
                        return True
            except BaseException:
                self._dirty = True
                raise

    async def _settle(self) -> None:
        """Make every change this process knows of readable (sequence it, or wait for the run)."""
        # Not dirty but locked: a run that covers our changes has started but not committed.
        if self._dirty or self._seq_lock.locked():
            await self._sequence()

    async def _seqs_of(self, ids: list[int]) -> frozenset[int]:
        """Return the seqs the changes ``ids`` get, sequencing them if needed."""
        deadline = time.monotonic() + 30
        while True:
            await self._sequence(force=True)
            async with self._connection() as conn:
                rows = await conn.fetch("SELECT seq FROM rxstore_changes WHERE id = ANY($1::bigint[])", ids)
            seqs = [r[0] for r in rows]  # a trimmed id is gone: nothing to skip
            if None not in seqs:
                return frozenset(seqs)
            if time.monotonic() > deadline:
                raise TimeoutError("changes committed before a snapshot were not sequenced in 30 s")
            await asyncio.sleep(0.01)  # another node is sequencing them

    # -- connections --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Conn]:
        pool = self._pool
        if pool is None:
            raise NotConnected(f"change log {_redact(self.url)} is not open")
        try:
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                yield conn
        except _CONNECTION_ERRORS as exc:
            self._healthy = False
            self._kick.set()  # let the supervisor check and reconnect
            raise NotConnected(f"lost the connection to {_redact(self.url)}: {exc}") from exc
        except asyncpg.InterfaceError as exc:
            if self._pool is None:  # closed under us
                raise NotConnected(f"change log {_redact(self.url)} was closed") from exc
            raise

    async def _connect_listener(self) -> None:
        conn = await asyncpg.connect(
            self.url,
            timeout=self.connect_timeout,
            server_settings={"application_name": "rxstore-listen"},
        )
        try:
            await conn.add_listener(CHANGES_CHANNEL, self._on_notify)
            await conn.add_listener(SEQ_CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_terminate)
        self._listener = conn

    async def _drop_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 2)
        except (TimeoutError, *_CONNECTION_ERRORS, asyncpg.InterfaceError):
            conn.terminate()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object, /) -> None:
        if channel == CHANGES_CHANNEL:
            self._dirty = True
            self._kick.set()
        else:  # another session sequenced: new seqs are readable
            self._signal.notify()

    def _on_terminate(self, conn: object, /) -> None:
        if conn is self._listener:
            self._healthy = False
            self._kick.set()

    async def _supervise(self) -> None:
        """Sequence on NOTIFY and on a poll; notice a lost connection and reconnect."""
        backoff = 0.05
        busy = False
        while True:
            try:
                if self._listener is None:
                    await self._connect_listener()
                    await self._pool_reset()
                    self._healthy = True
                    backoff = 0.05
                    _log.info("rxstore: reconnected to %s", _redact(self.url))
                    busy = not await self._sequence(force=True)
                    self._signal.notify()  # tailers re-read after the outage
                try:
                    async with asyncio.timeout(0.02 if busy else self.poll_interval):
                        await self._kick.wait()
                    kicked = True
                except TimeoutError:
                    kicked = False
                self._kick.clear()
                listener = self._listener
                if listener is None or listener.is_closed():
                    raise ConnectionResetError("the LISTEN connection was closed")
                if not kicked:  # idle: make sure the LISTEN connection is really alive
                    await listener.execute("SELECT 1", timeout=self.connect_timeout)
                busy = not await self._sequence(force=True)
                self._healthy = True
            except asyncio.CancelledError:
                raise
            except (*_CONNECTION_ERRORS, NotConnected) as exc:
                if self._healthy or backoff == 0.05:
                    _log.warning("rxstore: lost %s (%s); reconnecting", _redact(self.url), exc)
                self._healthy = False
                await self._drop_listener()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:
                _log.exception("rxstore: change-log supervisor error; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _pool_reset(self) -> None:
        pool = self._pool
        if pool is not None:
            await pool.expire_connections()


_READ_BOUNDED_SQL = """
SELECT seq, topic, op, record, old, ts, mutation FROM (
    SELECT seq, topic, op, record, old, ts, mutation,
           sum(pg_column_size(record) + coalesce(pg_column_size(old), 0)) OVER (ORDER BY seq) AS total,
           row_number() OVER (ORDER BY seq) AS n
    FROM (SELECT * FROM rxstore_changes WHERE seq > $1 ORDER BY seq LIMIT $2) AS page
) AS sized
WHERE n = 1 OR total <= $3
ORDER BY seq
"""
"""A page of changes whose stored rows fit in $3 bytes (the first one always)."""


class _PostgresSnapshotReader:
    """A :class:`~rxstore.gateway.changelog.SnapshotReader` over one connection's open transaction."""

    def __init__(self, conn: _Conn, seq: int, skip: frozenset[int], keys: Mapping[str, str]) -> None:
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
            key = self._keys.get(topic)
            order = f" ORDER BY t.{_ident(key)}" if key else ""
            self._cursor = await self._conn.cursor(f"SELECT to_jsonb(t) FROM {_ident(topic)} AS t{order}")
            self._topic, self._held = topic, None
        raw = [self._held] if self._held is not None else []
        raw.extend(r[0] for r in await self._cursor.fetch(limit + 1 - len(raw)))
        self._held = raw.pop() if len(raw) > limit else None
        return raw, self._held is not None
