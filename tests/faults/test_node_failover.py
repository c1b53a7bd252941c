"""Scenario 5: node 1 of 2 is kill -9'd; its clients fail over to node 2 and resume."""

from __future__ import annotations

import asyncio
import time

import pytest

from rxstore import RootStore
from rxstore.client.transport import SocketIOTransport
from rxstore.protocol.errors import TransportError
from tests.faults.harness import (
    AUTH,
    BACKOFF,
    PostgresDb,
    PostgresWriter,
    PostStore,
    assert_clean,
    recovery,
    settle,
    start_inprocess_gateway,
    summarize,
)
from tests.services import free_port
from tests.waiting import wait_for


@pytest.mark.postgres
@pytest.mark.timeout(90)
async def test_kill_node_1_of_2_clients_fail_over_to_node_2(cluster, recorder, pg_dsn) -> None:
    """Two gateway nodes serve one PostgreSQL log. Three clients list ``[node1, node2]`` and sit
    on node 1, one lists ``[node2, node1]`` and sits on node 2; a writer writes into
    PostgreSQL. Node 1 is killed with SIGKILL mid-stream and never comes back: its clients
    reconnect to node 2 with their cursors and resume there; every client ends equal to the
    database with no change lost, applied twice or out of order."""
    db = PostgresDb(pg_dsn)
    node1 = cluster.gateway(db.url, name="node1")
    node2 = cluster.gateway(db.url, name="node2")
    await node1.start()
    await node2.start()
    movers = await cluster.clients(3, [node1.url, node2.url], prefix="n1-")
    stayers = await cluster.clients(1, [node2.url, node1.url], prefix="n2-")
    clients = [*movers, *stayers]
    await wait_for(lambda: all(c.live for c in clients), 10, "clients live")
    assert all(c.root.connection_state.url == node1.url for c in movers)
    writer = cluster.writer(PostgresWriter(db.url, rate=200))
    await wait_for(lambda: all(c.seq >= 100 for c in clients), 15, "clients following the stream")

    fault_start = time.monotonic()
    node1.kill()
    fault_end = time.monotonic()  # the fault is permanent: recovery counts from the kill
    marker_written = await db.write_marker("after-kill")
    await wait_for(lambda: all("after-kill" in c.markers for c in clients), 20, "clients resumed on node 2")
    live_s, caught_up_s = recovery(
        clients,
        fault_start=fault_start,
        fault_end=fault_end,
        marker="after-kill",
        marker_written=marker_written,
    )
    await asyncio.sleep(1.0)  # paces the check: the writer's live changes after recovery are in it
    outcome = await settle(db, clients, [writer])

    on_node2 = sum(1 for c in clients if c.root.connection_state.url == node2.url)
    recorder.record(
        summarize(
            "5-node-failover",
            outcome.counts,
            changes=len(outcome.oracle),
            live_s=live_s,
            caught_up_s=caught_up_s,
            extra={
                "clients_on_node2_after": f"{on_node2}/{len(clients)}",
                "replayed_after_failover": sum(c.root.metrics.replayed for c in movers),
                "reconnects": sum(c.reconnects for c in outcome.counts),
            },
        )
    )
    assert_clean(outcome.counts, outcome.reports, outcome.rows)
    assert on_node2 == len(clients)
    assert all(c.reconnects >= 1 and c.resets == 0 for c in outcome.counts[:3])
    assert outcome.counts[3].reconnects == 0


# -- the failover bug (fixed), as regression tests ----------------------------------------------------------


@pytest.mark.timeout(30)
async def test_transport_reports_a_dead_node_as_transport_error_not_refusal() -> None:
    """Connecting to a port nobody listens on is a TransportError (worth trying elsewhere),
    not a ConnectionRefused (the gateway said no)."""
    transport = SocketIOTransport(connect_timeout=2.0)
    with pytest.raises(TransportError):
        await transport.connect(
            f"http://127.0.0.1:{free_port()}", {"token": None, "topics": [], "cursor": None}
        )


@pytest.mark.timeout(30)
async def test_root_store_fails_over_from_a_dead_url_to_the_next(tmp_path) -> None:
    """``RootStore([dead, live])`` connects to ``live`` within a few backoff steps."""
    gateway = await start_inprocess_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        posts = PostStore()
        root = RootStore(
            [f"http://127.0.0.1:{free_port()}", gateway.url],
            stores=[posts],
            token=AUTH.issue("ann"),
            backoff=BACKOFF,
        )
        try:
            await asyncio.wait_for(root.setup_realtime(), 5)
            assert root.connection_state.url == gateway.url
        finally:
            await root.teardown_realtime()
    finally:
        await gateway.stop()
