"""Scenario 3: PostgreSQL restarts mid-stream under a gateway serving its change log."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import (
    PostgresDb,
    PostgresWriter,
    assert_clean,
    recovery,
    settle,
    summarize,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres


async def _watch_health(gateway, seen: list[tuple[float, str]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        health = await gateway.health()
        state = "no-answer" if health is None else health[1].get("log", "?")
        if not seen or seen[-1][1] != state:
            seen.append((time.monotonic(), state))
        await asyncio.sleep(0.02)


def _restart(server, mode: str, down: float) -> None:
    server.stop(mode)
    time.sleep(down)  # the specified outage: the writer and the gateway keep failing meanwhile
    server.start()


@pytest.mark.parametrize(
    ("mode", "down"),
    [pytest.param("fast", 0.0, id="fast-restart"), pytest.param("immediate", 2.0, id="crash-2s-down")],
)
@pytest.mark.timeout(90)
async def test_postgres_restart_mid_stream(cluster, recorder, own_postgres, mode, down) -> None:
    """Three clients follow posts through a gateway on PostgreSQL while a writer writes into it;
    PostgreSQL is restarted mid-stream: ``pg_ctl restart -m fast``, or killed
    (``-m immediate``, a crash) and started again 2 s later. The gateway notices
    (``/healthz`` says the log is down), reconnects, sequences what was committed before the
    outage, and every client ends equal to the database with no change lost, applied twice
    or out of order, without ever dropping its socket."""
    db = PostgresDb(own_postgres.create_database())
    gateway = cluster.gateway(db.url)
    await gateway.start()
    clients = await cluster.clients(3, gateway.url)
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")
    writer = cluster.writer(PostgresWriter(db.url, rate=200))
    await wait_for(lambda: all(c.seq >= 100 for c in clients), 15, "clients following the stream")

    seen: list[tuple[float, str]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_health(gateway, seen, stop))
    fault_start = time.monotonic()
    await asyncio.to_thread(_restart, own_postgres, mode, down)
    fault_end = time.monotonic()
    marker_written = await db.write_marker("back")
    await wait_for(lambda: all("back" in c.markers for c in clients), 30, "clients caught up after restart")
    live_s, caught_up_s = recovery(
        clients, fault_start=fault_start, fault_end=fault_end, marker="back", marker_written=marker_written
    )
    await wait_for(lambda: bool(seen) and seen[-1][1] == "up", 10, "gateway reports the log up")
    stop.set()
    await watcher
    await asyncio.sleep(1.0)  # paces the check: the writer's live changes after recovery are in it
    outcome = await settle(db, clients, [writer])

    states = [state for _, state in seen]
    down_at = next((at for at, state in seen if state == "down"), None)
    up_again = next(
        (at for at, state in seen if state == "up" and down_at is not None and at > down_at), None
    )
    recorder.record(
        summarize(
            f"3-postgres-{'restart-fast' if not down else f'crash-{down:g}s-down'}",
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=live_s,
            caught_up_s=caught_up_s,
            extra={
                "restart_s": round(fault_end - fault_start, 2),
                "healthz_log": "->".join(states),
                "healthz_up_after_restart_s": None
                if up_again is None
                else round(max(0.0, up_again - fault_end), 2),
                "writer_errors": writer.errors,
                "client_reconnects": sum(c.reconnects for c in outcome.counts),
            },
        )
    )
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
    assert "down" in states and states[-1] == "up", f"/healthz never reported the log down: {seen}"
    assert all(c.reconnects == 0 for c in outcome.counts), "clients lost their socket"
