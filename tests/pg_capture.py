"""Holding PostgreSQL's WAL capture leader at a chosen instant, to kill it there (tests only).

- :func:`capture_pid`: the leader's backend (the holder of its session advisory lock).
- :func:`wait_blocked_by`: wait until a backend waits on a lock that another one holds
  (the test holds ``rxstore_capture``'s row: the capture's append waits on it, uncommitted).
- :func:`syncrep_hold`: commits wait for a synchronous standby that never comes, so the
  capture's append is committed (locally) and its slot not yet advanced while it waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from rxstore.gateway.log.postgres.decode import CAPTURE_LOCK_KEY
from tests.waiting import wait_for

__all__ = ["LOCK_HOLDER", "capture_pid", "syncrep_hold", "wait_blocked_by"]

LOCK_HOLDER = (
    "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1"
)
"""The backend holding the capture leader's session advisory lock (a bigint key: classid = high
32 bits, objid = low 32 bits, objsubid = 1)."""


async def capture_pid(conn: Any) -> int | None:
    """The capture leader's backend pid (the holder of CAPTURE_LOCK_KEY), or None."""
    pid = await conn.fetchval(LOCK_HOLDER, CAPTURE_LOCK_KEY >> 32, CAPTURE_LOCK_KEY & 0xFFFF_FFFF)
    return None if pid is None else int(pid)


async def wait_blocked_by(admin: Any, pid: int, holder: int, what: str, timeout: float = 10.0) -> None:
    """Wait until backend ``pid`` waits on a lock that backend ``holder`` holds."""
    await wait_for(
        lambda: admin.fetchval("SELECT $2::int = ANY(pg_blocking_pids($1))", pid, holder), timeout, what
    )


@contextlib.asynccontextmanager
async def syncrep_hold(admin: Any, pid: int, timeout: float = 10.0) -> AsyncIterator[None]:
    """Hold backend ``pid`` in a commit's wait for a synchronous standby (committed locally).

    Every commit waits while this is on (``synchronous_standby_names`` names a standby that
    never comes); the other backends' waits are cancelled as they come (their commits complete
    with a warning, releasing the locks they hold) until ``pid`` waits there itself.
    """
    await admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'rxstore_test_never'")
    await admin.execute("SELECT pg_reload_conf()")
    cancelled: set[tuple[int, Any]] = set()  # once per (backend, transaction): never a later query
    try:

        async def held() -> bool:
            if await admin.fetchval(
                "SELECT wait_event = 'SyncRep' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                return True
            waiting = await admin.fetch(
                "SELECT pid, xact_start FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event = 'SyncRep' AND pid <> $1",
                pid,
            )
            for other in waiting:
                if (other["pid"], other["xact_start"]) not in cancelled:
                    cancelled.add((other["pid"], other["xact_start"]))
                    await admin.execute("SELECT pg_cancel_backend($1)", other["pid"])
            return False

        await wait_for(held, timeout, "the capture's append committed, waiting (SyncRep)")
        yield
    finally:
        await admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
        await admin.execute("SELECT pg_reload_conf()")
