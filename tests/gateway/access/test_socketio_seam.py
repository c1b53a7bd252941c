"""rxstore.gateway.access.socketio_seam: its bases' hooks and its functions, with python-socketio 5.18.1.

The names they touch are pinned in tests/gateway/test_library_pins.py; the
gateway's own behaviour through them in access/test_guard.py and
delivery/test_fanout*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import socketio
import socketio.msgpack_packet

from rxstore.gateway.access.socketio_seam import (
    EngineIOHooks,
    RedisListenerHooks,
    initialize_manager,
    packet_dict,
    start_listener,
)


class Recording(EngineIOHooks):
    """Records each hook call, then does python-socketio's own handling (except for messages)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(async_mode="aiohttp", **options)
        self.calls: list[tuple[str, str]] = []

    async def handle_engineio_connect(self, eio_sid: str, environ: Any) -> Any:
        self.calls.append(("connect", eio_sid))
        return await super().handle_engineio_connect(eio_sid, environ)

    async def handle_engineio_message(self, eio_sid: str, data: Any) -> None:
        self.calls.append(("message", data))

    async def handle_engineio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        self.calls.append(("disconnect", eio_sid))
        await super().handle_engineio_disconnect(eio_sid, reason)


async def test_engineio_events_reach_the_hooks_and_their_defaults_are_python_socketios() -> None:
    """connect keeps the environ and initializes the manager; disconnect forgets the environ."""
    sio = Recording()
    environ = {"REMOTE_ADDR": "127.0.0.1"}
    await sio.eio.handlers["connect"]("eio-1", environ)
    assert sio.environ["eio-1"] is environ and sio.manager_initialized
    await sio.eio.handlers["message"]("eio-1", "2[]")
    await sio.eio.handlers["disconnect"]("eio-1", sio.eio.reason.CLIENT_DISCONNECT)
    assert sio.calls == [("connect", "eio-1"), ("message", "2[]"), ("disconnect", "eio-1")]
    assert "eio-1" not in sio.environ


class CountingManager(socketio.AsyncManager):  # type: ignore[misc]
    initialized = 0

    def initialize(self) -> None:
        self.initialized += 1
        super().initialize()


async def test_a_manager_is_initialized_once_whether_the_gateway_or_a_connection_comes_first() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=CountingManager())
    initialize_manager(sio)
    initialize_manager(sio)
    await sio.eio.handlers["connect"]("eio-1", {})
    assert sio.manager_initialized and sio.manager.initialized == 1


class FakeRedis(RedisListenerHooks):
    """A Redis manager whose subscription is a list of messages, then silence."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        super().__init__("redis://127.0.0.1:1/0", channel="rxstore-test")
        self.messages = messages
        self.heard_data: list[Any] = []

    def heard(self, message: Any) -> None:
        self.heard_data.append(message)

    async def redis_messages(self) -> AsyncIterator[Any]:
        for message in self.messages:
            yield message
        await asyncio.Event().wait()


async def test_a_restarted_listener_hears_its_channels_messages_through_the_hooks() -> None:
    """start_listener runs python-socketio's listener over redis_messages; heard sees its channel only."""
    emit = json.dumps({"method": "emit", "event": "e", "data": 1, "namespace": "/", "host_id": "x"})
    manager = FakeRedis(
        [
            {"channel": b"other", "type": "message", "data": "elsewhere"},
            {"channel": b"rxstore-test", "type": "subscribe", "data": 1},
            {"channel": b"rxstore-test", "type": "message", "data": emit},
        ]
    )
    manager.set_server(socketio.AsyncServer(async_mode="aiohttp", client_manager=manager))
    thread = start_listener(manager)
    try:
        assert manager.thread is thread
        for _ in range(100):
            if manager.heard_data:
                break
            await asyncio.sleep(0.01)
        assert manager.heard_data == [emit]
    finally:
        thread.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await thread


async def test_connecting_redis_makes_the_managers_clients_without_a_round_trip() -> None:
    manager = RedisListenerHooks("redis://127.0.0.1:1/0", channel="rxstore-test")
    assert manager.redis is None and manager.pubsub is None
    manager.connect_redis()
    redis: Any = manager.redis  # not narrowed to None by the assert above
    try:
        assert redis is not None and manager.pubsub is not None
    finally:
        await redis.aclose()


async def test_a_packets_dict_is_what_its_msgpack_form_packs() -> None:
    packet = socketio.msgpack_packet.MsgPackPacket(socketio.packet.EVENT, namespace="/", data=["e", 1])
    assert packet_dict(packet) == {"type": socketio.packet.EVENT, "data": ["e", 1], "nsp": "/"}
    ack = socketio.packet.Packet(socketio.packet.ACK, namespace="/", data=[True], id=7)
    assert packet_dict(ack) == {"type": socketio.packet.ACK, "data": [True], "nsp": "/", "id": 7}
