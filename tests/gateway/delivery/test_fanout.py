"""rxstore.gateway.delivery.fanout: QueuedManager hands room emits to the gateway's delivery, and RedisFanout
knows whether this node still hears Redis (real python-socketio servers and clients, a real Redis).

The two-node behaviour through whole gateways is in test_fanout_scaleout.py; the python-socketio private
methods fanout.py overrides are pinned in test_library_pins.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
import socketio
from aiohttp import web

from rxstore.gateway.delivery.fanout import QueuedManager, RedisFanout
from tests.services import RedisServer, free_port, require_or_skip
from tests.waiting import wait_for

ROOM = "posts"


@attrs.define
class Node:
    """A python-socketio server on 127.0.0.1 with one client in :data:`ROOM`."""

    sio: socketio.AsyncServer
    client: socketio.AsyncClient
    received: list[tuple[str, Any]]


@contextlib.asynccontextmanager
async def node(manager: Any) -> AsyncIterator[Node]:
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        await sio.enter_room(sid, ROOM)

    @sio.event
    async def ack_me(sid: str, data: Any) -> Any:
        return data

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = socketio.AsyncClient(reconnection=False)
    received: list[tuple[str, Any]] = []
    client.on("*", lambda event, data=None: received.append((event, data)))
    try:
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        await wait_for(lambda: bool(sio.manager.rooms.get("/", {}).get(ROOM)), 5, "the client in the room")
        yield Node(sio, client, received)
    finally:
        await client.disconnect()
        await runner.cleanup()


class Recorder:
    """A gateway delivery stand-in: records what it is handed, takes it when ``take`` says so."""

    def __init__(self, take: bool) -> None:
        self.take = take
        self.handed: list[tuple[str, Any, str, Any]] = []

    def __call__(self, event: str, data: Any, room: str, skip_sid: Any) -> bool:
        self.handed.append((event, data, room, skip_sid))
        return self.take


async def test_a_room_emit_goes_to_the_delivery_when_it_takes_it_and_not_to_the_socket() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=True)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("typing", {"n": 1}, room=ROOM, skip_sid="nobody")
        manager.deliver = None
        await n.sio.emit("marker", 2, room=ROOM)  # sent after, on the same socket: arrives after
        await wait_for(lambda: ("marker", 2) in n.received, 5, "the marker")
    assert n.received == [("marker", 2)], "the delivered emit also went out on the socket"
    assert recorder.handed == [("typing", {"n": 1}, ROOM, "nobody")]


async def test_the_delivery_gets_event_data_room_and_skip_sid() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=True)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("typing", {"n": 1}, to=ROOM, skip_sid="s1")
    assert recorder.handed == [("typing", {"n": 1}, ROOM, "s1")]


async def test_a_room_emit_the_delivery_declines_goes_out_on_the_socket() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=False)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("typing", 1, room=ROOM)
        await wait_for(lambda: ("typing", 1) in n.received, 5, "the declined emit on the socket")
    assert len(recorder.handed) == 1


async def test_an_emit_with_a_callback_or_to_everyone_skips_the_delivery() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=True)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("everyone", 1)  # no room
        await n.sio.emit("with_ack", 2, room=ROOM, callback=lambda *args: None)
        await wait_for(lambda: len(n.received) == 2, 5, "both emits on the socket")
    assert recorder.handed == []
    assert sorted(n.received) == [("everyone", 1), ("with_ack", 2)]


# -- RedisFanout: is this node hearing Redis? ----------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server for this test alone (it gets stopped and started)."""
    reason = RedisServer.missing()
    if reason:
        require_or_skip(reason)
    with RedisServer() as server:
        yield server


async def test_a_fanout_is_healthy_while_it_hears_its_heartbeats_and_says_so_when_redis_goes(
    own_redis: RedisServer,
) -> None:
    fanout = RedisFanout(own_redis.url, channel=f"t-{uuid.uuid4().hex}", heartbeat=0.2)
    async with node(fanout.manager) as n:  # the first connection starts the listener
        watch = asyncio.create_task(fanout.watch(n.sio))
        try:
            await wait_for(lambda: fanout.manager.last_heard > 0, 10, "the first heartbeat heard")
            assert fanout.healthy
            own_redis.stop()
            await wait_for(lambda: not fanout.healthy, 5, "deaf once Redis is gone")
            own_redis.start()
            await wait_for(lambda: fanout.healthy, 10, "hearing again after Redis is back")
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await fanout.close()


async def test_two_fanouts_on_one_channel_deliver_each_others_room_emits(own_redis: RedisServer) -> None:
    channel = f"t-{uuid.uuid4().hex}"
    one, two = RedisFanout(own_redis.url, channel=channel), RedisFanout(own_redis.url, channel=channel)
    handed = Recorder(take=True)
    async with node(one.manager) as first, node(two.manager) as second:
        two.manager.deliver = handed  # node two's gateway delivery gets what node one publishes
        await wait_for(
            lambda: bool(one.manager.thread) and bool(two.manager.thread), 5, "both listeners running"
        )
        for attempt in range(50):  # the subscriber may not be subscribed yet: publish until heard
            await first.sio.emit("typing", attempt, room=ROOM)
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: bool(handed.handed), 0.2, "node two hearing node one")
                break
        assert handed.handed and handed.handed[0][0] == "typing" and handed.handed[0][2] == ROOM
        assert second.received == [], "taken by the delivery, so not written to node two's socket"
    await one.close()
    await two.close()
