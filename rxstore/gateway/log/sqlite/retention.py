"""Retention for the SQLite change log: removing a prefix of the log, reading its horizon.

Runs on the log's worker thread, given its :class:`sqlite3.Connection`. Only a
prefix of the log is removed: a change is kept if any older change is kept, so
``seq > cursor`` never skips.
"""

from __future__ import annotations

import sqlite3

from rxstore.gateway.log.sqlite.schema import NOW, write_transaction

__all__ = ["horizon_sync", "trim_sync"]


def horizon_sync(conn: sqlite3.Connection) -> int:
    """Return the highest seq ever trimmed."""
    return int(conn.execute("SELECT value FROM rxstore_meta WHERE key = 'horizon'").fetchone()[0])


def trim_sync(conn: sqlite3.Connection, max_age: float | None, max_rows: int | None) -> int:
    """Delete changes older than ``max_age`` seconds or beyond the newest ``max_rows``, in one transaction.

    With ``max_age``, mutation ids older than it are forgotten too. The horizon
    becomes the highest trimmed seq.

    Returns:
        The number of changes removed.
    """
    with write_transaction(conn):
        cutoff = 0
        if max_rows is not None:
            row = conn.execute(
                "SELECT seq FROM rxstore_changes ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (max_rows,),
            ).fetchone()
            if row:
                cutoff = row[0]
        if max_age is not None:
            # The oldest change young enough to keep; everything before it goes.
            row = conn.execute(
                f"SELECT seq FROM rxstore_changes WHERE ts >= {NOW} - ? ORDER BY seq LIMIT 1",
                (max_age,),
            ).fetchone()
            if row:
                cutoff = max(cutoff, row[0] - 1)
            else:
                last = conn.execute("SELECT max(seq) FROM rxstore_changes").fetchone()[0]
                cutoff = max(cutoff, last or 0)
        removed = conn.execute("DELETE FROM rxstore_changes WHERE seq <= ?", (cutoff,)).rowcount
        if max_age is not None:  # mutation ids are remembered as long as changes are
            conn.execute(f"DELETE FROM rxstore_mutations WHERE applied_at < {NOW} - ?", (max_age,))
        if removed:
            conn.execute(
                "UPDATE rxstore_meta SET value = max(value, ?) WHERE key = 'horizon'",
                (cutoff,),
            )
    return int(removed)
