"""Retention for the PostgreSQL change log: removing a prefix of the log, moving its horizon.

:meth:`~rxstore.gateway.log.postgres.changelog.PostgresChangeLog.trim` runs :func:`trim_prefix`
in one transaction. Only sequenced changes are removed, and only a prefix: a
change is kept if any older change is kept, so ``seq > cursor`` never skips.
"""

from __future__ import annotations

from rxstore.gateway.log.postgres.schema import Conn

__all__ = ["trim_prefix"]


async def trim_prefix(conn: Conn, max_age: float | None, max_rows: int | None) -> int:
    """Delete changes older than ``max_age`` seconds or beyond the newest ``max_rows``; in a transaction.

    With ``max_age``, mutation ids older than it are forgotten too. The horizon
    becomes the highest trimmed seq.

    Returns:
        The number of changes removed.
    """
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
    status = await conn.execute("DELETE FROM rxstore_changes WHERE seq IS NOT NULL AND seq <= $1", cutoff)
    removed = int(status.split()[-1])
    if max_age is not None:  # mutation ids are remembered as long as changes are
        await conn.execute(
            "DELETE FROM rxstore_mutations WHERE applied_at < extract(epoch FROM now()) - $1",
            float(max_age),
        )
    if removed:
        await conn.execute("UPDATE rxstore_head SET horizon = greatest(horizon, $1) WHERE singleton", cutoff)
    return removed
