"""Watching a table in the PostgreSQL change log: the checks, the registration, the capture DDL.

:meth:`~rxstore.gateway.log.postgres.changelog.PostgresChangeLog.watch` runs :func:`watch_table`
in one transaction, under :data:`~rxstore.gateway.log.postgres.schema.SCHEMA_LOCK_KEY`, so
nodes that watch at once do not race.
"""

from __future__ import annotations

from rxstore.gateway.log.postgres.capture import watch_wal
from rxstore.gateway.log.postgres.schema import SCHEMA_LOCK_KEY, Conn
from rxstore.gateway.log.sql import ident, literal

__all__ = ["watch_table"]


async def watch_table(conn: Conn, table: str, primary_key: str, *, wal: bool, full: bool) -> None:
    """Register ``table`` (key ``primary_key``) and install its capture; in a transaction.

    With ``wal``, the table gets its replica identity (``full``: whole old rows)
    and the statement trigger for ``TRUNCATE``; else the capture triggers.

    Raises:
        ValueError: The table does not exist or has no column ``primary_key``.
    """
    await conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
    row = await conn.fetchrow(
        "SELECT c.oid::bigint AS oid, c.relkind::text AS kind FROM pg_class c WHERE c.oid = to_regclass($1)",
        ident(table),
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
    if wal:
        await watch_wal(conn, table, full=full)
        return
    await conn.execute(
        f"CREATE OR REPLACE TRIGGER rxstore_capture "
        f"AFTER INSERT OR UPDATE OR DELETE ON {ident(table)} "
        f"FOR EACH ROW EXECUTE FUNCTION rxstore_capture({literal(table)})"
    )
    await conn.execute(
        f"CREATE OR REPLACE TRIGGER rxstore_capture_truncate "
        f"BEFORE TRUNCATE ON {ident(table)} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION rxstore_capture_truncate({literal(table)})"
    )
