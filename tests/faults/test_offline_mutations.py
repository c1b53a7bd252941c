"""Scenario 7: a client offline for 10 s queues 50 mutations; all are applied once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest

from tests.faults.harness import SqliteDb, SqliteWriter, assert_clean, recovery, settle, summarize
from tests.waiting import wait_for

OFFLINE = 10.0
MUTATIONS = 50


@pytest.mark.timeout(90)
async def test_50_mutations_queued_offline_for_10s_apply_once_in_order(cluster, recorder, tmp_path) -> None:
    """Three clients reach the gateway through a TCP proxy while a writer writes into SQLite.
    The proxy cuts every link for 10 s; meanwhile client ``c0`` (user ann) calls
    ``root.mutate("save_post", ...)`` 50 times (the demo schema's mutation; titles m1..m50 over
    five post ids, so later ones overwrite earlier ones). After the link is back, every
    mutation is acknowledged, the log holds exactly one change per mutation, in the order they
    were queued, each carrying its own mutation id, and every client ends equal to the database
    with no change lost, applied twice or out of order."""
    db = SqliteDb(tmp_path / "app.db")
    gateway = cluster.gateway(db.url)
    await gateway.start()
    await db.install_oracle()
    proxy = await cluster.proxy(gateway.port)
    clients = await cluster.clients(3, f"http://127.0.0.1:{proxy.port}", user="ann", call_timeout=60.0)
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")
    writer = cluster.writer(SqliteWriter(db.path, rate=100))
    await wait_for(lambda: all(c.seq >= 50 for c in clients), 15, "clients following the stream")
    author = clients[0]

    fault_start = time.monotonic()
    proxy.cut()
    await wait_for(lambda: not author.root.connection_state.connected, 5, "client offline")
    queued = [
        asyncio.ensure_future(
            author.root.mutate("save_post", {"id": f"q{i % 5}", "title": f"m{i}", "likes": i}, timeout=60)
        )
        for i in range(1, MUTATIONS + 1)
    ]
    with contextlib.suppress(AssertionError):  # the depth is reported (and asserted) below
        await wait_for(lambda: author.root.metrics.outbox_depth >= MUTATIONS, 5, "the outbox filled")
    depth_offline = author.root.metrics.outbox_depth
    assert not any(f.done() for f in queued), "a mutation finished while offline"
    await asyncio.sleep(max(0.0, OFFLINE - (time.monotonic() - fault_start)))  # the outage's length
    proxy.restore()
    fault_end = time.monotonic()
    marker_written = await db.write_marker("back")
    results = await asyncio.wait_for(asyncio.gather(*queued), 30)
    acked_s = time.monotonic() - fault_end
    await wait_for(lambda: all("back" in c.markers for c in clients), 20, "clients caught up")
    live_s, caught_up_s = recovery(
        clients, fault_start=fault_start, fault_end=fault_end, marker="back", marker_written=marker_written
    )
    outcome = await settle(db, clients, [writer])

    mutated = [(seq, mutation, title) for seq, mutation, title in outcome.oracle if mutation is not None]
    titles = [title for _, _, title in mutated]
    per_title = Counter(titles)
    applied_twice = sum(n - 1 for n in per_title.values() if n > 1)
    missing = [f"m{i}" for i in range(1, MUTATIONS + 1) if f"m{i}" not in per_title]
    expected_order = [f"m{i}" for i in range(1, MUTATIONS + 1)]
    recorder.record(
        summarize(
            "7-offline-50-mutations",
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=live_s,
            caught_up_s=caught_up_s,
            extra={
                "offline_s": OFFLINE,
                "outbox_while_offline": depth_offline,
                "mutations_acked": len(results),
                "mutation_changes": len(mutated),
                "mutations_missing": len(missing),
                "mutations_applied_twice": applied_twice,
                "mutations_in_order": titles == expected_order,
                "all_acked_after_s": round(acked_s, 2),
            },
        )
    )
    assert depth_offline == MUTATIONS
    assert results == [{"id": f"q{i % 5}"} for i in range(1, MUTATIONS + 1)]
    assert not missing and applied_twice == 0 and titles == expected_order, titles
    assert len({mutation for _, mutation, _ in mutated}) == MUTATIONS  # one id per mutation
    assert {f"q{i}": outcome.rows[f"q{i}"].title for i in range(5)} == {
        f"q{i}": f"m{MUTATIONS - (MUTATIONS - i) % 5}" for i in range(5)
    }
    assert all(outcome.rows[f"q{i}"].author == "ann" for i in range(5))
    assert author.root.metrics.outbox_depth == 0
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
