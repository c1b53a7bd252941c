"""rxstore.gateway.delivery.fanout: RedisFanout knows whether this node still hears Redis, and hands
what it hears to the gateway's delivery (real python-socketio servers and clients, a real Redis).

The two-node behaviour through whole gateways is in test_fanout_scaleout.py; the python-socketio private
methods the Redis manager overrides through rxstore.gateway.access.socketio_seam are pinned in
test_library_pins.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import pytest

from rxstore.gateway.delivery.fanout import RedisFanout
from tests.gateway.delivery.sio_nodes import ROOM, Recorder, node
from tests.services import RedisServer, require_or_skip
from tests.waiting import wait_for


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
