"""The PostgreSQL change log's schema, identity and connection plumbing.

The log's tables and functions (capture triggers, the sequencer function) are
created by :data:`SCHEMA` under an advisory lock, so nodes that open the same
database at once do not race. See :mod:`rxstore.gateway.log.postgres.changelog` for how the
sequencer numbers committed changes.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg

from rxstore.gateway.codec import load_json

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "CHANGES_CHANNEL",
    "CONNECTION_ERRORS",
    "SCHEMA",
    "SCHEMA_LOCK_KEY",
    "SEQUENCER_LOCK_KEY",
    "SEQ_CHANNEL",
    "Conn",
    "ensure_epoch",
    "init_connection",
    "redact",
]

_log = logging.getLogger("rxstore.gateway.postgres")

SEQUENCER_LOCK_KEY: Final = 0x7278_7374_6F72_6531
"""Advisory lock held by the (one) running sequencer transaction (``rxstore1``)."""
SCHEMA_LOCK_KEY: Final = 0x7278_7374_6F72_6532
"""Advisory lock serializing schema creation and ``watch`` DDL (``rxstore2``)."""

CHANGES_CHANNEL: Final = "rxstore_changes"
"""NOTIFY channel of the capture trigger: unsequenced changes were committed."""
SEQ_CHANNEL: Final = "rxstore_seq"
"""NOTIFY channel of the sequencer: new seqs are readable."""

SCHEMA: Final = f"""
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

CONNECTION_ERRORS: Final = (
    OSError,  # refused, reset, timeouts
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def redact(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def _origin(conn: Conn) -> tuple[str | None, int]:
    """The cluster's system identifier (``None`` if this role may not read it) and the database's oid."""
    database = await conn.fetchval("SELECT oid::bigint FROM pg_database WHERE datname = current_database()")
    try:
        async with conn.transaction():  # a savepoint: a refusal must not abort the caller's transaction
            system = await conn.fetchval("SELECT system_identifier::text FROM pg_control_system()")
    except asyncpg.InsufficientPrivilegeError:
        system = None
    return system, int(database)


async def ensure_epoch(conn: Conn, *, replace: bool) -> None:
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


async def init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Decode ``json``/``jsonb`` values to Python objects (and encode them from those)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=load_json, schema="pg_catalog")
