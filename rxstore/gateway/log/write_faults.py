"""The database refusing writes for a while (full disk, read-only, a lock held elsewhere, down).

Such a failure is the storage's, not the request's: a mutation that meets it is answered
``unavailable`` with a ``retry_after`` (the client resends it with the same id, so it is
applied once when the database takes writes again), and ``/healthz`` says since when the
gateway's writes fail and why, until one succeeds.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from rxstore.protocol.errors import sqlite_storage_fault

__all__ = ["WriteFaults", "storage_fault"]

_POSTGRES_FAULT_STATES = ("08", "53", "57P", "25006", "55P03", "40001", "40P01")
"""SQLSTATE prefixes of the same in PostgreSQL: connection, insufficient resources (disk full),
operator intervention (shutdown, recovery), read-only transaction, lock not available,
serialization failure, deadlock."""


def storage_fault(exc: BaseException) -> str | None:
    """One line saying why the database cannot take writes now, or ``None`` if ``exc`` is not that.

    Example:
        >>> storage_fault(sqlite3.OperationalError("database or disk is full"))
        'database or disk is full'
        >>> storage_fault(sqlite3.IntegrityError("UNIQUE constraint failed: posts.id")) is None
        True
    """
    if isinstance(exc, sqlite3.OperationalError):
        return sqlite_storage_fault(exc)
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg's PostgresError
    if isinstance(sqlstate, str):
        return f"{exc} (SQLSTATE {sqlstate})" if sqlstate.startswith(_POSTGRES_FAULT_STATES) else None
    if isinstance(exc, ConnectionError | TimeoutError) or type(exc).__name__ in (
        "ConnectionDoesNotExistError",  # asyncpg: closed under the query (terminated, restarted)
        "InterfaceError",
        "InternalClientError",  # asyncpg: "cannot switch to state ...", a connection terminated mid-use
    ):
        return f"the database connection failed: {exc or type(exc).__name__}"
    return None


class WriteFaults:
    """The gateway's own writes (mutations): whether they fail now, since when and why."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.since: float | None = None
        self.failures = 0
        """Writes that failed in a row (0 once one succeeds)."""

    def failed(self, reason: str) -> None:
        """Count a write the database refused for ``reason``."""
        if self.since is None:
            self.since = time.time()
        self.reason = reason
        self.failures += 1

    def succeeded(self) -> None:
        """A write went through: the database takes writes again."""
        if self.failures:
            self.reason = self.since = None
            self.failures = 0

    def status(self) -> dict[str, Any] | None:
        """What ``/healthz`` shows: ``None`` while writes succeed."""
        if self.since is None:
            return None
        return {
            "error": self.reason,
            "failing_for_s": round(time.time() - self.since, 1),
            "failures": self.failures,
        }
