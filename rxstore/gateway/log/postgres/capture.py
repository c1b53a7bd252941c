"""WAL capture for the PostgreSQL change log: the leader, the slot, waiting for the capture.

See :mod:`rxstore.gateway.log.postgres.decode` for what is read and how it is appended.
:class:`CaptureLeader` runs on every node; the one holding
:data:`~rxstore.gateway.log.postgres.decode.CAPTURE_LOCK_KEY` (a session advisory lock, freed
when its connection dies) reads the slot, the others stand by. :func:`choose_mode`
decides once per log how it captures; :func:`remake_slot` makes a slot that can no
longer decode anew (with a new epoch: clients reset and reload).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import asyncpg

from rxstore.gateway.log.postgres.decode import (
    CAPTURE_LOCK_KEY,
    PEEK_SQL,
    PLUGIN,
    PUBLICATION,
    WANTED_CHANNEL,
    Decoder,
    lsn_value,
    slot_name,
)
from rxstore.gateway.log.postgres.schema import ensure_epoch
from rxstore.gateway.log.postgres.spool import SPOOL_SCHEMA, Spool
from rxstore.gateway.log.sql import ident

__all__ = [
    "PART_BYTES",
    "RETAINED_WARNING_BYTES",
    "CaptureLeader",
    "choose_mode",
    "lsn_value",
    "remake_slot",
    "wait_captured",
    "watch_wal",
]

_log = logging.getLogger("rxstore.gateway.postgres")

CONNECTION_LOST: Final = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
"""What a lost capture connection raises."""

PART_BYTES: Final = 16 * 1024**2
"""Default of :class:`CaptureLeader`'s ``part_bytes``: the slot's messages (their bytes on the
wire) the capture holds before it appends or spools them, and reads at once (16 MiB)."""

FIRST_READ: Final = 16
"""Messages a pass reads first; each next read asks for up to twice as many, within the bounds."""

RETAINED_WARNING_BYTES: Final = 1024**3
"""Default of :class:`CaptureLeader`'s ``retained_warning``: WAL the slot may retain before
``/healthz`` warns (1 GiB)."""

SLOT_SQL: Final = (
    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained, "
    "wal_status, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1"
)
"""What the capture measures of its slot: unconfirmed WAL, retained WAL, whether it is lost."""


async def sleep_or(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` (then clear it) or ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    event.clear()


class CaptureLeader:
    """The capture of one node: leads it while holding :data:`CAPTURE_LOCK_KEY`, else stands by.

    Args:
        url: The database URL.
        slot: The logical slot's name.
        connect: Opens a connection (``asyncpg.connect`` with the log's settings).
        appended: Called after each append committed (the log sequences and wakes its tailers).
        batch: The most messages of the slot read at once, and the decoded changes held in
            memory before they are appended (a transaction with more is spooled in the
            database, in parts, and reaches the log whole), whatever a transaction's size
            (plus those of the message being decoded: a TRUNCATE's holds up to 1,000 rows).
        part_bytes: The same bound in the bytes of the slot's messages, for big rows: a read
            asks for as many messages as fit (by the size of the last ones; the first read of
            a pass asks for 16, each next one for at most twice as many as the last), and the
            held changes are appended or spooled once their messages add up to it.
        idle: Longest pause between two reads of an idle slot, in seconds.
        retained_warning: WAL the slot may retain (from its restart LSN to the current
            WAL position) before :meth:`status` warns, in bytes.
    """

    def __init__(
        self,
        slot: str,
        *,
        connect: Any,
        appended: Any,
        batch: int = 5000,
        part_bytes: int = PART_BYTES,
        idle: float = 0.1,
        retained_warning: int = RETAINED_WARNING_BYTES,
    ) -> None:
        self.slot = slot
        self.connect = connect
        self.appended = appended
        self.batch = batch
        self.part_bytes = part_bytes
        self.idle = idle
        self.retained_warning = retained_warning
        self.leading = False
        """Whether this node holds the lock (reads the slot)."""
        self.lost: str | None = None
        """Why the slot could not be read the last time it was lost (it was made anew)."""
        self.lost_count = 0
        """Slots lost (and made anew) since this node started."""
        self.lag_bytes: int | None = None
        """WAL the slot holds that the capture has not confirmed (measured by the leader)."""
        self.retained_bytes: int | None = None
        """WAL the slot keeps the server from removing (measured by leader and standby)."""
        self.wal_status: str | None = None
        """The slot's ``wal_status``: ``reserved``, ``extended``, ``unreserved`` or ``lost``."""
        self.caught_up_at = time.monotonic()
        """When the leader last had nothing left to read."""
        self.spooled_parts = 0
        """Parts of huge transactions spooled in the database since this node started."""
        self.held_peak = 0
        """The most decoded changes held in memory at once since this node started."""
        self.held_bytes_peak = 0
        """The most bytes of the slot's messages held in memory at once since this node started."""
        self._kick = asyncio.Event()
        self._wanted = False
        self._advanced = 0

    async def run(self) -> None:
        """Lead the capture when the lock is free, forever; reconnect after a lost connection."""
        backoff = 0.05
        while True:
            conn: Any = None
            try:
                conn = await self.connect("rxstore-capture")
                await conn.add_listener(WANTED_CHANNEL, self._on_wanted)
                while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", CAPTURE_LOCK_KEY):
                    self.leading = False
                    await self.measure(conn)
                    await sleep_or(self._kick, 0.5)
                self.leading = True
                _log.info("rxstore: this node captures the WAL (slot %s, %s)", self.slot, PLUGIN)
                backoff = 0.05
                await self._lead(conn)
            except asyncio.CancelledError:
                raise
            except CONNECTION_LOST as exc:
                _log.warning("rxstore: WAL capture lost its connection (%s); retrying", exc)
            except Exception:
                _log.exception("rxstore: WAL capture failed; retrying")
            finally:
                self.leading = False
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _on_wanted(self, *_: object) -> None:
        self._wanted = True
        self._kick.set()

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` says of the capture, and the numbers ``/metrics`` gives."""
        leading = self.leading
        return {
            "mode": "wal",
            "slot": self.slot,
            "role": "leader" if leading else "standby",
            "lag_bytes": self.lag_bytes if leading else None,
            "lag_seconds": round(time.monotonic() - self.caught_up_at, 3) if leading else None,
            "retained_bytes": self.retained_bytes,
            "retained_warning_bytes": self.retained_warning,
            "wal_status": self.wal_status,
            "warning": self.warning(),
            "slots_lost": self.lost_count,
            "last_lost": self.lost,
            "spooled_parts": self.spooled_parts,
        }

    def warning(self) -> str | None:
        """What an operator must look at in the slot (it retains too much WAL, or is about to be lost)."""
        retained = self.retained_bytes
        if self.wal_status in ("unreserved", "lost"):
            return (
                f"the replication slot {self.slot} is {self.wal_status}: its WAL is beyond "
                "max_slot_wal_keep_size; unless the capture catches up it is lost, and clients reset"
            )
        if retained is not None and retained > self.retained_warning:
            return (
                f"the replication slot {self.slot} retains {retained} bytes of WAL "
                f"(over {self.retained_warning}): the capture is behind or stopped; "
                "see docs/operations.md (max_slot_wal_keep_size)"
            )
        return None

    async def measure(self, conn: Any) -> None:
        """Read the slot's lag, retained WAL and status (the leader notices a lost slot with it)."""
        row = await conn.fetchrow(SLOT_SQL, self.slot)
        if row is None:
            self.lag_bytes = self.retained_bytes = self.wal_status = None
            return
        self.lag_bytes, self.retained_bytes, self.wal_status = row["lag"], row["retained"], row["wal_status"]
        if row["confirmed"] is not None:
            self._advanced = max(self._advanced, lsn_value(row["confirmed"]))

    def want(self) -> None:
        """Ask this node's capture (if it leads) to record its position at once."""
        self._on_wanted()

    async def _lead(self, conn: Any) -> None:
        pause = 0.005
        measured = 0.0
        await conn.execute(SPOOL_SCHEMA)
        self._advanced = 0
        while True:
            busy = await self.capture_once(conn)
            if not busy:
                self.caught_up_at = time.monotonic()
            if time.monotonic() - measured > 1.0:
                measured = time.monotonic()
                await self.measure(conn)
            if busy:
                pause = 0.005
                continue
            await sleep_or(self._kick, pause)
            pause = min(pause * 2, self.idle)

    async def capture_once(self, conn: Any) -> bool:
        """Decode what the slot holds now and append it; whether more may be waiting.

        One database transaction: the slot's messages are read through a cursor,
        :data:`batch` at a time, decoded and handed to a :class:`Spool` (which bounds
        what is held in memory); the log's capture position moves in the same commit,
        and the slot is advanced only after it.
        """
        # The flushed position, not the written one: a slot decodes flushed WAL only, and a
        # commit made with synchronous_commit = off returns before its WAL is flushed.
        upto = await conn.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        wanted, self._wanted = self._wanted, False
        try:
            async with conn.transaction():
                done = await conn.fetchval("SELECT lsn::text FROM rxstore_capture WHERE singleton")
                topics, keys = await _watched(conn)
                spool = Spool(conn, keys, done, limit=self.batch, limit_bytes=self.part_bytes)
                read, last = await self._read(conn, upto, Decoder(topics), spool)
                await spool.flush()
                cut = read >= self.batch
                # Cut by the batch: up to the last whole transaction read; the rest comes next time.
                position = (last or done) if cut else max(upto, last or upto, key=lsn_value)
                after = lsn_value(done)
                if spool.appended or (wanted and lsn_value(position) > after):
                    await conn.execute(
                        "UPDATE rxstore_capture SET lsn = greatest(lsn, $1::text::pg_lsn) WHERE singleton",
                        position,
                    )
        except (asyncpg.ObjectNotInPrerequisiteStateError, asyncpg.UndefinedObjectError) as exc:
            # The slot was invalidated (its retained WAL was over max_slot_wal_keep_size), or its
            # publication was dropped and made again (a restore): what it held is gone.
            detail = getattr(exc, "detail", None)
            await self._remake(conn, f"{exc} ({detail})" if detail else str(exc))
            return True
        self.spooled_parts += spool.parts
        self.held_peak = max(self.held_peak, spool.peak)
        self.held_bytes_peak = max(self.held_bytes_peak, spool.peak_bytes)
        if spool.appended:
            self.appended()  # in the log now: sequence and wake the tailers
        if lsn_value(position) > self._advanced:
            # Only after the append committed: a leader killed before this reads them again. Also
            # when nothing was appended: WAL of other tables alone must not pile up behind the slot.
            await conn.execute(
                "SELECT pg_replication_slot_advance($1, greatest($2::text::pg_lsn, confirmed_flush_lsn)) "
                "FROM pg_replication_slots WHERE slot_name = $1",
                self.slot,
                position,
            )
            self._advanced = lsn_value(position)
        return cut

    async def _read(self, conn: Any, upto: str, decoder: Decoder, spool: Spool) -> tuple[int, str | None]:
        """Read the slot up to ``upto`` through a cursor; the messages read and the last commit's LSN."""
        cursor = await conn.cursor(PEEK_SQL, self.slot, upto, self.batch, PUBLICATION)
        read, last = 0, None
        size = min(self.batch, FIRST_READ)  # then more, as many as part_bytes allows
        while records := await cursor.fetch(size):
            read += len(records)
            fed = 0
            for record in records:  # one at a time: a message may hold many changes (a TRUNCATE)
                fed += len(record[2])
                tx = decoder.take(record)
                if tx is not None:
                    last = tx.commit_lsn
                    await spool.committed(tx)
                if spool.full(decoder.current, len(record[2])):
                    await spool.release(decoder.current)
            if len(records) < size:
                break  # the cursor is at its end: no empty fetch to learn it
            size = max(1, min(self.batch, 2 * size, self.part_bytes * len(records) // max(fed, 1)))
        return read, last

    async def _remake(self, conn: Any, why: str) -> None:
        """The slot cannot be read any more: make it anew (the log gets a new epoch, clients reset)."""
        self.lost = why
        self.lost_count += 1
        _log.error(
            "rxstore: the WAL capture cannot read its slot %s (%s): a new slot captures from now "
            "on; the log gets a new epoch and clients reset and reload",
            self.slot,
            why,
        )
        await remake_slot(conn, self.slot, drop=True)
        self._advanced = 0
        await self.measure(conn)


async def _watched(conn: Any) -> tuple[dict[str, str], dict[str, str | None]]:
    """Watched tables -> topic, and topic -> its key where the table's replica identity is the default."""
    rows = await conn.fetch(
        "SELECT w.topic, w.primary_key, c.relreplident::text AS identity FROM rxstore_watched w "
        "JOIN pg_class c ON c.oid = to_regclass(quote_ident(w.topic))"
    )
    topics = {r["topic"]: r["topic"] for r in rows}
    keys = {r["topic"]: (r["primary_key"] if r["identity"] != "f" else None) for r in rows}
    return topics, keys


async def choose_mode(conn: Any, requested: str, *, fresh: bool) -> tuple[str, str | None, str]:
    """Decide (once per log) how it captures; returns ``(mode, slot, why)``.

    A log keeps the mode it was made with (stored in ``rxstore_capture``). A new
    one captures from the WAL when asked to, or with ``auto`` when the server
    allows it; an existing log from before WAL capture keeps its triggers.

    Raises:
        ValueError: ``wal`` was asked for and the server cannot do it, or the log
            was made with the other mode (the message says what to do).
    """
    slot = slot_name(
        int(await conn.fetchval("SELECT oid::bigint FROM pg_database WHERE datname = current_database()"))
    )
    row = await conn.fetchrow("SELECT mode, slot FROM rxstore_capture WHERE singleton")
    if row is not None:
        mode = row["mode"]
        if requested not in ("auto", mode):
            raise ValueError(
                f"this change log captures with {'the WAL' if mode == 'wal' else 'triggers'} "
                f"(it was made so); open it with capture='auto' or {mode!r}"
            )
        if mode == "wal":
            await _ensure_slot(conn, slot, row["slot"])
            return mode, slot, f"the log was made with WAL capture (slot {slot}, {PLUGIN})"
        return mode, None, "the log was made with trigger capture"
    mode, why = "trigger", "asked for" if requested == "trigger" else ""
    if requested != "trigger":
        if not fresh and requested == "auto":
            why = "an existing log from before WAL capture keeps its triggers"
        else:
            problem = await _wal_problem(conn)
            if problem is None:
                problem = await _create_slot(conn, slot)
            if problem is None:
                mode, why = "wal", f"wal_level=logical (slot {slot}, {PLUGIN})"
            elif requested == "wal":
                raise ValueError(f"cannot capture from the WAL: {problem}")
            else:
                why = f"{problem}; WAL capture keeps users' writes fast (see docs/operations.md)"
    await conn.execute(
        "INSERT INTO rxstore_capture (mode, slot, lsn) VALUES ($1, $2::text, "
        "coalesce((SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $2::text::name), "
        "'0/0')) "
        "ON CONFLICT (singleton) DO NOTHING",
        mode,
        slot if mode == "wal" else None,
    )
    stored = await conn.fetchrow("SELECT mode, slot FROM rxstore_capture WHERE singleton")
    if stored["mode"] != mode:  # another node decided first
        return await choose_mode(conn, "auto", fresh=False)
    return mode, stored["slot"], why


async def _wal_problem(conn: Any) -> str | None:
    level = await conn.fetchval("SELECT current_setting('wal_level')")
    if level != "logical":
        return f"the server has wal_level={level} (WAL capture needs wal_level=logical)"
    return None


async def _create_slot(conn: Any, slot: str) -> str | None:
    """Create the publication and the slot if missing; ``None``, or why it cannot be."""
    try:
        if not await conn.fetchval("SELECT true FROM pg_publication WHERE pubname = $1", PUBLICATION):
            # Before the slot: decoding reads the publication as of each change's position.
            await conn.execute(f"CREATE PUBLICATION {PUBLICATION} WITH (publish = 'insert, update, delete')")
    except asyncpg.DuplicateObjectError:
        pass  # another node made it
    except asyncpg.PostgresError as exc:
        return f"cannot create the publication {PUBLICATION}: {exc}"
    try:
        await conn.execute("SELECT pg_create_logical_replication_slot($1, $2)", slot, PLUGIN)
    except asyncpg.DuplicateObjectError:
        pass  # another node made it
    except asyncpg.PostgresError as exc:
        return f"cannot create the logical slot {slot} with {PLUGIN}: {exc}"
    return None


async def _ensure_slot(conn: Any, slot: str, stored: str | None) -> None:
    """Make the log's publication and slot again if they are gone (or the database is a copy)."""
    exists = await conn.fetchval("SELECT true FROM pg_replication_slots WHERE slot_name = $1", slot)
    published = await conn.fetchval("SELECT true FROM pg_publication WHERE pubname = $1", PUBLICATION)
    if exists and published and stored == slot:
        return
    if stored == slot:
        _log.error(
            "rxstore: the log's replication slot %s is gone (dropped, or lost for its retained WAL): "
            "it is made again; changes in between are not in the log, clients reset and reload",
            slot,
        )
    else:
        _log.warning("rxstore: the change log was copied from another database: it gets a slot of its own")
    await remake_slot(conn, slot, drop=bool(exists and not published))


async def remake_slot(conn: Any, slot: str, *, drop: bool) -> None:
    """Make the slot (and publication) anew from now on; the log gets a new epoch (clients reload).

    Raises:
        ValueError: The slot cannot be made.
    """
    if drop:  # a slot that cannot decode (its publication was dropped and made again, by a restore)
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            slot,
        )
    problem = await _create_slot(conn, slot)
    if problem is not None:
        raise ValueError(problem)
    async with conn.transaction():
        await conn.execute(
            "UPDATE rxstore_capture SET slot = $1::text, lsn = (SELECT confirmed_flush_lsn "
            "FROM pg_replication_slots WHERE slot_name = $1::text::name) WHERE singleton",
            slot,
        )
        await ensure_epoch(conn, replace=True)
    for table in await conn.fetch("SELECT topic FROM rxstore_watched"):
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", ident(table[0])):
            await _publish(conn, table[0])


async def _publish(conn: Any, table: str) -> None:
    published = await conn.fetchval(
        "SELECT true FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid "
        "WHERE p.pubname = $1 AND r.prrelid = to_regclass($2)",
        PUBLICATION,
        ident(table),
    )
    if not published:
        await conn.execute(f"ALTER PUBLICATION {PUBLICATION} ADD TABLE {ident(table)}")


async def wait_captured(conn: Any, lsn: str, leader: CaptureLeader | None, timeout: float = 30.0) -> None:
    """Wait until the capture has appended every transaction committed at or before ``lsn``.

    Raises:
        TimeoutError: Not within ``timeout`` seconds (no capture leader running?).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.002
    asked = False
    while not await conn.fetchval("SELECT lsn >= $1::text::pg_lsn FROM rxstore_capture WHERE singleton", lsn):
        if not asked:
            if leader is not None and leader.leading:
                leader.want()
            else:
                await conn.execute(f"NOTIFY {WANTED_CHANNEL}")
            asked = True
        if loop.time() > deadline:
            raise TimeoutError(f"the WAL capture did not reach {lsn} in {timeout:g} s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
        if pause >= 0.05:
            asked = False  # ask again now and then (a new leader)


async def watch_wal(conn: Any, table: str, *, full: bool) -> None:
    """Make ``table`` captured from the WAL: its replica identity, its TRUNCATE message; no row trigger."""
    await conn.execute(f"ALTER TABLE {ident(table)} REPLICA IDENTITY {'FULL' if full else 'DEFAULT'}")
    await _publish(conn, table)
    await conn.execute(f"DROP TRIGGER IF EXISTS rxstore_capture ON {ident(table)}")
    topic = "'" + table.replace("'", "''") + "'"
    await conn.execute(
        f"CREATE OR REPLACE TRIGGER rxstore_capture_truncate BEFORE TRUNCATE ON {ident(table)} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION rxstore_capture_truncate_message({topic})"
    )
