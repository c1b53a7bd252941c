"""A gateway overloaded on purpose: ``max_pending_syncs=1`` and one client stuck in its snapshot.

The pending client is real: it connects to a table of ~8 MB and never reads,
so its snapshot stays under way until it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from rxstore.gateway.server import RealtimeGateway
from tests.faults.harness import StalledClient
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

RETRY_AFTER = 1.0
ROWS = 400


def write_big_table(path: Path) -> None:
    """~8 MB of posts in one transaction: more than the sockets between a stalled client and us hold."""
    rows = [(f"r{i:04d}", f"r {i}", os.urandom(10_000).hex()) for i in range(ROWS)]
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO posts (id, title, body) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")


@contextlib.asynccontextmanager
async def overloaded_gateway(tmp_path: Path) -> AsyncIterator[tuple[RealtimeGateway, StalledClient]]:
    """A gateway with ``max_pending_syncs=1`` and one client stuck in its snapshot."""
    gateway = await start_gateway(
        f"sqlite:///{tmp_path}/app.db", max_pending_syncs=1, shed_retry_after=RETRY_AFTER
    )
    stalled = StalledClient(gateway.port, AUTH.issue("mallory"))
    try:
        await asyncio.to_thread(write_big_table, tmp_path / "app.db")
        await asyncio.to_thread(stalled.connect)
        await wait_for(lambda: gateway.sync.pending == 1, what="the stalled client's snapshot under way")
        yield gateway, stalled
    finally:
        stalled.close()
        await gateway.stop()
