"""rxstore.client.transport.SocketIOTransport against a real python-socketio server on 127.0.0.1.

Frames reach the bound callback in order, a lost link is reported (and a closed one is not),
refusals and unreachable gateways are told apart, emits and calls reach the server, and a call
ends on its timeout or on a dropped link.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import attrs
import pytest
import socketio
from aiohttp import web

from rxstore.client.transport import SocketIOTransport
from rxstore.protocol.errors import CallTimeout, ConnectionRefused, NotConnected, TransportError
from tests.services import free_port
from tests.waiting import wait_for

REFUSE = "refuse-me"


@attrs.define
class Server:
    sio: socketio.AsyncServer
    url: str
    auths: list[Any] = attrs.Factory(list)
    sids: list[str] = attrs.Factory(list)
    got: list[tuple[str, Any]] = attrs.Factory(list)


async def start(serializer: Literal["json", "msgpack"] = "json") -> tuple[Server, web.AppRunner]:
    sio = socketio.AsyncServer(
        async_mode="aiohttp", serializer="msgpack" if serializer == "msgpack" else "default"
    )
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server = Server(sio, f"http://127.0.0.1:{port}")

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        server.auths.append(auth)
        if isinstance(auth, dict) and auth.get("token") == REFUSE:
            details = {"reason": "invalid_token", "message": "the token is not valid"}
            raise socketio.exceptions.ConnectionRefusedError("invalid_token", details)  # as the gateway
        server.sids.append(sid)

    @sio.on("note")
    async def note(sid: str, data: Any) -> None:
        server.got.append(("note", data))

    @sio.on("echo")
    async def echo(sid: str, data: Any) -> Any:
        return {"echo": data}

    @sio.on("never")
    async def never(sid: str, data: Any = None) -> None:
        await asyncio.sleep(30)  # the point: an acknowledgement that does not come in time

    @sio.on("hang_up")
    async def hang_up(sid: str, data: Any = None) -> None:
        await sio.disconnect(sid)

    return server, runner


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state, runner = await start()
    yield state
    await runner.cleanup()


@attrs.define
class Bound:
    """A transport with recording callbacks."""

    transport: SocketIOTransport
    frames: list[tuple[str, Any]] = attrs.Factory(list)
    lost: list[str] = attrs.Factory(list)


def bound(**options: Any) -> Bound:
    b = Bound(SocketIOTransport(connect_timeout=5.0, **options))
    b.transport.bind(lambda name, data: b.frames.append((name, data)), b.lost.append)
    return b


async def test_connect_sends_the_auth_payload_and_frames_arrive_in_order(server: Server) -> None:
    b = bound()
    await b.transport.connect(server.url, {"token": "t", "topics": ["posts"], "cursor": 3})
    try:
        assert server.auths == [{"token": "t", "topics": ["posts"], "cursor": 3}]
        sid = server.sids[0]
        for i in range(20):
            await server.sio.emit("post_update", {"seq": i}, to=sid)
        await server.sio.emit("many", (1, 2), to=sid)  # several arguments arrive as a list
        await server.sio.emit("bare", to=sid)  # none as None
        await wait_for(lambda: len(b.frames) == 22, 5, "22 frames")
        assert b.frames == [("post_update", {"seq": i}) for i in range(20)] + [
            ("many", [1, 2]),
            ("bare", None),
        ]
    finally:
        await b.transport.disconnect()


async def test_a_link_the_server_drops_is_reported_lost_once(server: Server) -> None:
    b = bound()
    await b.transport.connect(server.url, {})
    await server.sio.disconnect(server.sids[0])
    await wait_for(lambda: len(b.lost) == 1, 5, "the lost link reported")
    with pytest.raises(NotConnected):
        await b.transport.emit("note", 1)
    assert len(b.lost) == 1


async def test_a_link_closed_by_the_transport_is_not_reported_lost(server: Server) -> None:
    b = bound()
    await b.transport.connect(server.url, {})
    await b.transport.disconnect()
    await wait_for(
        lambda: not server.sio.manager.rooms.get("/", {}).get(server.sids[0]), 5, "gone at the server"
    )
    assert b.lost == []


async def test_a_refusal_is_connection_refused_with_the_gateways_reason(server: Server) -> None:
    b = bound()
    with pytest.raises(ConnectionRefused) as refused:
        await b.transport.connect(server.url, {"token": REFUSE})
    assert refused.value.reason == "invalid_token"
    assert "the token is not valid" in str(refused.value)


async def test_an_unreachable_gateway_is_a_transport_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransportError, match=f"cannot connect to {url}") as failed:
        await bound().transport.connect(url, {})
    assert not isinstance(failed.value, ConnectionRefused)


async def test_emit_reaches_the_server_and_call_returns_its_acknowledgement(server: Server) -> None:
    b = bound()
    await b.transport.connect(server.url, {})
    try:
        await b.transport.emit("note", {"n": 1})
        assert await b.transport.call("echo", [1, "x"], timeout=5) == {"echo": [1, "x"]}
        await wait_for(lambda: server.got == [("note", {"n": 1})], 5, "the note at the server")
    finally:
        await b.transport.disconnect()


async def test_a_call_without_acknowledgement_times_out_after_its_timeout(server: Server) -> None:
    b = bound()
    await b.transport.connect(server.url, {})
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(CallTimeout, match=r"within 0\.3 s"):
            await b.transport.call("never", None, timeout=0.3)
        assert 0.3 <= loop.time() - started < 3
    finally:
        await b.transport.disconnect()


async def test_a_call_ends_at_once_when_the_link_drops_before_the_acknowledgement(server: Server) -> None:
    b = bound()
    await b.transport.connect(server.url, {})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CallTimeout, match="dropped"):
        await b.transport.call("hang_up", None, timeout=20)
    assert loop.time() - started < 5, "waited for the timeout instead of the drop"


async def test_emit_and_call_before_connecting_are_not_connected() -> None:
    transport = SocketIOTransport()
    with pytest.raises(NotConnected):
        await transport.emit("note", 1)
    with pytest.raises(NotConnected):
        await transport.call("echo", 1, timeout=1)


def test_a_max_frame_below_one_kib_is_refused() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        SocketIOTransport(max_frame_bytes=1000)


async def test_a_frame_over_max_frame_bytes_ends_the_link(server: Server) -> None:
    b = bound(max_frame_bytes=4096)
    await b.transport.connect(server.url, {})
    await server.sio.emit("small", "x" * 1000, to=server.sids[0])
    await server.sio.emit("big", "x" * 10_000, to=server.sids[0])
    await wait_for(lambda: len(b.lost) == 1, 5, "the link ended by the oversize frame")
    assert b.frames == [("small", "x" * 1000)]


async def test_the_msgpack_serializer_talks_to_a_msgpack_server() -> None:
    server, runner = await start("msgpack")
    b = bound(serializer="msgpack")
    try:
        await b.transport.connect(server.url, {"token": "t"})
        await server.sio.emit("bytes", {"raw": b"\x00\x01", "n": 2**40}, to=server.sids[0])
        await wait_for(lambda: bool(b.frames), 5, "a msgpack frame")
        assert b.frames == [("bytes", {"raw": b"\x00\x01", "n": 2**40})]
        assert await b.transport.call("echo", b"\xff", timeout=5) == {"echo": b"\xff"}
    finally:
        await b.transport.disconnect()
        await runner.cleanup()


def open_sessions() -> int:
    """aiohttp client sessions alive and not closed (each one holds a connector and its sockets)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed)


async def test_a_connect_cancelled_midway_closes_what_it_opened() -> None:
    """A connect cancelled while the gateway has not answered (a connect timeout, a teardown):
    the HTTP session it opened is closed, not left to the garbage collector's warning."""
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()  # a gateway that takes the TCP connection and never answers the upgrade
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    before = open_sessions()
    try:
        transport = SocketIOTransport(connect_timeout=30)
        connecting = asyncio.ensure_future(transport.connect(f"http://127.0.0.1:{port}", {"token": "t"}))
        await asyncio.wait_for(accepted.wait(), 10)
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        assert open_sessions() == before
    finally:
        listener.close()
        await listener.wait_closed()
