"""Scenario 4: Redis restarts under two gateway nodes; cross-node broadcasts work again after."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import attrs
import pytest

from rxstore import DomainStore, Event
from tests.faults.harness import (
    PostgresDb,
    PostgresWriter,
    assert_clean,
    settle,
    summarize,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@attrs.frozen
class Typing:
    """Every ``typing`` broadcast received: (sender, payload id) in arrival order."""

    seen: tuple[tuple[str, str], ...] = ()


class TypingStore(DomainStore[Typing]):
    accepts = ("typing",)
    initial = Typing()

    def reduce(self, state: Typing, event: Event) -> Typing:
        data: Any = event.data
        return attrs.evolve(state, seen=(*state.seen, (data["from"], data["data"]["id"])))


async def _redis_state(gateway) -> str:
    health = await gateway.health()
    return "no-answer" if health is None else str(health[1].get("redis"))


async def _cross(sender, receiver_store: TypingStore, timeout: float) -> float:
    """Broadcast a fresh id from ``sender``; return seconds until ``receiver_store`` folded it."""
    payload = uuid.uuid4().hex
    start = time.monotonic()
    await sender.root.broadcast("posts", "typing", {"id": payload})
    await wait_for(
        lambda: any(p == payload for _, p in receiver_store.value.seen), timeout, "cross-node broadcast"
    )
    return time.monotonic() - start


@pytest.mark.timeout(90)
async def test_redis_restart_two_nodes_still_hear_each_other(cluster, recorder, pg_dsn, own_redis) -> None:
    """Two gateway nodes share one PostgreSQL log and a Redis for client broadcasts; client A is
    on node 1, client B on node 2, and a writer writes into PostgreSQL. Redis is stopped:
    both nodes report ``redis: down`` on ``/healthz`` while changes keep flowing (they never go
    through Redis); Redis starts again: both report ``up`` and A and B see each other's
    broadcasts again, each exactly once. Both clients end equal to the database with no
    change lost, applied twice or out of order."""
    db = PostgresDb(pg_dsn)
    redis_args = ["--redis", own_redis.url]
    node1 = cluster.gateway(db.url, name="node1", args=redis_args)
    node2 = cluster.gateway(db.url, name="node2", args=redis_args)
    await node1.start()
    await node2.start()
    typing_a, typing_b = TypingStore(name="a.typing"), TypingStore(name="b.typing")
    (a,) = await cluster.clients(1, node1.url, prefix="a", user="ann", stores=[typing_a])
    (b,) = await cluster.clients(1, node2.url, prefix="b", user="bob", stores=[typing_b])
    clients = [a, b]
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")
    await _cross(a, typing_b, 5)
    await _cross(b, typing_a, 5)
    writer = cluster.writer(PostgresWriter(db.url, rate=200))
    await wait_for(lambda: all(c.seq >= 100 for c in clients), 15, "clients following the stream")

    fault_start = time.monotonic()
    seq_at_stop = min(c.seq for c in clients)
    await asyncio.to_thread(own_redis.stop)
    nodes = [node1, node2]

    async def all_report(state: str) -> bool:
        return all([await _redis_state(n) == state for n in nodes])

    detect_s = await wait_for(lambda: all_report("down"), 15, "both nodes report redis down", interval=0.05)
    # Changes do not go through Redis: they keep flowing while it is down.
    await wait_for(lambda: all(c.seq >= seq_at_stop + 100 for c in clients), 15, "changes flow without Redis")
    await asyncio.to_thread(own_redis.start)
    fault_end = time.monotonic()
    healthy_s = await wait_for(lambda: all_report("up"), 30, "both nodes report redis up", interval=0.05)
    a_to_b = await _cross(a, typing_b, 5)
    b_to_a = await _cross(b, typing_a, 5)
    broadcast_s = time.monotonic() - fault_end
    for _ in range(5):  # a few more each way: each delivered exactly once
        await _cross(a, typing_b, 5)
        await _cross(b, typing_a, 5)
    await asyncio.sleep(0.3)  # a duplicate would arrive now
    outcome = await settle(db, clients, [writer])

    seen = [*typing_a.value.seen, *typing_b.value.seen]
    duplicate_broadcasts = len(seen) - len(set(seen))
    own_echoes = sum(1 for sender, _ in typing_a.value.seen if sender == "ann") + sum(
        1 for sender, _ in typing_b.value.seen if sender == "bob"
    )
    recorder.record(
        summarize(
            "4-redis-restart-2-nodes",
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=None,
            caught_up_s=broadcast_s,
            extra={
                "redis_down_s": round(fault_end - fault_start, 2),
                "healthz_down_after_s": round(detect_s, 2),
                "healthz_up_after_s": round(healthy_s, 2),
                "first_cross_broadcast_ms": round(1000 * max(a_to_b, b_to_a), 1),
                "broadcasts_seen": len(seen),
                "broadcast_duplicates": duplicate_broadcasts,
                "client_reconnects": sum(c.reconnects for c in outcome.counts),
            },
        )
    )
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
    assert duplicate_broadcasts == 0 and own_echoes == 0
    assert len(typing_a.value.seen) == len(typing_b.value.seen) == 7


# -- found while building this scenario --------------------------------------------------


@pytest.mark.timeout(30)
async def test_idle_redis_node_reports_healthy(cluster, own_redis, tmp_path) -> None:
    """A node started with ``--redis`` and no client yet answers ``/healthz`` 200 with
    ``redis: up`` for as long as Redis is up (watched past the 2 s deafness threshold)."""
    node = cluster.gateway(f"sqlite:///{tmp_path}/app.db", args=["--redis", own_redis.url])
    await node.start()
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        health = await node.health()
        assert health is not None and health[0] == 200 and health[1]["redis"] == "up", health
        await asyncio.sleep(0.1)  # paces the health checks of the 3.5 s watch
