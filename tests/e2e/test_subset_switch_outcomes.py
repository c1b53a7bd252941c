"""Which subset a store follows in every outcome of ``store.where()`` (a real gateway on SQLite).

The gateway's one snapshot slot is held by a client that never reads a big
table, so a switch waits on the gateway for as long as the test wants: its
acknowledgement can time out on a live link, or the link can be cut between
the send and the acknowledgement. docs/live_queries.md has the table these
tests check, row by row; acknowledged and refused switches are in
tests/e2e/test_live_queries.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rxstore import Backoff, CallTimeout, RootStore, SocketIOTransport, TableStore, Term
from rxstore.gateway import open_change_log
from rxstore.gateway.server import RealtimeGateway
from tests.e2e.test_live_queries import AUTH, Messages, Writer, settled, start_chat
from tests.faults.harness import StalledClient
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

RANDOM = (Term("channel_id", "=", "random"),)


def write_bulk(path: Path, rows: int = 400) -> None:
    """~8 MB of messages in channel 'bulk', written by another process's connection."""
    data = [(100_000 + i, os.urandom(10_000).hex()) for i in range(rows)]  # ids clear of Writer's
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO messages (id, channel_id, body) VALUES (?, 'bulk', ?)", data)
        conn.execute("COMMIT")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    """A chat gateway with one snapshot slot, and ~8 MB in channel 'bulk'."""
    gateway = await start_chat(tmp_path / "chat.db", snapshot_concurrency=1)
    await asyncio.to_thread(write_bulk, tmp_path / "chat.db")
    yield gateway
    await gateway.stop()


@contextlib.asynccontextmanager
async def slot_held(gateway: RealtimeGateway) -> AsyncIterator[StalledClient]:
    """The gateway's only snapshot slot held by a client that never reads (until closed)."""
    stalled = StalledClient(gateway.port, AUTH.issue("stuck"), topics=("messages",))
    await asyncio.to_thread(stalled.connect)
    try:
        active = "rxstore_snapshots_active"
        await wait_for(
            lambda: gateway.metrics.registry.get_sample_value(active) == 1,
            what="the stalled client's snapshot holding the slot",
        )
        yield stalled
    finally:
        stalled.close()


def root_of(gateway: RealtimeGateway, store: TableStore[Any], **options: Any) -> RootStore:
    backoff = Backoff(initial=0.05, maximum=0.2, jitter=0.0)
    return RootStore(gateway.url, stores=[store], token=AUTH.issue("alice"), backoff=backoff, **options)


def alice(gateway: RealtimeGateway) -> Any:
    (client,) = [c for c in gateway.sessions.clients.values() if c.user.id == "alice"]
    return client


async def test_a_switch_not_acknowledged_in_time_raises_and_follows_the_new_subset(
    gateway: RealtimeGateway,
) -> None:
    """No acknowledgement within the call timeout, the link up: ``CallTimeout``; ``store.subset``
    is the new one, and once the gateway answers the store holds exactly the new channel."""
    writer = Writer(gateway)
    await writer.post("general")
    await writer.post("random")
    inbox = Messages(where={"channel_id": "general"})
    async with root_of(gateway, inbox, call_timeout=0.5) as root:
        await root.live(timeout=10)
        async with slot_held(gateway):
            with pytest.raises(CallTimeout):
                await inbox.where({"channel_id": "random"})
            assert inbox.subset.where == RANDOM
            assert root.metrics.reconnects == 0
        await settled(inbox, writer, "random")
        new = await writer.post("random")
        await wait_for(lambda: new in inbox.value.rows, what="a live #random row")
        assert set(alice(gateway).subscriptions) == {inbox.event}
        assert alice(gateway).subscriptions[inbox.event].subset.where[0].value == "random"


async def test_a_link_lost_between_send_and_acknowledgement_follows_the_new_subset(
    gateway: RealtimeGateway,
) -> None:
    """The gateway drops the link while the switch waits for its snapshot: ``where()`` returns
    without error, and after the reconnect the store holds exactly the new channel."""
    writer = Writer(gateway)
    await writer.post("general")
    await writer.post("random")
    inbox = Messages(where={"channel_id": "general"})
    async with root_of(gateway, inbox) as root:
        await root.live(timeout=10)
        async with slot_held(gateway):
            switching = asyncio.ensure_future(inbox.where({"channel_id": "random"}))
            await wait_for(lambda: alice(gateway).reserved, what="the switch in flight on the gateway")
            await gateway.sio.disconnect(alice(gateway).sid)
            subset = await switching
            assert subset.where == RANDOM == inbox.subset.where
        await settled(inbox, writer, "random")
        assert root.metrics.reconnects >= 1
        new = await writer.post("random")
        await wait_for(lambda: new in inbox.value.rows, what="a live #random row")


async def test_a_switch_while_offline_follows_the_new_subset_from_the_next_connect(
    gateway: RealtimeGateway,
) -> None:
    """Not connected when called: ``where()`` returns at once, the next connect subscribes it."""
    writer = Writer(gateway)
    await writer.post("general")
    await writer.post("random")
    inbox = Messages(where={"channel_id": "general"})
    assert (await inbox.where({"channel_id": "random"})).where == RANDOM
    async with root_of(gateway, inbox) as root:
        await root.live(timeout=10)
        await settled(inbox, writer, "random")


async def test_the_root_sends_at_most_max_in_flight_calls_at_once(tmp_path: Path) -> None:
    """40 ``root.call`` at once against a gateway with ``max_in_flight=8``: with the transport's
    window at 8 every call is acknowledged; the calls wait their turn instead of being refused."""
    log = open_change_log(f"sqlite:///{tmp_path / 'chat.db'}")
    await log.open()
    gateway = RealtimeGateway(log, topics=[], auth=AUTH, max_in_flight=8)
    entered = 0
    highest = 0

    @gateway.on("echo")
    async def echo(user: Any, data: Any) -> Any:
        nonlocal entered, highest
        entered += 1
        highest = max(highest, entered)
        await asyncio.sleep(0.01)
        entered -= 1
        return data

    await gateway.start(port=0)
    try:
        transport = SocketIOTransport(max_in_flight=8)
        root = RootStore(gateway.url, stores=[], token=AUTH.issue("alice"), transport=transport)
        async with root:
            acks = await asyncio.gather(*(root.call("echo", i) for i in range(40)))
        assert [ack.get("ok") for ack in acks] == [True] * 40, acks
        assert [ack["result"] for ack in acks] == list(range(40))
        assert highest == 8
    finally:
        await gateway.stop()
