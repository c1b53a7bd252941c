"""Scenario 1: the gateway is kill -9'd mid-stream and restarted on its port; clients resume."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import SqliteDb, SqliteWriter, assert_clean, recovery, settle, summarize
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

DOWN = 1.0
"""Seconds the gateway stays dead while the writer keeps writing."""


async def test_gateway_kill_9_mid_stream_clients_resume_exactly_once(cluster, recorder, tmp_path) -> None:
    """Three clients follow posts while a writer writes into SQLite; the gateway process is
    killed with SIGKILL mid-stream and started again on the same port one second later. Every
    client reconnects with its cursor and gets the missed changes once, in order, then live ones."""
    db = SqliteDb(tmp_path / "app.db")
    gateway = cluster.gateway(db.url)
    await gateway.start()
    await db.install_oracle()
    clients = await cluster.clients(3, gateway.url)
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")
    writer = cluster.writer(SqliteWriter(db.path, rate=200))
    await wait_for(lambda: all(c.seq >= 100 for c in clients), 15, "clients following the stream")

    fault_start = time.monotonic()
    written_before = writer.written
    gateway.kill()
    await asyncio.sleep(DOWN)  # the writer keeps writing into the database
    missed = writer.written - written_before
    fault_end = await gateway.start()
    marker_written = await db.write_marker("back")
    await wait_for(lambda: all("back" in c.markers for c in clients), 20, "clients caught up after restart")
    live_s, caught_up_s = recovery(
        clients, fault_start=fault_start, fault_end=fault_end, marker="back", marker_written=marker_written
    )
    await asyncio.sleep(1.0)  # paces the check: the writer's live changes after the restart are in it
    outcome = await settle(db, clients, [writer])

    recorder.record(
        summarize(
            "1-gateway-kill-9",
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=live_s,
            caught_up_s=caught_up_s,
            extra={
                "down_s": DOWN,
                "written_while_down": missed,
                "reconnects": sum(c.reconnects for c in outcome.counts),
            },
        )
    )
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
    assert all(c.reconnects >= 1 for c in outcome.counts)
    assert all(c.resets == 0 for c in outcome.counts)
