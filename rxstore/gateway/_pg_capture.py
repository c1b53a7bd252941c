"""WAL capture for the PostgreSQL change log: one leader decodes a logical slot into the log.

In WAL mode no trigger runs inside the users' transactions. A logical
replication slot (output plugin ``wal2json``, format 2) keeps every committed
change of the watched tables, and one *capture leader* among the gateway nodes
(the holder of a session advisory lock; another node takes over when its
connection dies) reads it with ``pg_logical_slot_peek_changes`` and appends
each committed transaction, in commit order, to ``rxstore_changes`` (``seq``
NULL, then numbered by the sequencer exactly as trigger-captured changes are)::

    peek the slot up to pg_current_wal_lsn()
    BEGIN
      INSERT INTO rxstore_changes ... (rows as to_jsonb gives them, commit xid and LSN)
      UPDATE rxstore_capture SET lsn = <last commit appended>
    COMMIT
    pg_replication_slot_advance(slot, lsn)          -- only after the append committed

A leader killed between the commit and the advance is harmless: its successor
peeks the same transactions again and skips those at or before the stored
``lsn``, so nothing is lost or appended twice. Rows are converted by the
database itself (``jsonb_populate_record`` then ``to_jsonb``), so a captured
row is byte for byte what the trigger would have written. Mutation ids travel
as transactional logical messages (``pg_logical_emit_message``), and a
``TRUNCATE`` as one message holding the rows it removes (a statement trigger
that runs before it), both decoded in their transaction's order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg
import attrs

from rxstore.gateway._pg_schema import CHANGES_CHANNEL, Conn, ensure_epoch
from rxstore.gateway.sql import ident

__all__ = [
    "CAPTURE_LOCK_KEY",
    "CAPTURE_SCHEMA",
    "MUTATION_PREFIX",
    "PLUGIN",
    "TRUNCATE_PREFIX",
    "WANTED_CHANNEL",
    "Transaction",
    "append",
    "decode",
    "peek",
    "slot_name",
]

_log = logging.getLogger("rxstore.gateway.postgres")

PLUGIN: Final = "pgoutput"
"""The slot's output plugin: PostgreSQL's own (logical replication), on every server and managed service."""
PUBLICATION: Final = "rxstore"
"""The publication of the watched tables (INSERT, UPDATE, DELETE; a TRUNCATE travels as a message)."""
CAPTURE_LOCK_KEY: Final = 0x7278_7374_6F72_6533
"""Session advisory lock held by the capture leader's connection (``rxstore3``)."""
WANTED_CHANNEL: Final = "rxstore_capture_wanted"
"""NOTIFY channel: a node waits for the capture to reach an LSN (payload); the leader records it."""
MUTATION_PREFIX: Final = "rxstore.mutation"
"""Prefix of the logical message that names the mutation a transaction applies."""
TRUNCATE_PREFIX: Final = "rxstore.truncate"
"""Prefix of the logical message holding the rows a TRUNCATE removes."""

CAPTURE_SCHEMA: Final = """
ALTER TABLE rxstore_changes ADD COLUMN IF NOT EXISTS xid bigint;        -- the source transaction (xid8)
ALTER TABLE rxstore_changes ADD COLUMN IF NOT EXISTS commit_lsn pg_lsn; -- its commit record
CREATE TABLE IF NOT EXISTS rxstore_capture (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mode text NOT NULL CHECK (mode IN ('wal', 'trigger')),
    slot text,
    lsn pg_lsn NOT NULL DEFAULT '0/0'  -- every transaction that committed at or before it is in the log
);

-- WAL mode: a TRUNCATE is one transactional message with the rows it removes (no row event exists).
CREATE OR REPLACE FUNCTION rxstore_capture_truncate_message() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    removed jsonb;
BEGIN
    EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(t)), ''[]'') FROM %I.%I AS t',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME) INTO removed;
    PERFORM pg_logical_emit_message(true, 'rxstore.truncate',
                                    jsonb_build_object('topic', TG_ARGV[0], 'rows', removed)::text);
    RETURN NULL;
END
$fn$;
"""


def slot_name(database_oid: int) -> str:
    """The slot of the log in the database with this oid (slot names are cluster-wide)."""
    return f"rxstore_{database_oid}"


@attrs.define
class Transaction:
    """One decoded source transaction: its changes of watched tables, in order."""

    xid: int
    commit_lsn: str = ""
    timestamp: float | None = None
    """Commit time, Unix seconds."""
    mutation: str | None = None
    changes: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None, bool]] = attrs.field(
        factory=list
    )
    """``(topic, op, new values, old values, old is converted)`` in order."""


async def peek(conn: Conn, slot: str, upto: str, limit: int) -> list[Any]:
    """The slot's messages up to ``upto`` (whole transactions, about ``limit`` changes at most)."""
    return list(
        await conn.fetch(
            "SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_binary_changes("
            "$1, $2::text::pg_lsn, $3, 'proto_version', '1', 'publication_names', $4, 'messages', 'true')",
            slot,
            upto,
            limit,
            PUBLICATION,
        )
    )


_JSON_TYPES: Final = frozenset({114, 3802})
"""Type oids of ``json`` and ``jsonb``: their text is the JSON value itself."""
_UNCHANGED: Final = object()
"""An unchanged TOASTed value (not in the new tuple)."""
_PG_EPOCH: Final = 946_684_800.0
"""2000-01-01 in Unix seconds: pgoutput's timestamps count microseconds from it."""


class _Message:
    """A cursor over one pgoutput message (big-endian integers, NUL-terminated strings)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 1

    def number(self, size: int) -> int:
        value = int.from_bytes(self.data[self.at : self.at + size], "big", signed=True)
        self.at += size
        return value

    def byte(self) -> bytes:
        self.at += 1
        return self.data[self.at - 1 : self.at]

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        value = self.data[self.at : end].decode()
        self.at = end + 1
        return value

    def row(self, columns: Sequence[tuple[str, int]]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, type_oid in columns[: self.number(2)]:
            kind = self.byte()
            if kind == b"n":
                values[name] = None
            elif kind == b"t":
                size = self.number(4)
                text = self.data[self.at : self.at + size].decode()
                self.at += size
                values[name] = json.loads(text) if type_oid in _JSON_TYPES else text
            # b"u": an unchanged TOASTed value, left out (the old row fills it in)
        return values


def decode(records: Sequence[Any], topics: Mapping[str, str]) -> list[Transaction]:
    """Group the slot's pgoutput messages into committed transactions of the watched ``topics``.

    Values stay in their text form (``jsonb_populate_record`` reads them with each
    type's own input function, so nothing is rounded or lost).

    Args:
        records: ``(lsn, xid, data)`` rows of :func:`peek`.
        topics: Watched table -> topic (the same name; the table's schema is not part of it).
    """
    done: list[Transaction] = []
    relations: dict[int, tuple[str | None, list[tuple[str, int]]]] = {}
    current: Transaction | None = None
    for lsn, _, data in records:
        message = _Message(bytes(data))
        kind = data[0:1]
        if kind == b"R":
            relation = message.number(4)
            message.string()  # namespace
            table = message.string()
            message.byte()  # replica identity
            columns = []
            for _ in range(message.number(2)):
                message.byte()  # flags
                name = message.string()
                columns.append((name, message.number(4)))
                message.number(4)  # typmod
            relations[relation] = (topics.get(table), columns)
        elif kind == b"B":
            message.number(8)  # final LSN
            stamp = message.number(8)
            current = Transaction(xid=message.number(4), timestamp=_PG_EPOCH + stamp / 1e6)
        elif current is None:
            continue  # a transaction cut before its BEGIN: read again next time
        elif kind == b"C":
            current.commit_lsn = lsn
            done.append(current)
            current = None
        elif kind in (b"I", b"U", b"D"):
            topic, columns = relations[message.number(4)]
            old = new = None
            marker = message.byte()
            if marker in (b"K", b"O"):
                old = message.row(columns)
                marker = message.byte() if kind == b"U" else b""
            if marker == b"N":
                new = message.row(columns)
            if topic is None:
                continue
            op = {b"I": "INSERT", b"U": "UPDATE", b"D": "DELETE"}[kind]
            if op == "UPDATE" and old is not None and new is not None:
                new = {**old, **new}  # unchanged TOASTed columns are not in the new tuple
            current.changes.append((topic, op, new, old, False))
        elif kind == b"M":
            message.byte()  # flags (transactional)
            message.number(8)  # its LSN
            prefix = message.string()
            size = message.number(4)
            content = message.data[message.at : message.at + size].decode()
            if prefix == MUTATION_PREFIX:
                current.mutation = content
            elif prefix == TRUNCATE_PREFIX:
                removed = json.loads(content)
                for row in removed["rows"]:
                    current.changes.append((removed["topic"], "DELETE", None, row, True))
    return done


async def append(conn: Conn, transactions: Sequence[Transaction], keys: Mapping[str, str | None]) -> None:
    """Append decoded transactions to the log, rows converted as ``to_jsonb`` writes them.

    Args:
        conn: A connection inside the append's transaction.
        transactions: Committed transactions, in commit order.
        keys: Topic -> its primary key when its ``old`` rows are the key alone (default
            replica identity), else ``None``.
    """
    now = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
    pending: dict[str, list[dict[str, Any]]] = {}
    for tx in transactions:
        for topic, _, new, old, ready in tx.changes:
            rows = pending.setdefault(topic, [])
            if new is not None:
                rows.append(new)
            if old is not None and not ready:
                rows.append(old)
    converted: dict[str, list[str]] = {}
    for topic, rows in pending.items():
        found = await conn.fetch(
            f"SELECT to_jsonb(r)::text FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(v, n), "
            f"LATERAL jsonb_populate_record(NULL::{ident(topic)}, e.v) AS r ORDER BY e.n",
            json.dumps(rows),
        )
        converted[topic] = [r[0] for r in found]
    taken = dict.fromkeys(converted, 0)
    columns: list[list[Any]] = [[], [], [], [], [], [], [], []]
    for tx in transactions:
        xid8 = _xid8(tx.xid, now)
        for topic, op, new, old, ready in tx.changes:
            record = old_row = None
            if new is not None:
                record = converted[topic][taken[topic]]
                taken[topic] += 1
            if old is not None:
                if ready:
                    old_row = json.dumps(old)
                else:
                    old_row = converted[topic][taken[topic]]
                    taken[topic] += 1
                    key = keys.get(topic)
                    if key is not None:  # the default identity: the key alone, not a row of NULLs
                        old_row = json.dumps({key: json.loads(old_row).get(key)})
            for column, value in zip(
                columns,
                (topic, op, record, old_row, tx.timestamp, tx.mutation, xid8, tx.commit_lsn),
                strict=True,
            ):
                column.append(value)
    await conn.execute(
        "INSERT INTO rxstore_changes (topic, op, record, old, ts, mutation, xid, commit_lsn) "
        "SELECT t, o, r::jsonb, p::jsonb, coalesce(s, "
        "extract(epoch FROM clock_timestamp())), m, x, l::pg_lsn "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::text[], "
        "$7::bigint[], $8::text[]) WITH ORDINALITY AS u(t, o, r, p, s, m, x, l, n) ORDER BY n",
        *columns,
    )
    await conn.execute(f"NOTIFY {CHANGES_CHANNEL}")


def _values(columns: Any) -> dict[str, Any] | None:
    """A tuple's columns as the object ``jsonb_populate_record`` reads (every value in its text form)."""
    if not isinstance(columns, list):
        return None
    values: dict[str, Any] = {}
    for column in columns:
        value = column.get("value")
        if column.get("type") in ("json", "jsonb") and isinstance(value, str):
            value = json.loads(value)  # wal2json quotes JSON values; the column wants the JSON itself
        values[column["name"]] = value
    return values


def _xid8(xid: int, now: int) -> int:
    """The 64-bit id of a 32-bit ``xid`` that is older than ``now`` (a 64-bit id)."""
    epoch, low = now >> 32, now & 0xFFFF_FFFF
    if xid > low:
        epoch -= 1
    return (epoch << 32) | xid


CONNECTION_LOST: Final = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
"""What a lost capture connection raises."""


async def sleep_or(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` (then clear it) or ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    event.clear()


def lsn_value(lsn: str) -> int:
    """An LSN's text (``"16/B374D848"``) as an integer, for comparisons."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class CaptureLeader:
    """The capture of one node: leads it while holding :data:`CAPTURE_LOCK_KEY`, else stands by.

    Args:
        url: The database URL.
        slot: The logical slot's name.
        connect: Opens a connection (``asyncpg.connect`` with the log's settings).
        appended: Called after each append committed (the log sequences and wakes its tailers).
        batch: The most changes decoded at once (whole transactions are never cut).
        idle: Longest pause between two reads of an idle slot, in seconds.
    """

    def __init__(
        self,
        slot: str,
        *,
        connect: Any,
        appended: Any,
        batch: int = 5000,
        idle: float = 0.1,
    ) -> None:
        self.slot = slot
        self.connect = connect
        self.appended = appended
        self.batch = batch
        self.idle = idle
        self.leading = False
        """Whether this node holds the lock (reads the slot)."""
        self.lost: str | None = None
        """Why the slot could not be read the last time it was lost (it was made anew)."""
        self.lost_count = 0
        """Slots lost (and made anew) since this node started."""
        self.lag_bytes: int | None = None
        """WAL the slot holds that the capture has not confirmed (measured by the leader)."""
        self.caught_up_at = time.monotonic()
        """When the leader last had nothing left to read."""
        self._kick = asyncio.Event()
        self._wanted = False

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
            "slots_lost": self.lost_count,
            "last_lost": self.lost,
        }

    def want(self) -> None:
        """Ask this node's capture (if it leads) to record its position at once."""
        self._on_wanted()

    async def _lead(self, conn: Any) -> None:
        pause = 0.005
        measured = 0.0
        while True:
            busy = await self.capture_once(conn)
            if not busy:
                self.caught_up_at = time.monotonic()
            if time.monotonic() - measured > 1.0:
                measured = time.monotonic()
                self.lag_bytes = await conn.fetchval(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                    "FROM pg_replication_slots WHERE slot_name = $1",
                    self.slot,
                )
            if busy:
                pause = 0.005
                continue
            await sleep_or(self._kick, pause)
            pause = min(pause * 2, self.idle)

    async def capture_once(self, conn: Any) -> bool:
        """Decode what the slot holds now and append it; whether more may be waiting."""
        upto = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        done = await conn.fetchval("SELECT lsn::text FROM rxstore_capture WHERE singleton")
        wanted, self._wanted = self._wanted, False
        try:
            records = await peek(conn, self.slot, upto, self.batch)
        except (asyncpg.ObjectNotInPrerequisiteStateError, asyncpg.UndefinedObjectError) as exc:
            # The slot was invalidated (its retained WAL was over max_slot_wal_keep_size), or its
            # publication was dropped and made again (a restore): what it held is gone.
            self.lost = str(exc)
            self.lost_count += 1
            _log.error(
                "rxstore: the WAL capture cannot read its slot %s (%s): a new slot captures from now "
                "on; the log gets a new epoch and clients reset and reload",
                self.slot,
                exc,
            )
            await remake_slot(conn, self.slot, drop=True)
            return True
        cut = len(records) >= self.batch
        topics, keys = await _watched(conn)
        decoded = decode(records, topics)
        # Cut by the batch: up to the last whole transaction read; the rest comes next time.
        position = (decoded[-1].commit_lsn if decoded else done) if cut else upto
        after = lsn_value(done)
        changed = [t for t in decoded if t.changes and lsn_value(t.commit_lsn) > after]
        if changed or (wanted and lsn_value(position) > after):
            async with conn.transaction():
                if changed:
                    await append(conn, changed, keys)
                await conn.execute(
                    "UPDATE rxstore_capture SET lsn = greatest(lsn, $1::text::pg_lsn) WHERE singleton",
                    position,
                )
        if records and lsn_value(position) > 0:
            # Only after the append committed: a leader killed before this reads them again.
            await conn.execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)", self.slot, position
            )
        if changed:
            self.appended()
        return cut


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
