"""WAL capture for the PostgreSQL change log: decoding the slot and appending to the log.

In WAL mode no trigger runs inside the users' transactions. A logical
replication slot (PostgreSQL's own output plugin ``pgoutput``) keeps every committed
change of the watched tables, and one *capture leader* among the gateway nodes
(the holder of a session advisory lock; another node takes over when its
connection dies) reads it with ``pg_logical_slot_peek_binary_changes`` and appends
each committed transaction, in commit order, to ``rxstore_changes``, numbered as it
writes them (it holds the sequencer's lock for its transaction: a row is written
once, not written and then numbered as trigger-captured changes are)::

    BEGIN
      peek the slot up to pg_current_wal_flush_lsn(), read in parts through a cursor
      take the sequencer's lock (before the first append)
      INSERT INTO rxstore_changes ... (numbered; rows as to_jsonb gives them, commit xid and LSN)
      UPDATE rxstore_capture SET lsn = <last commit appended>
    COMMIT
    pg_replication_slot_advance(slot, lsn)          -- only after the append committed

The slot's messages are read and decoded a part at a time (:class:`Decoder`), so the
capture holds a bounded number of changes whatever a transaction's size; a transaction
bigger than that waits, converted, in a temporary table until its commit is read
(:class:`~rxstore.gateway.log.postgres.spool.Spool`). All of it is one database
transaction: a transaction reaches the log whole or not at all.

A leader killed between the commit and the advance is harmless: its successor
peeks the same transactions again and skips those at or before the stored
``lsn``, so nothing is lost or appended twice. Rows are converted by the
database itself (``jsonb_populate_record`` then ``to_jsonb``), so a captured
row is byte for byte what the trigger would have written. Mutation ids travel
as transactional logical messages (``pg_logical_emit_message``), and a
``TRUNCATE`` as messages holding the rows it removes, 1,000 a message (a statement
trigger that runs before it), all decoded in their transaction's order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg
import attrs

from rxstore.gateway.log.postgres.schema import SEQ_CHANNEL, SEQUENCER_LOCK_KEY, Conn
from rxstore.gateway.log.sql import ident

__all__ = [
    "CAPTURE_LOCK_KEY",
    "CAPTURE_SCHEMA",
    "MUTATION_PREFIX",
    "NUMBERED_SQL",
    "PEEK_SQL",
    "PLUGIN",
    "PUBLICATION",
    "TRUNCATE_PREFIX",
    "WANTED_CHANNEL",
    "Decoder",
    "Transaction",
    "append",
    "begin_numbering",
    "decode",
    "lsn_value",
    "peek",
    "rows",
    "slot_name",
    "xid8_of",
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

-- WAL mode: a TRUNCATE is transactional messages with the rows it removes (no row event exists),
-- 1,000 rows or 4 MB a message at most: a big table is no single huge value (jsonb's 256 MB limit).
CREATE OR REPLACE FUNCTION rxstore_capture_truncate_message() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    part jsonb[] := '{}';
    size bigint := 0;
BEGIN
    FOR r IN EXECUTE format('SELECT to_jsonb(t) AS v FROM %I.%I AS t', TG_TABLE_SCHEMA, TG_TABLE_NAME) LOOP
        part := part || r.v;
        size := size + pg_column_size(r.v);
        IF cardinality(part) >= 1000 OR size >= 4194304 THEN
            PERFORM pg_logical_emit_message(true, 'rxstore.truncate',
                jsonb_build_object('topic', TG_ARGV[0], 'rows', to_jsonb(part))::text);
            part := '{}';
            size := 0;
        END IF;
    END LOOP;
    IF cardinality(part) > 0 THEN
        PERFORM pg_logical_emit_message(true, 'rxstore.truncate',
            jsonb_build_object('topic', TG_ARGV[0], 'rows', to_jsonb(part))::text);
    END IF;
    RETURN NULL;
END
$fn$;
"""


def lsn_value(lsn: str) -> int:
    """An LSN's text (``"16/B374D848"``) as an integer, for comparisons."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


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
    """``(topic, op, new values, old values, old is converted)`` in order, those not spooled yet."""
    spooled: int = 0
    """Its changes spooled already (:class:`~rxstore.gateway.log.postgres.spool.Spool`)."""


PEEK_SQL: Final = (
    "SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_binary_changes("
    "$1, $2::text::pg_lsn, $3, 'proto_version', '1', 'publication_names', $4, 'messages', 'true')"
)
"""The slot's messages up to an LSN, whole transactions, about a number of messages (the server
stops after the first commit past it: one transaction's messages all come at its commit)."""


async def peek(conn: Conn, slot: str, upto: str, limit: int) -> list[Any]:
    """The slot's messages up to ``upto`` (whole transactions, about ``limit`` changes at most)."""
    return list(await conn.fetch(PEEK_SQL, slot, upto, limit, PUBLICATION))


_JSON_TYPES: Final = frozenset({114, 3802})
"""Type oids of ``json`` and ``jsonb``: their text is the JSON value itself."""
_PG_EPOCH: Final = 946_684_800.0
"""2000-01-01 in Unix seconds: pgoutput's timestamps count microseconds from it."""


class RawJSON(str):
    """A ``json``/``jsonb`` value's own text, spliced into the row as it is.

    Never decoded and encoded again: a number keeps every digit, ``2.50`` stays ``2.50``.
    """


def _object(values: Mapping[str, Any]) -> str:
    """``values`` as a JSON object, :class:`RawJSON` values spliced in as they are."""
    return (
        "{"
        + ",".join(
            json.dumps(name) + ":" + (value if type(value) is RawJSON else json.dumps(value))
            for name, value in values.items()
        )
        + "}"
    )


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
                values[name] = RawJSON(text) if type_oid in _JSON_TYPES else text
            # b"u": an unchanged TOASTed value, left out (the old row fills it in)
        return values


class Decoder:
    """Groups the slot's pgoutput messages into committed transactions of the watched ``topics``.

    Fed a peek's messages in order, one (:meth:`take`) or a part (:meth:`feed`) at a time; the transaction
    whose commit is not read yet is :attr:`current`. Values stay in their text form
    (``jsonb_populate_record`` reads them with each type's own input function, so nothing is
    rounded or lost).

    Args:
        topics: Watched table -> topic (the same name; the table's schema is not part of it).
    """

    def __init__(self, topics: Mapping[str, str]) -> None:
        self.topics = topics
        self.current: Transaction | None = None
        """The transaction being read (its commit not read yet)."""
        self._relations: dict[int, tuple[str | None, list[tuple[str, int]]]] = {}

    def feed(self, records: Sequence[Any]) -> list[Transaction]:
        """Decode the next ``(lsn, xid, data)`` rows of :data:`PEEK_SQL`; the transactions they commit."""
        return [tx for record in records if (tx := self.take(record)) is not None]

    def take(self, record: Any) -> Transaction | None:
        """Decode the next ``(lsn, xid, data)`` row of :data:`PEEK_SQL`; the transaction it commits."""
        lsn, _, data = record
        kind = data[0:1]
        if kind == b"B":
            message = _Message(bytes(data))
            message.number(8)  # final LSN
            stamp = message.number(8)
            self.current = Transaction(xid=message.number(4), timestamp=_PG_EPOCH + stamp / 1e6)
        elif kind == b"R":
            self._relation(_Message(bytes(data)))
        elif self.current is None:
            pass  # a transaction cut before its BEGIN: read again next time
        elif kind == b"C":
            done, self.current = self.current, None
            done.commit_lsn = lsn
            return done
        elif kind in (b"I", b"U", b"D"):
            self._change(self.current, kind, _Message(bytes(data)))
        elif kind == b"M":
            self._message(self.current, _Message(bytes(data)))
        return None

    def _relation(self, message: _Message) -> None:
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
        self._relations[relation] = (self.topics.get(table), columns)

    def _change(self, tx: Transaction, kind: bytes, message: _Message) -> None:
        topic, columns = self._relations[message.number(4)]
        old = new = None
        marker = message.byte()
        if marker in (b"K", b"O"):
            old = message.row(columns)
            marker = message.byte() if kind == b"U" else b""
        if marker == b"N":
            new = message.row(columns)
        if topic is None:
            return
        op = {b"I": "INSERT", b"U": "UPDATE", b"D": "DELETE"}[kind]
        if op == "UPDATE" and old is not None and new is not None:
            new = {**old, **new}  # unchanged TOASTed columns are not in the new tuple
        tx.changes.append((topic, op, new, old, False))

    @staticmethod
    def _message(tx: Transaction, message: _Message) -> None:
        message.byte()  # flags (transactional)
        message.number(8)  # its LSN
        prefix = message.string()
        size = message.number(4)
        content = message.data[message.at : message.at + size].decode()
        if prefix == MUTATION_PREFIX:
            tx.mutation = content
        elif prefix == TRUNCATE_PREFIX:
            removed = json.loads(content)
            for row in removed["rows"]:
                tx.changes.append((removed["topic"], "DELETE", None, row, True))


def decode(records: Sequence[Any], topics: Mapping[str, str]) -> list[Transaction]:
    """The committed transactions of the watched ``topics`` in ``records`` (:class:`Decoder`, all at once)."""
    return Decoder(topics).feed(records)


async def rows(
    conn: Conn, transactions: Sequence[Transaction], keys: Mapping[str, str | None]
) -> list[list[Any]]:
    """The log's columns for the transactions' changes, rows converted as ``to_jsonb`` writes them.

    Args:
        conn: A connection inside the append's transaction.
        transactions: Committed transactions (or a part of one), in commit order.
        keys: Topic -> its primary key when its ``old`` rows are the key alone (default
            replica identity), else ``None``.

    Returns:
        ``[topics, ops, records, olds, timestamps, mutations, xids, commit LSNs]``, a change a row.
    """
    now = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
    pending: dict[str, list[dict[str, Any]]] = {}
    for tx in transactions:
        for topic, _, new, old, ready in tx.changes:
            values = pending.setdefault(topic, [])
            if new is not None:
                values.append(new)
            if old is not None and not ready:
                values.append(old)
    converted = {topic: await _convert(conn, topic, values) for topic, values in pending.items()}
    taken = dict.fromkeys(converted, 0)
    columns: list[list[Any]] = [[], [], [], [], [], [], [], []]
    for tx in transactions:
        xid8 = xid8_of(tx.xid, now)
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
            elif op == "UPDATE" and record is not None and keys.get(topic) is not None:
                # The default identity logs no old tuple when the key did not change: it is the new key.
                key = keys[topic]
                old_row = json.dumps({key: json.loads(record).get(key)})
            for column, value in zip(
                columns,
                (topic, op, record, old_row, tx.timestamp, tx.mutation, xid8, tx.commit_lsn),
                strict=True,
            ):
                column.append(value)
    return columns


NUMBERED_SQL: Final = (
    "WITH h AS (UPDATE rxstore_head SET seq = seq + {count} WHERE singleton "
    "RETURNING seq - {count} AS base, pg_notify('" + SEQ_CHANNEL + "', seq::text)) "
    "INSERT INTO rxstore_changes (seq, topic, op, record, old, ts, mutation, xid, commit_lsn) {rows}"
)
"""An append that numbers its rows as it writes them (the rows' ``SELECT`` gives ``h.base + n`` first).

The head moves and ``rxstore_seq`` is notified (sent at commit) in the same statement: a
row is written once, never updated by the sequencer afterwards."""


async def begin_numbering(conn: Conn) -> None:
    """Take the sequencer's lock for the rest of the transaction; number what waits unnumbered first.

    The capture leader appends in log order, so it numbers its rows itself
    (:data:`NUMBERED_SQL`). Rows without a seq (written by triggers before the log
    moved to WAL capture) get theirs first, so seqs keep following commit order.
    """
    await conn.execute(f"SELECT pg_advisory_xact_lock({SEQUENCER_LOCK_KEY})")
    while await conn.fetchval("SELECT rxstore_sequence(10000)") >= 10000:
        pass


async def append(conn: Conn, transactions: Sequence[Transaction], keys: Mapping[str, str | None]) -> None:
    """Append decoded transactions to the log (:func:`rows`), numbered, in one statement.

    In a transaction that called :func:`begin_numbering`.
    """
    columns = await rows(conn, transactions, keys)
    await conn.execute(
        NUMBERED_SQL.format(
            count="$9::bigint",
            rows="SELECT h.base + u.n, t, o, r::jsonb, p::jsonb, coalesce(s, "
            "extract(epoch FROM clock_timestamp())), m, x, l::pg_lsn "
            "FROM h, unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::text[], "
            "$7::bigint[], $8::text[]) WITH ORDINALITY AS u(t, o, r, p, s, m, x, l, n) ORDER BY u.n",
        ),
        *columns,
        len(columns[0]),
    )


async def _convert(conn: Conn, topic: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows as ``to_jsonb`` gives them, read by the table's types (its current shape).

    A row the table's types cannot read any more (a column's type changed since it
    was written) is kept as the text values it was written with, and logged: the
    capture must never stop on one row.
    """
    sql = (
        f"SELECT to_jsonb(r)::text FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(v, n), "
        f"LATERAL jsonb_populate_record(NULL::{ident(topic)}, e.v) AS r ORDER BY e.n"
    )
    texts = [_object(row) for row in rows]
    try:
        async with conn.transaction():  # a savepoint: a failure must not end the append
            return [r[0] for r in await conn.fetch(sql, "[" + ",".join(texts) + "]")]
    except asyncpg.DataError:
        pass
    converted = []
    for text in texts:
        try:
            async with conn.transaction():
                converted.append(await conn.fetchval(sql, "[" + text + "]"))
        except asyncpg.DataError as exc:
            _log.warning("rxstore: a %s row no longer fits its table (%s); logged as written", topic, exc)
            converted.append(text)
    return converted


def xid8_of(xid: int, now: int) -> int:
    """The 64-bit id of a 32-bit ``xid`` that is older than ``now`` (a 64-bit id)."""
    epoch, low = now >> 32, now & 0xFFFF_FFFF
    if xid > low:
        epoch -= 1
    return (epoch << 32) | xid
