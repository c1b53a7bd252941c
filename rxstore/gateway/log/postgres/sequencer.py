"""The PostgreSQL change log's connections, sequencer, supervisor and WAL capture hooks.

:class:`SequencedLog` is the base of
:class:`~rxstore.gateway.log.postgres.changelog.PostgresChangeLog`: it holds the pool and
the LISTEN connection, numbers committed changes (``rxstore_sequence``, see
:mod:`rxstore.gateway.log.postgres.changelog`) and runs the supervisor task that sequences
on NOTIFY and on a poll, notices a lost connection and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from rxstore.gateway.log.postgres.capture import CaptureLeader, choose_mode, wait_captured
from rxstore.gateway.log.postgres.schema import CHANGES_CHANNEL, CONNECTION_ERRORS, SEQ_CHANNEL, Conn, redact
from rxstore.gateway.log.wakeup import WakeSignal
from rxstore.protocol.errors import NotConnected

__all__ = ["SequencedLog"]

_log = logging.getLogger("rxstore.gateway.postgres")


class SequencedLog:
    """Connections, sequencer and supervisor of a PostgreSQL change log (a base class).

    Attributes:
        url: The database URL.
        poll_interval: Seconds between safety-net sequencer runs and liveness checks.
        batch: The most changes one sequencer transaction numbers.
        connect_timeout: Seconds to wait for a new connection.
        max_backoff: The longest pause between reconnection attempts.
    """

    url: str
    capture: str
    capture_reason: str
    slot_warning_bytes: int
    poll_interval: float
    batch: int
    connect_timeout: float
    max_backoff: float

    def __init__(self) -> None:
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._seq_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._signal = WakeSignal()
        self._dirty = True  # there may be unsequenced changes
        self._healthy = False
        self._capturer: CaptureLeader | None = None

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

    # -- WAL capture (see rxstore.gateway.log.postgres.capture) ------------------------------

    async def _choose_capture(self, conn: Any, *, fresh: bool) -> None:
        mode, slot, self.capture_reason = await choose_mode(conn, self.capture, fresh=fresh)
        self.capture = "wal" if mode == "wal" else "trigger"
        if slot is not None:
            self._capturer = CaptureLeader(
                slot,
                connect=self._capture_connection,
                appended=self._appended,
                batch=self.batch,
                retained_warning=self.slot_warning_bytes,
            )

    async def _capture_connection(self, name: str) -> asyncpg.Connection[asyncpg.Record]:
        return await asyncpg.connect(
            self.url, timeout=self.connect_timeout, server_settings={"application_name": name}
        )

    def _appended(self) -> None:
        self._signal.notify()  # numbered as they were appended: readable now

    async def wait_captured(self, timeout: float = 30.0) -> None:
        """Return once every transaction committed so far is in the log (at once with triggers).

        With WAL capture, changes reach the log a few milliseconds after their
        commit; this waits for that (e.g. after writing with another connection).

        Raises:
            NotConnected: The database connection is lost, or the capture did not
                get there within ``timeout`` seconds (no capture leader).
        """
        if self._capturer is None:
            return
        async with self._connection() as conn:
            # The insert position: a commit made with synchronous_commit = off may not even be
            # written yet (pg_current_wal_lsn() is the write position, before it).
            lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
            await wait_captured(conn, lsn, self._capturer, timeout)
        # Appended, maybe not numbered yet: the next read sequences first (the leader's own
        # wake-up may still be on its way, or come from another node).
        self._dirty = True

    async def _captured(self, conn: Conn) -> None:
        """In WAL mode, wait until what ``conn`` committed is in the log (a no-op with triggers)."""
        if self._capturer is not None:
            lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
            await wait_captured(conn, lsn, self._capturer)

    @property
    def capture_status(self) -> dict[str, Any]:
        """How this log captures: ``{"mode": "trigger"}``, or the WAL capture's role, lag and lost slots."""
        if self._capturer is None:
            return {"mode": self.capture}
        return self._capturer.status()

    @property
    def capture_leader(self) -> bool:
        """Whether this node reads the WAL now (WAL mode; one node at a time)."""
        return self._capturer is not None and self._capturer.leading

    async def _skip(self, conn: Conn, topics: list[str], seq: int, pending: list[int]) -> frozenset[int]:
        """The seqs above ``seq`` of changes that ``conn``'s snapshot already holds.

        With triggers: the committed changes not yet sequenced. With WAL capture
        also those not yet captured: once the capture has passed the WAL position
        of the snapshot, the captured changes whose transaction the snapshot sees.
        """
        ids = list(pending)
        if self._capturer is not None:
            snapshot = await conn.fetchval("SELECT pg_current_snapshot()::text")
            upto = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
            async with self._connection() as other:
                await wait_captured(other, upto, self._capturer)
                rows = await other.fetch(
                    "SELECT id FROM rxstore_changes WHERE topic = ANY($1) AND commit_lsn <= $2::text::pg_lsn "
                    "AND (seq IS NULL OR seq > $3) "
                    "AND pg_visible_in_snapshot(xid::text::xid8, $4::text::pg_snapshot)",
                    topics,
                    upto,
                    seq,
                    snapshot,
                )
            ids.extend(r[0] for r in rows)
        return await self._seqs_of(ids) if ids else frozenset()

    # -- connections --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        pool = self._pool
        if pool is None:
            raise NotConnected(f"change log {redact(self.url)} is not open")
        try:
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                yield conn
        except CONNECTION_ERRORS as exc:
            self._healthy = False
            self._kick.set()  # let the supervisor check and reconnect
            raise NotConnected(f"lost the connection to {redact(self.url)}: {exc}") from exc
        except asyncpg.InterfaceError as exc:
            if self._pool is None:  # closed under us
                raise NotConnected(f"change log {redact(self.url)} was closed") from exc
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
        except (TimeoutError, *CONNECTION_ERRORS, asyncpg.InterfaceError):
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
                    _log.info("rxstore: reconnected to %s", redact(self.url))
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
            except (*CONNECTION_ERRORS, NotConnected) as exc:
                if self._healthy or backoff == 0.05:
                    _log.warning("rxstore: lost %s (%s); reconnecting", redact(self.url), exc)
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
