"""Scenario 2: every client link is cut at a TCP proxy for 0.1 s, 2 s and 30 s.

The 30 s cut outlasts the log's retention (the gateway keeps 50 changes,
trimmed every 0.5 s): returning clients get a reset and a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import SqliteDb, SqliteWriter, assert_clean, recovery, settle, summarize
from tests.waiting import wait_for

RETENTION = ["--retention-rows", "50", "--retention-interval", "0.5"]


@pytest.mark.parametrize(
    ("outage", "new_links", "retention"),
    [
        pytest.param(0.1, "refuse", False, id="0.1s", marks=pytest.mark.timeout(60)),
        pytest.param(2.0, "blackhole", False, id="2s", marks=pytest.mark.timeout(60)),
        pytest.param(30.0, "refuse", True, id="30s-beyond-retention", marks=pytest.mark.timeout(120)),
    ],
)
async def test_cut_every_client_link(cluster, recorder, tmp_path, outage, new_links, retention) -> None:
    """Three clients reach the gateway through a TCP proxy while a writer writes into SQLite.
    The proxy aborts every link and, for ``outage`` seconds, refuses new ones (or, for 2 s,
    accepts and holds them silently). After it forwards again, every client ends equal to the
    database with no change lost, applied twice or out of order; after the 30 s cut, whose
    missed changes were trimmed from the log, through the reset + snapshot path."""
    db = SqliteDb(tmp_path / "app.db")
    gateway = cluster.gateway(db.url, args=RETENTION if retention else [])
    await gateway.start()
    await db.install_oracle()
    proxy = await cluster.proxy(gateway.port)
    clients = await cluster.clients(3, f"http://127.0.0.1:{proxy.port}")
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")
    writer = cluster.writer(SqliteWriter(db.path, rate=200))
    await wait_for(lambda: all(c.seq >= 100 for c in clients), 15, "clients following the stream")

    fault_start = time.monotonic()
    seq_at_cut = min(c.seq for c in clients)
    proxy.cut(new=new_links)
    await wait_for(lambda: not any(c.root.connection_state.connected for c in clients), 5, "clients cut off")
    await asyncio.sleep(max(0.0, outage - (time.monotonic() - fault_start)))  # the outage's length
    horizon = await db.horizon()
    proxy.restore()
    fault_end = time.monotonic()
    marker_written = await db.write_marker("back")
    await wait_for(lambda: all("back" in c.markers for c in clients), 30, "clients caught up after the cut")
    live_s, caught_up_s = recovery(
        clients, fault_start=fault_start, fault_end=fault_end, marker="back", marker_written=marker_written
    )
    await asyncio.sleep(1.0)  # paces the check: the writer's live changes after recovery are in it
    outcome = await settle(db, clients, [writer])

    scenario = f"2-proxy-cut-{outage:g}s" + ("-beyond-retention" if retention else "")
    recorder.record(
        summarize(
            scenario,
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=live_s,
            caught_up_s=caught_up_s,
            extra={
                "outage_s": outage,
                "new_links": new_links,
                "cursor_at_cut": seq_at_cut,
                "horizon_at_restore": horizon,
                "refused": proxy.refused,
                "held": proxy.held,
            },
        )
    )
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
    assert all(c.reconnects >= 1 for c in outcome.counts)
    if retention:
        assert horizon > seq_at_cut, "the log was not trimmed past the clients' cursors"
        assert all(c.resets >= 1 and c.snapshots >= 2 for c in outcome.counts), "reset path not taken"
    else:
        assert all(c.resets == 0 and c.snapshots == 1 for c in outcome.counts)
