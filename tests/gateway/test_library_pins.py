"""Every private python-socketio / python-engineio name rxstore relies on, pinned.

rxstore's gateway reaches under the libraries' public API in two modules only,
one per library: rxstore/gateway/access/socketio_seam.py and engineio_seam.py
(each says which names; the rest of the gateway calls their functions and
subclasses their bases). A test below fails when any other rxstore module
touches a private name of either library, and one when a seam uses a private
name not pinned here. A new library version that renames, re-signs or stops
calling one of them fails here, by name, before it fails somewhere in the
behaviour tests (access/test_guard.py, delivery/test_fanout_scaleout.py, tests/faults/).
Each pin checks the name and its signature; where rxstore depends on the
library *calling* it, a behaviour test checks that too.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
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

import rxstore
from rxstore.gateway.access import engineio_seam, socketio_seam
from rxstore.gateway.access.bad_input import BadInputLog, WireGuard
from rxstore.gateway.access.guard import GuardedServer
from rxstore.gateway.delivery.fanout import RedisFanout
from rxstore.gateway.delivery.queued_manager import QueuedManager


def params(function: Callable[..., Any]) -> list[str]:
    """The parameter names of ``function``, ``self`` included."""
    return list(inspect.signature(function).parameters)


def calls(function: Callable[..., Any], *needles: str) -> bool:
    """Whether the source of ``function`` contains every one of ``needles``."""
    source = inspect.getsource(function)
    return all(needle in source for needle in needles)


# -- the pins: name and signature ---------------------------------------------------------------

PINNED: list[tuple[str, Callable[..., Any], list[str]]] = [
    # socketio_seam.EngineIOHooks overrides these three (python-socketio 5.18.1 calls them per
    # Engine.IO event) and calls them for its hooks' defaults.
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
    # queued_manager.QueuedManager overrides emit, keeping its parameters.
    (
        "AsyncManager.emit",
        socketio.AsyncManager.emit,
        ["self", "event", "data", "namespace", "room", "skip_sid", "callback", "to", "kwargs"],
    ),
    # socketio_seam.RedisListenerHooks overrides _listen and _redis_listen_with_retries, calls them and
    # _redis_connect; socketio_seam.start_listener runs _thread; initialize_manager calls initialize.
    ("AsyncRedisManager._listen", socketio.AsyncRedisManager._listen, ["self"]),
    (
        "AsyncRedisManager._redis_listen_with_retries",
        socketio.AsyncRedisManager._redis_listen_with_retries,
        ["self"],
    ),
    ("AsyncRedisManager._redis_connect", socketio.AsyncRedisManager._redis_connect, ["self"]),
    ("AsyncPubSubManager._thread", socketio.AsyncRedisManager._thread, ["self"]),
    # gateway_packets.GatewayPacket skips the binary scan; socketio_seam.packet_dict reads _to_dict().
    ("Packet.data_is_binary", socketio.packet.Packet.data_is_binary, ["data"]),
    ("Packet._to_dict", socketio.packet.Packet._to_dict, ["self"]),
    ("Packet.decode", socketio.packet.Packet.decode, ["self", "encoded_packet"]),
    ("MsgPackPacket.decode", socketio.msgpack_packet.MsgPackPacket.decode, ["self", "encoded_packet"]),
    # delivery.Delivery.send writes engine.io packets itself; engineio_seam.close_after_queued closes.
    ("engineio.AsyncServer.send_packet", engineio.AsyncServer.send_packet, ["self", "sid", "pkt"]),
    ("engineio.AsyncServer.send", engineio.AsyncServer.send, ["self", "sid", "data"]),
    (
        "engineio.AsyncSocket.close",
        engineio.async_socket.AsyncSocket.close,
        ["self", "wait", "abort", "reason"],
    ),
    # engineio_seam.bad_post_session tells a bad long-polling body by these frames of its traceback.
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


def _engineio_servers_build_their_modes_websocket_driver() -> bool:
    aiohttp_server = engineio.AsyncServer(async_mode="aiohttp")
    asgi_server = engineio.AsyncServer(async_mode="asgi")
    return (
        aiohttp_server._async["websocket"] is engineio.async_drivers.aiohttp.WebSocket
        and asgi_server._async["websocket"] is engineio.async_drivers.asgi.WebSocket
        and aiohttp_server._async is not asgi_server._async
    )


def _the_aiohttp_driver_keeps_its_response_in_sock() -> bool:
    driver = engineio.async_drivers.aiohttp.WebSocket(None, None)
    return driver._sock is None and calls(
        engineio.async_drivers.aiohttp.WebSocket.__call__, "self._sock = WebSocketResponse("
    )


def _an_asyncio_queue_counts_what_was_taken_and_not_done() -> bool:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(1)
    queue.get_nowait()
    taken: int = queue._unfinished_tasks  # type: ignore[attr-defined]
    queue.task_done()
    return taken == 1 and queue._unfinished_tasks == 0  # type: ignore[attr-defined]


PINNED_ATTRIBUTES: list[tuple[str, Callable[[], bool]]] = [
    # engineio_seam.websocket_driver / replace_websocket_driver: the server's own driver table.
    ("engineio.AsyncServer._async", _engineio_servers_build_their_modes_websocket_driver),
    # engineio_seam.websocket_response: the aiohttp driver's WebSocketResponse.
    ("aiohttp WebSocket._sock", _the_aiohttp_driver_keeps_its_response_in_sock),
    # engineio_seam.packets_waiting: a socket's queue counts a packet its writer took until it is sent.
    ("asyncio.Queue._unfinished_tasks", _an_asyncio_queue_counts_what_was_taken_and_not_done),
]


@pytest.mark.parametrize(("name", "function", "expected"), PINNED, ids=[pin[0] for pin in PINNED])
async def test_a_private_library_method_rxstore_uses_keeps_its_signature(
    name: str, function: Callable[..., Any], expected: list[str]
) -> None:
    assert params(function) == expected, f"{name} changed: rxstore relies on it"


@pytest.mark.parametrize(("name", "check"), PINNED_ATTRIBUTES, ids=[pin[0] for pin in PINNED_ATTRIBUTES])
async def test_a_private_library_attribute_rxstore_uses_is_still_there(
    name: str, check: Callable[[], bool]
) -> None:
    assert check(), f"{name} changed: rxstore relies on it"


# -- the seams: the only modules that touch the libraries' private names --------------------------

PACKAGE = Path(rxstore.__file__).parent
SEAMS = {Path(socketio_seam.__file__), Path(engineio_seam.__file__)}
PRIVATE = re.compile(r"_[a-z][A-Za-z0-9_]*")
OWN_NAMES = frozenset({"_connection", "_event", "_lock", "_publish", "_queue", "_run", "_send"})
"""rxstore's own attributes that share a name with a private one of the libraries: allowed on ``self``
and in a module that defines the name itself, nowhere else."""


def library_private_names() -> frozenset[str]:
    """Every private name python-socketio and python-engineio define or read, from their source.

    Plus ``_unfinished_tasks``: asyncio's, read through python-engineio's socket queues.
    """
    names = {"_unfinished_tasks"}
    for package in (socketio, engineio):
        for path in Path(package.__file__).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute):
                    names.add(node.attr)
    return frozenset(name for name in names if PRIVATE.fullmatch(name))


def touches(tree: ast.AST, names: frozenset[str]) -> Iterator[tuple[str, int, bool]]:
    """Each of ``names`` read, assigned, defined or spelled in a string in ``tree``: its line, and
    whether it is an attribute of ``self`` or ``cls`` (or a method defined)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names:
            owner = node.value
            yield node.attr, node.lineno, isinstance(owner, ast.Name) and owner.id in ("self", "cls")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
            yield node.name, node.lineno, True
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            yield node.value, node.lineno, False


def defines(tree: ast.AST) -> set[str]:
    """The names a module defines itself: methods, ``self.x = ...``, class-level fields."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


async def test_no_rxstore_module_but_the_two_seams_touches_a_private_name_of_either_library() -> None:
    """socketio_seam and engineio_seam hold every private python-socketio / python-engineio access."""
    private = library_private_names()
    outside: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in SEAMS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = defines(tree)
        for name, line, on_self in touches(tree, private):
            if name not in OWN_NAMES or not (on_self or name in defined):
                outside.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}")
    assert not outside, "private library names outside the seams:\n" + "\n".join(outside)


async def test_every_private_name_the_seams_use_is_pinned() -> None:
    """A private name a seam reads, overrides or calls has its pin above (a name or an attribute)."""
    pinned = {label.rsplit(".", 1)[-1] for label, *_ in PINNED + PINNED_ATTRIBUTES}
    used = {
        name
        for seam in SEAMS
        for name, *_ in touches(ast.parse(seam.read_text(encoding="utf-8")), library_private_names())
    }
    assert used, "the seams touch no private name: this test reads the wrong files"
    assert used <= pinned, f"used by a seam but not pinned: {sorted(used - pinned)}"


async def test_the_library_internals_rxstore_reads_are_where_it_reads_them() -> None:
    """The call sites the seams' overrides depend on (python-socketio 5.18.1 / python-engineio 4.15.1)."""
    # socketio_seam.EngineIOHooks: the server registers its _handle_eio_* with its engine.io server.
    assert calls(socketio.base_server.BaseServer.__init__, "self.eio.on('connect', self._handle_eio_connect)")
    # socketio_seam.RedisListenerHooks: the listener thread runs _listen, which runs the retrying listener.
    assert calls(socketio.AsyncRedisManager._thread, "self._listen()")
    assert calls(socketio.AsyncRedisManager._listen, "self._redis_listen_with_retries()")
    assert calls(socketio.AsyncRedisManager._redis_connect, "self.pubsub =", "self.redis =")
    assert calls(socketio.AsyncRedisManager.initialize, "self.thread =")
    # socketio_seam.initialize_manager: the first connection initializes the manager, once.
    assert calls(socketio.AsyncServer._handle_eio_connect, "self.manager_initialized = True")
    # engineio_seam: the websocket class an engine.io socket builds comes from the server's _async table.
    assert calls(engineio.async_socket.AsyncSocket._upgrade_websocket, "self.server._async['websocket']")
    # guard: the aiohttp websocket reads from _sock; the ASGI one from asgi_receive / asgi_send.
    assert calls(engineio.async_drivers.aiohttp.WebSocket.__call__, "self._sock =", "self.environ = environ")
    assert calls(engineio.async_drivers.asgi.WebSocket.__call__, "self.asgi_receive =", "self.asgi_send =")
    # delivery: a packet's binary scan happens through data_is_binary while it is built.
    assert calls(socketio.packet.Packet.__init__, "self.data_is_binary(")
    # socketio_seam.packet_dict: the msgpack packet encodes _to_dict().
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


async def test_engineio_calls_the_seams_eio_handlers_and_the_guarded_websocket() -> None:
    """EngineIOHooks' _handle_eio_* and GuardedServer's websocket class are the ones engine.io uses."""
    sio = guarded_server()
    for event in ("connect", "message", "disconnect"):
        handler = sio.eio.handlers[event]
        assert handler.__func__ is getattr(socketio_seam.EngineIOHooks, f"_handle_eio_{event}"), event
    assert engineio_seam.websocket_driver(sio.eio).__name__ == "_GuardedWebSocket"
    assert isinstance(sio.environ, dict) and sio.manager_initialized is False


async def test_an_engineio_socket_queue_counts_what_waits_for_the_client() -> None:
    """engineio_seam.packets_queued reads a socket's queue.qsize(); close_after_queued puts None in it."""
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
    """QueuedManager.emit: python-socketio's server emit passes the room on as it expects."""
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
    assert isinstance(manager, socketio_seam.RedisListenerHooks)
