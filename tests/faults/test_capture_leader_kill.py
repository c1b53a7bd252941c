"""Scenario 6: the node that captures the WAL is kill -9'd mid-stream; the other node takes over."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.faults.harness import (
    GatewayProcess,
    PostgresDb,
    PostgresWriter,
    _Ops,
    assert_clean,
    recovery,
    settle,
    summarize,
)
from tests.pg_capture import capture_pid, syncrep_hold, wait_blocked_by
from tests.services import PostgresServer
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres


async def role(node: GatewayProcess) -> str | None:
    """``leader`` / ``standby`` as the node's ``/healthz`` says of its WAL capture (None: no answer)."""
    health = await node.health()
    if health is None:
        return None
    capture = health[1].get("capture") or {}
    return capture.get("role")


@contextlib.asynccontextmanager
async def killing_at(at: str, dsn: str) -> AsyncIterator[None]:
    """Hold the leader's capture at the instant ``at`` while the body kills the node, then let go.

    ``mid-append``: the test holds rxstore_capture's row, so the capture's append (its changes
    inserted, not committed) waits on it. ``after-append``: commits wait for a synchronous
    standby that never comes, so the capture's append is committed (locally) and the slot not
    yet advanced. Either way the capture's backend finishes only after its node is dead.
    """
    if at == "anywhere":
        yield
        return
    admin = await asyncpg.connect(dsn)
    holder = await asyncpg.connect(dsn)
    try:
        pid = await capture_pid(admin)
        assert pid is not None, "no capture leader"
        if at == "mid-append":
            async with holder.transaction():
                await holder.execute("SELECT * FROM rxstore_capture FOR UPDATE")
                holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
                await wait_blocked_by(
                    admin, pid, holder_pid, "the capture's append waiting on rxstore_capture"
                )
                yield
        else:
            async with syncrep_hold(admin, pid):
                yield
    finally:
        await holder.close()
        await admin.close()


@pytest.mark.parametrize("at", ["anywhere", "mid-append", "after-append"])
@pytest.mark.timeout(90)
async def test_kill_9_of_the_capture_leader_mid_stream(
    cluster, recorder, pg_dsn: str, postgres: PostgresServer, at: str
) -> None:
    """Two gateway nodes serve one PostgreSQL log in WAL mode; exactly one captures the WAL (its
    /healthz says its capture's role is ``leader``, the other's ``standby``). Two clients sit on each
    node (each lists the other node second) while a writer writes into PostgreSQL. The leader
    is killed with SIGKILL mid-stream: at whatever instant (``anywhere``), while its capture
    appends (``mid-append``: its append waits on a row lock the test holds) or after its append
    committed but before it advanced the slot (``after-append``: the commit waits for a
    synchronous standby). The other node takes the capture over within seconds, the leader's
    clients fail over to it, every client ends equal to the database with no change lost,
    applied twice or out of order, and the log holds each write exactly once."""
    level = postgres.psql("SHOW wal_level").strip()
    if level != "logical":
        pytest.skip(f"WAL capture needs wal_level=logical; this server runs wal_level={level}")
    db = PostgresDb(pg_dsn)
    nodes = [cluster.gateway(db.url, name="node1"), cluster.gateway(db.url, name="node2")]
    for node in nodes:
        await node.start()

    async def one_leader() -> bool:
        roles = [await role(node) for node in nodes]
        return sorted(map(str, roles)) == ["leader", "standby"]

    await wait_for(one_leader, 15, "one capture leader, one standby")
    leader, survivor = [n for n in nodes if await role(n) == "leader"] + [
        n for n in nodes if await role(n) == "standby"
    ]

    movers = await cluster.clients(2, [leader.url, survivor.url], prefix="leader-")
    stayers = await cluster.clients(2, [survivor.url, leader.url], prefix="survivor-")
    clients = [*movers, *stayers]
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")
    writer = cluster.writer(PostgresWriter(db.url, rate=200))
    await wait_for(lambda: all(c.seq >= 150 for c in clients), 20, "clients following the stream")

    fault_start = time.monotonic()
    written_before = writer.written
    async with killing_at(at, db.url):
        leader.kill()
    takeover_s = await wait_for(
        lambda: _is_leader(survivor),
        15,
        "the surviving node capturing the WAL",
    )
    fault_end = time.monotonic()
    marker_written = await db.write_marker("after-kill")
    await wait_for(lambda: all("after-kill" in c.markers for c in clients), 20, "clients caught up")
    live_s, caught_up_s = recovery(
        clients,
        fault_start=fault_start,
        fault_end=fault_end,
        marker="after-kill",
        marker_written=marker_written,
    )
    await wait_for(lambda: writer.written >= written_before + 400, 20, "the writer writing on")
    outcome = await settle(db, clients, [writer])
    assert writer.errors == 0  # no write was retried: each one committed exactly once

    on_survivor = sum(1 for c in clients if c.root.connection_state.url == survivor.url)
    recorder.record(
        summarize(
            "6-capture-leader-kill-9" + ("" if at == "anywhere" else f"-{at}"),
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=live_s,
            caught_up_s=caught_up_s,
            extra={
                "takeover_s": round(takeover_s, 3),
                "clients_on_survivor_after": f"{on_survivor}/{len(clients)}",
                "reconnects": sum(c.reconnects for c in outcome.counts),
            },
        )
    )
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
    await assert_log_holds_each_write_once(db, writer)
    assert outcome.seqs == list(range(1, len(outcome.seqs) + 1))
    assert on_survivor == len(clients)
    assert all(c.reconnects >= 1 and c.resets == 0 for c in outcome.counts[:2])
    assert all(c.reconnects == 0 for c in outcome.counts[2:])
    assert takeover_s < 5.0


async def _is_leader(node: GatewayProcess) -> bool:
    return await role(node) == "leader"


async def assert_log_holds_each_write_once(db: PostgresDb, writer: PostgresWriter) -> None:
    """The log itself holds each of the writer's upserts exactly once, per row in write order.

    The clients' accounting compares them with the log (the oracle), so a change the capture
    lost or appended twice is invisible to it; this compares the log with what was written
    (the writer's titles ``t<n>`` are unique, replayed from its deterministic op stream).
    """
    ops = _Ops(seed=1, ids=40, body=16)
    upserts = set()
    for _ in range(writer.written + 1):
        kind, args = ops.next()
        if kind == "upsert":
            upserts.add(args[1])  # its title, t<n>
    last = f"t{writer.written + 1}"  # stopped mid-statement: it may or may not have committed
    conn = await asyncpg.connect(db.url)
    try:
        rows = await conn.fetch(
            "SELECT record->>'id' AS id, record->>'title' AS title FROM rxstore_changes "
            "WHERE topic = 'posts' AND op <> 'DELETE' AND record->>'author' = 'writer' ORDER BY seq"
        )
    finally:
        await conn.close()
    titles = Counter(r["title"] for r in rows)
    doubled = sorted(t for t, n in titles.items() if n > 1)
    assert not doubled, f"{len(doubled)} writes logged twice, e.g. {doubled[:5]}"
    missing = sorted(upserts - set(titles) - {last})
    assert not missing, f"{len(missing)} writes not in the log, e.g. {missing[:5]}"
    assert set(titles) <= upserts
    order: dict[str, int] = {}
    for r in rows:
        n = int(r["title"][1:])
        assert n > order.get(r["id"], 0), f"{r['id']}: t{n} logged after t{order[r['id']]}"
        order[r["id"]] = n


HUGE = 20_000
"""Rows of the one-statement transaction of the huge-transaction scenario (4 times the capture's batch)."""


async def _spooling(admin: Any, pid: int) -> bool:
    """Whether the capture backend ``pid`` is in a pass that has written (its spool, the log)."""
    return bool(
        await admin.fetchval("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = $1", pid)
    )


@pytest.mark.timeout(180)
async def test_kill_9_of_the_capture_leader_while_it_spools_a_huge_transaction(
    cluster, recorder, pg_dsn: str, postgres: PostgresServer
) -> None:
    """Two gateway nodes in WAL mode, two clients on each; one statement inserts 20,000 posts (one
    transaction, 4 times the capture's batch) and the capture leader is killed with SIGKILL while
    its capture spools that transaction (its pass has written, not committed). The other node
    takes the capture over and appends the transaction once, whole; every client ends equal to
    the database with no change lost, applied twice or out of order."""
    level = postgres.psql("SHOW wal_level").strip()
    if level != "logical":
        pytest.skip(f"WAL capture needs wal_level=logical; this server runs wal_level={level}")
    db = PostgresDb(pg_dsn)
    nodes = [cluster.gateway(db.url, name="node1"), cluster.gateway(db.url, name="node2")]
    for node in nodes:
        await node.start()

    async def one_leader() -> bool:
        roles = [await role(node) for node in nodes]
        return sorted(map(str, roles)) == ["leader", "standby"]

    await wait_for(one_leader, 15, "one capture leader, one standby")
    leader, survivor = [n for n in nodes if await role(n) == "leader"] + [
        n for n in nodes if await role(n) == "standby"
    ]
    movers = await cluster.clients(2, [leader.url, survivor.url], prefix="leader-")
    stayers = await cluster.clients(2, [survivor.url, leader.url], prefix="survivor-")
    clients = [*movers, *stayers]
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")

    admin = await asyncpg.connect(db.url)
    try:
        pid = await capture_pid(admin)
        assert pid is not None, "no capture leader"
        fault_start = time.monotonic()
        await admin.execute(
            "INSERT INTO posts (id, title, author) "
            "SELECT 'huge' || x, 'h' || x, 'huge' FROM generate_series(1, $1::int) x",
            HUGE,
        )
        await wait_for(lambda: _spooling(admin, pid), 60, "the leader's capture spooling the transaction")
        leader.kill()
        takeover_s = await wait_for(lambda: _is_leader(survivor), 15, "the surviving node capturing the WAL")
        fault_end = time.monotonic()
        marker_written = await db.write_marker("after-kill")
        await wait_for(lambda: all("after-kill" in c.markers for c in clients), 90, "clients caught up")
        live_s, caught_up_s = recovery(
            clients,
            fault_start=fault_start,
            fault_end=fault_end,
            marker="after-kill",
            marker_written=marker_written,
        )
        outcome = await settle(db, clients, timeout=60)
        logged = await admin.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT record->>'id') AS ids FROM rxstore_changes "
            "WHERE topic = 'posts' AND record->>'author' = 'huge'"
        )
    finally:
        await admin.close()
    recorder.record(
        summarize(
            "6-capture-leader-kill-9-huge-transaction",
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=live_s,
            caught_up_s=caught_up_s,
            extra={"takeover_s": round(takeover_s, 3), "rows_in_the_transaction": HUGE},
        )
    )
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
    assert logged is not None and (logged["n"], logged["ids"]) == (HUGE, HUGE)
    assert outcome.seqs == list(range(1, len(outcome.seqs) + 1))
    assert takeover_s < 5.0
