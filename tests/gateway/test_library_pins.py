"""Every private python-socketio / python-engineio name rxstore relies on, pinned.

rxstore's gateway reaches under the libraries' public API in a few places
(rxstore/gateway/delivery/queues.py, fanout.py, guard.py, packets.py, server.py; each
module says which). A new library version that renames, re-signs or stops
calling one of them fails here, by name, before it fails somewhere in the
behaviour tests (access/test_guard.py, delivery/test_fanout_scaleout.py, tests/faults/).
Each pin checks the name and its signature; where rxstore depends on the
library *calling* it, a behaviour test checks that too.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import engineio
import engineio.async_drivers.aiohttp
import engineio.async_drivers.asgi
import engineio.async_socket
import engineio.packet
import engineio.payload
import msgpack
import pytest
import socketio
import socketio.msgpack_packet

from rxstore.gateway.access.guard import BadInputLog, GuardedServer, WireGuard
from rxstore.gateway.delivery.fanout import QueuedManager, RedisFanout


def params(function: Callable[..., Any]) -> list[str]:
    """The parameter names of ``function``, ``self`` included."""
    return list(inspect.signature(function).parameters)


def calls(function: Callable[..., Any], *needles: str) -> bool:
    """Whether the source of ``function`` contains every one of ``needles``."""
    source = inspect.getsource(function)
    return all(needle in source for needle in needles)


# -- the pins: name and signature ---------------------------------------------------------------

PINNED: list[tuple[str, Callable[..., Any], list[str]]] = [
    # guard.GuardedServer overrides these three (python-socketio 5.x calls them per Engine.IO event).
    (
        "AsyncServer._handle_eio_connect",
        socketio.AsyncServer._handle_eio_connect,
        ["self", "eio_sid", "environ"],
    ),
    (
        "AsyncServer._handle_eio_message",
        socketio.AsyncServer._handle_eio_message,
        ["self", "eio_sid", "data"],
    ),
    (
        "AsyncServer._handle_eio_disconnect",
        socketio.AsyncServer._handle_eio_disconnect,
        ["self", "eio_sid", "reason"],
    ),
    # delivery.Delivery and server.RealtimeGateway look clients up through the manager.
    ("BaseManager.eio_sid_from_sid", socketio.AsyncManager.eio_sid_from_sid, ["self", "sid", "namespace"]),
    (
        "BaseManager.sid_from_eio_sid",
        socketio.AsyncManager.sid_from_eio_sid,
        ["self", "eio_sid", "namespace"],
    ),
    ("BaseManager.get_participants", socketio.AsyncManager.get_participants, ["self", "namespace", "room"]),
    ("BaseManager.is_connected", socketio.AsyncManager.is_connected, ["self", "sid", "namespace"]),
    ("BaseManager.initialize", socketio.AsyncManager.initialize, ["self"]),
    # fanout.QueuedManager overrides emit, keeping its parameters.
    (
        "AsyncManager.emit",
        socketio.AsyncManager.emit,
        ["self", "event", "data", "namespace", "room", "skip_sid", "callback", "to", "kwargs"],
    ),
    # fanout._WatchedRedisManager overrides _listen and _redis_listen_with_retries, calls _redis_connect.
    ("AsyncRedisManager._listen", socketio.AsyncRedisManager._listen, ["self"]),
    (
        "AsyncRedisManager._redis_listen_with_retries",
        socketio.AsyncRedisManager._redis_listen_with_retries,
        ["self"],
    ),
    ("AsyncRedisManager._redis_connect", socketio.AsyncRedisManager._redis_connect, ["self"]),
    ("AsyncPubSubManager._thread", socketio.AsyncRedisManager._thread, ["self"]),
    # delivery.GatewayPacket skips the binary scan; delivery's msgpack packet packs _to_dict() itself.
    ("Packet.data_is_binary", socketio.packet.Packet.data_is_binary, ["data"]),
    ("Packet._to_dict", socketio.packet.Packet._to_dict, ["self"]),
    ("Packet.decode", socketio.packet.Packet.decode, ["self", "encoded_packet"]),
    ("MsgPackPacket.decode", socketio.msgpack_packet.MsgPackPacket.decode, ["self", "encoded_packet"]),
    # delivery.Delivery.send writes engine.io packets itself; guard closes sockets itself.
    ("engineio.AsyncServer.send_packet", engineio.AsyncServer.send_packet, ["self", "sid", "pkt"]),
    ("engineio.AsyncServer.send", engineio.AsyncServer.send, ["self", "sid", "data"]),
    (
        "engineio.AsyncSocket.close",
        engineio.async_socket.AsyncSocket.close,
        ["self", "wait", "abort", "reason"],
    ),
    # guard's engine.io logger tells a bad long-polling body by these frames of its traceback.
    (
        "engineio.AsyncSocket.handle_post_request",
        engineio.async_socket.AsyncSocket.handle_post_request,
        ["self", "environ"],
    ),
    ("engineio.packet.Packet.decode", engineio.packet.Packet.decode, ["self", "encoded_packet"]),
    ("engineio.payload.Payload.decode", engineio.payload.Payload.decode, ["self", "encoded_payload"]),
    # guard replaces the websocket drivers' wait() (and the ASGI one's __call__).
    ("aiohttp WebSocket.wait", engineio.async_drivers.aiohttp.WebSocket.wait, ["self"]),
    ("aiohttp WebSocket.__call__", engineio.async_drivers.aiohttp.WebSocket.__call__, ["self", "environ"]),
    ("asgi WebSocket.wait", engineio.async_drivers.asgi.WebSocket.wait, ["self"]),
    ("asgi WebSocket.__call__", engineio.async_drivers.asgi.WebSocket.__call__, ["self", "environ"]),
]


@pytest.mark.parametrize(("name", "function", "expected"), PINNED, ids=[pin[0] for pin in PINNED])
async def test_a_private_library_method_rxstore_uses_keeps_its_signature(
    name: str, function: Callable[..., Any], expected: list[str]
) -> None:
    assert params(function) == expected, f"{name} changed: rxstore relies on it"


async def test_the_library_internals_rxstore_reads_are_where_it_reads_them() -> None:
    """The call sites rxstore's overrides depend on (python-socketio 5.x / python-engineio 4.x)."""
    # fanout._WatchedRedisManager: the listener thread runs _listen, which runs the retrying listener.
    assert calls(socketio.AsyncRedisManager._thread, "self._listen()")
    assert calls(socketio.AsyncRedisManager._listen, "self._redis_listen_with_retries()")
    assert calls(socketio.AsyncRedisManager._redis_connect, "self.pubsub =", "self.redis =")
    assert calls(socketio.AsyncRedisManager.initialize, "self.thread =")
    # guard: the websocket class an engine.io socket builds comes from the server's _async table.
    assert calls(engineio.async_socket.AsyncSocket._upgrade_websocket, "self.server._async['websocket']")
    # guard: the aiohttp websocket reads from _sock; the ASGI one from asgi_receive / asgi_send.
    assert calls(engineio.async_drivers.aiohttp.WebSocket.__call__, "self._sock =", "self.environ = environ")
    assert calls(engineio.async_drivers.asgi.WebSocket.__call__, "self.asgi_receive =", "self.asgi_send =")
    # delivery: a packet's binary scan happens through data_is_binary while it is built.
    assert calls(socketio.packet.Packet.__init__, "self.data_is_binary(")
    # delivery: the msgpack packet encodes _to_dict().
    assert calls(socketio.msgpack_packet.MsgPackPacket.encode, "self._to_dict()")


def guarded_server(**options: Any) -> GuardedServer:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    guard = WireGuard(
        max_frame_bytes=1 << 20,
        handshake_timeout=None,
        bad_frames=Counter("bad", "bad", ["reason"], registry=registry),
        handshake_timeouts=Counter("hs", "hs", registry=registry),
        report=BadInputLog(10, Counter("sup", "sup", registry=registry)),
    )
    return GuardedServer(guard=guard, async_mode="aiohttp", **options)


async def test_engineio_calls_the_guarded_servers_own_eio_handlers_and_websocket() -> None:
    """GuardedServer's _handle_eio_* overrides and its websocket class are the ones engine.io uses."""
    sio = guarded_server()
    for event in ("connect", "message", "disconnect"):
        handler = sio.eio.handlers[event]
        assert handler.__func__ is getattr(GuardedServer, f"_handle_eio_{event}"), event
    assert sio.eio._async["websocket"].__name__ == "_GuardedWebSocket"
    assert isinstance(sio.environ, dict) and sio.manager_initialized is False


async def test_an_engineio_socket_queue_counts_what_waits_for_the_client() -> None:
    """Delivery's backpressure reads sio.eio.sockets[eio_sid].queue.qsize(); guard puts None in it."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    socket = engineio.async_socket.AsyncSocket(sio.eio, "eio-1")
    sio.eio.sockets["eio-1"] = socket
    assert sio.eio.sockets["eio-1"].queue.qsize() == 0
    await sio.eio.send_packet("eio-1", engineio.packet.Packet(engineio.packet.MESSAGE, "2[]"))
    assert sio.eio.sockets["eio-1"].queue.qsize() == 1
    socket.queue.put_nowait(None)
    assert socket.queue.qsize() == 2


async def test_the_manager_maps_a_clients_sid_to_its_engineio_sid_and_its_rooms() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=QueuedManager())
    manager = sio.manager
    manager.set_server(sio)
    manager.initialize()
    sid = await manager.connect("eio-1", "/")
    await manager.enter_room(sid, "/", "topic:posts")
    assert manager.eio_sid_from_sid(sid, "/") == "eio-1"
    assert manager.sid_from_eio_sid("eio-1", "/") == sid
    assert manager.is_connected(sid, "/")
    assert list(manager.get_participants("/", "topic:posts")) == [(sid, "eio-1")]


async def test_a_room_emit_reaches_the_queued_managers_deliver_by_room_or_to() -> None:
    """fanout.QueuedManager.emit: python-socketio's server emit passes the room on as it expects."""
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=QueuedManager())
    delivered: list[tuple[str, Any, str, Any]] = []

    def deliver(event: str, data: Any, room: str, skip_sid: Any) -> bool:
        delivered.append((event, data, room, skip_sid))
        return True

    sio.manager.deliver = deliver
    await sio.emit("typing", {"n": 1}, room="topic:posts", skip_sid="s1")
    await sio.emit("typing", {"n": 2}, to="topic:posts")
    assert delivered == [("typing", {"n": 1}, "topic:posts", "s1"), ("typing", {"n": 2}, "topic:posts", None)]


async def test_the_packet_class_consults_data_is_binary_and_msgpack_packs_to_dict() -> None:
    seen: list[Any] = []

    class Probe(socketio.packet.Packet):  # type: ignore[misc]
        @classmethod
        def data_is_binary(cls, data: Any) -> bool:
            seen.append(data)
            return False

    Probe(socketio.packet.EVENT, namespace="/", data=["e", {"x": 1}]).encode()
    assert seen and seen[0] == ["e", {"x": 1}]
    packet = socketio.msgpack_packet.MsgPackPacket(socketio.packet.EVENT, namespace="/", data=["e", 1])
    assert msgpack.unpackb(packet.encode()) == packet._to_dict() == {"type": 2, "data": ["e", 1], "nsp": "/"}


async def test_the_redis_managers_listener_attributes_exist_after_construction() -> None:
    """RedisFanout reads manager.thread / redis / pubsub / channel; they exist before any connection."""
    fanout = RedisFanout("redis://127.0.0.1:1/0")
    manager = fanout.manager
    assert manager.channel == "rxstore"
    assert manager.redis is None and manager.pubsub is None
    assert asyncio.iscoroutinefunction(manager._thread)
