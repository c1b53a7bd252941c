"""Hostile input at the wire (rxstore.gateway.access.guard): refused, counted, bounded, answered.

The attacker is a raw websocket (aiohttp) speaking Engine.IO / Socket.IO by
hand; the gateway is real, on SQLite (and PostgreSQL where the encoding of
non-finite numbers must agree).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from rxstore.gateway.access.guarded_websockets import websocket_limit
from rxstore.gateway.demo import Post, all_posts, create_demo_schema, register_demo_mutations
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.errors import CallRejected
from rxstore.protocol.events import BROADCAST
from tests.gateway.harness import AUTH, root_for, start_gateway
from tests.waiting import wait_for

MAX_FRAME = 64 << 10


def metric(gateway: RealtimeGateway, name: str, **labels: str) -> float:
    value = gateway.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RawSocket:
    """An Engine.IO websocket driven by hand: what an attacker (or a broken client) sends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[str] = []

    async def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def connect(self, auth: Any) -> str:
        """Send the Socket.IO CONNECT; return the answer (``40{"sid"...}`` or ``44{...}``)."""
        await self.send("40" + json.dumps(auth))
        return await self.next(lambda f: f.startswith(("40", "44")))

    async def next(self, match: Callable[[str], bool], timeout: float = 5.0) -> str:
        """The next text frame ``match`` accepts (pings are answered meanwhile)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"connection ended while waiting: {msg.type.name}")
                self.frames.append(msg.data)
                if msg.data == "2":
                    await self.send("3")
                elif match(msg.data):
                    return str(msg.data)

    async def closed(self, timeout: float = 5.0) -> bool:
        """Whether the gateway closes the connection within ``timeout`` (frames are read meanwhile)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self.ws.receive()
                    if msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        return True
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        self.frames.append(msg.data)
        except TimeoutError:
            return False


@asynccontextmanager
async def raw_socket(gateway: RealtimeGateway) -> AsyncIterator[RawSocket]:
    url = f"ws://127.0.0.1:{gateway.port}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        sock = RawSocket(ws)
        await sock.next(lambda f: f.startswith("0"))  # the Engine.IO OPEN
        yield sock


def ack_of(frame: str, ack_id: int) -> Any:
    prefix = f"43{ack_id}"
    assert frame.startswith(prefix), frame
    return json.loads(frame[len(prefix) :])[0]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gw = await start_gateway(f"sqlite:///{tmp_path}/app.db", max_frame_bytes=MAX_FRAME)
    register_demo_mutations(gw)
    yield gw
    await gw.stop()


def mallory() -> dict[str, Any]:
    return {"token": AUTH.issue("mallory"), "topics": ["posts"], "cursor": None}


# -- item 4: binary attachments ---------------------------------------------------------------


async def test_a_binary_attachment_flood_closes_the_socket_and_keeps_nothing(tmp_path: Path) -> None:
    """999,999,999 announced attachments, then up to 300 binary frames of 1000 KiB: cut, memory flat.

    (The default max_frame_bytes, 1 MiB: each frame on its own is within the limit.)
    """
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        await _binary_flood(gateway)
    finally:
        await gateway.stop()


async def _binary_flood(gateway: RealtimeGateway) -> None:
    async with raw_socket(gateway) as sock:
        assert (await sock.connect(mallory())).startswith("40")
        await sock.next(lambda f: "rxstore:live" in f)  # synced: a plain authenticated client
        before = rss()
        await sock.send('45999999999-["rxstore:mutate",{"_placeholder":true,"num":0}]')
        blob = b"\x00" * (1000 << 10)
        sent = 0
        try:
            while sent < 300 and not sock.ws.closed:
                await sock.send(blob)
                sent += 1
        except (ConnectionError, aiohttp.ClientError):
            pass  # the gateway cut the connection
        assert sock.ws.closed or await sock.closed()
    assert rss() - before < 32 << 20, f"the gateway grew {(rss() - before) >> 20} MiB after {sent} frames"
    assert gateway.sio._binary_packet == {}
    assert metric(gateway, "rxstore_bad_frames_total", reason="binary") == 1
    await wait_for(lambda: not gateway._clients, what="mallory forgotten")


async def test_binary_attachments_asking_for_an_ack_are_answered_then_closed(
    gateway: RealtimeGateway,
) -> None:
    """A BINARY_EVENT with an ack id gets invalid_payload (a RootStore's call fails fast), then the close."""
    async with raw_socket(gateway) as sock:
        await sock.connect(mallory())
        await sock.send('451-7["rxstore:mutate",{"_placeholder":true,"num":0}]')
        answer = await sock.next(lambda f: f.startswith("437"))
        assert ack_of(answer, 7)["error"] == "invalid_payload"
        assert await sock.closed()


async def test_binary_frames_close_an_unauthenticated_socket(gateway: RealtimeGateway) -> None:
    """A binary frame on the JSON protocol: closed, counted."""
    async with raw_socket(gateway) as sock:
        await sock.send(b"\x04binary")
        assert await sock.closed()
    assert metric(gateway, "rxstore_bad_frames_total", reason="binary") == 1


# -- item 5: the handshake timeout --------------------------------------------------------------


async def test_sockets_that_never_send_connect_are_closed_after_the_handshake_timeout(tmp_path: Path) -> None:
    """20 sockets answer pings but never CONNECT: all closed after handshake_timeout; alice stays."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", handshake_timeout=1.0)
    try:
        root, posts = root_for(gateway)
        async with root:
            await wait_for(lambda: posts.value is not None, what="alice's snapshot")
            async with contextlib_stack(gateway, 20) as socks:
                assert len(gateway.sio.eio.sockets) == 21
                await wait_for(
                    lambda: len(gateway.sio.eio.sockets) == 1, timeout=6, what="idle sockets closed"
                )
                for sock in socks:
                    assert await sock.closed(2)
            assert metric(gateway, "rxstore_handshake_timeouts_total") == 20
            assert len(gateway._clients) == 1 and root.connection_state.connected
    finally:
        await gateway.stop()


@asynccontextmanager
async def contextlib_stack(gateway: RealtimeGateway, count: int) -> AsyncIterator[list[RawSocket]]:
    url = f"ws://127.0.0.1:{gateway.port}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:
        socks = []
        for _ in range(count):
            ws = await session.ws_connect(url)
            sock = RawSocket(ws)
            await sock.next(lambda f: f.startswith("0"))
            socks.append(sock)
        try:
            yield socks
        finally:
            for sock in socks:
                await sock.ws.close()


async def test_a_refused_client_that_lingers_is_closed_too(tmp_path: Path) -> None:
    """A CONNECT refused (bad token) does not buy a socket more time than one that never sent it."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", handshake_timeout=0.5)
    try:
        async with raw_socket(gateway) as sock:
            assert (await sock.connect({"token": "nope"})).startswith("44")
            assert await sock.closed(5)
        assert metric(gateway, "rxstore_handshake_timeouts_total") == 1
    finally:
        await gateway.stop()


# -- item 6: log flooding -------------------------------------------------------------------------

MALFORMED = ["4x", "x1", "", "49", "4{", "44", "4"]
"""Two-byte (or shorter) frames that are no Engine.IO / Socket.IO packet."""


async def test_malformed_frames_give_one_short_line_per_client_and_a_counter(
    gateway: RealtimeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """300 malformed frames from 7 unauthenticated sockets: at most 7 warning lines, no traceback."""
    caplog.set_level(logging.WARNING)
    sent = 0
    for frame in MALFORMED:
        async with raw_socket(gateway) as sock:
            try:
                for _ in range(300 // len(MALFORMED) + 1):
                    await sock.send(frame)
                    sent += 1
            except ConnectionError:
                pass
            assert await sock.closed()
    assert sent >= len(MALFORMED)
    assert "Traceback" not in caplog.text
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(lines) <= len(MALFORMED), caplog.text
    assert len(caplog.text) < 1500, caplog.text
    assert metric(gateway, "rxstore_bad_frames_total", reason="malformed") == len(MALFORMED)


async def test_a_long_polling_body_that_is_no_payload_is_one_line_not_a_traceback(
    gateway: RealtimeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    base = f"{gateway.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as session:
        async with session.get(base) as response:
            sid = json.loads((await response.text())[1:])["sid"]
        async with session.post(f"{base}&sid={sid}", data=b"x1") as response:
            assert response.status == 200
    await wait_for(lambda: sid not in gateway.sio.eio.sockets, what="the session closed")
    assert "Traceback" not in caplog.text
    assert len([r for r in caplog.records if "bad client" in r.getMessage()]) == 1, caplog.text


async def test_bad_client_lines_are_rate_limited_and_the_rest_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """bad_input_log_per_minute=3 and 8 bad clients: 3 lines, 5 counted as suppressed."""
    caplog.set_level(logging.WARNING)
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", bad_input_log_per_minute=3)
    try:
        for _ in range(8):
            async with raw_socket(gateway) as sock:
                await sock.send("4x")
                assert await sock.closed()
        assert len([r for r in caplog.records if "bad client" in r.getMessage()]) == 3
        assert metric(gateway, "rxstore_bad_input_log_suppressed_total") == 5
        assert metric(gateway, "rxstore_bad_frames_total", reason="malformed") == 8
    finally:
        await gateway.stop()


async def test_a_real_gateway_bug_is_still_logged_with_its_traceback(
    gateway: RealtimeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Quieting bad input must not hide errors of the gateway's own code."""
    caplog.set_level(logging.WARNING)

    async def broken(*args: Any) -> None:
        raise RuntimeError("a bug in the connect handler")

    gateway.sio.handlers["/"]["connect"] = broken
    async with raw_socket(gateway) as sock:
        await sock.send("40" + json.dumps(mallory()))
        await wait_for(lambda: "a bug in the connect handler" in caplog.text, what="the bug logged")
    assert "Traceback" in caplog.text


# -- item 8: non-finite numbers ------------------------------------------------------------------


async def test_non_finite_numbers_sent_by_a_client_are_refused_with_invalid_payload(
    gateway: RealtimeGateway,
) -> None:
    """Infinity, NaN and 1e999 in a mutation or a broadcast: invalid_payload, nothing written."""
    root, posts = root_for(gateway, "mallory")
    async with root:
        await wait_for(lambda: posts.value is not None, what="snapshot")
        for value in (math.inf, -math.inf, math.nan):
            with pytest.raises(CallRejected) as caught:
                await root.mutate("save_post", {"id": "p1", "title": "t", "updated_at": value}, timeout=5)
            assert caught.value.code == "invalid_payload"
        answer = await root.call(BROADCAST, {"topic": "posts", "event": "hi", "data": [math.nan]}, timeout=5)
        assert answer["error"] == "invalid_payload"
    async with raw_socket(gateway) as sock:
        await sock.connect(mallory())
        await sock.send(
            '4211["rxstore:mutate",{"id":"m","name":"save_post","args":{"id":"p","updated_at":1e999}}]'
        )
        assert ack_of(await sock.next(lambda f: f.startswith("4311")), 11)["error"] == "invalid_payload"
    assert await all_posts(gateway.log) == {}


async def test_sqlite_and_postgresql_send_non_finite_values_as_the_same_strings(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Outside writes of inf/-inf (and NaN on PostgreSQL): "Infinity"/"-Infinity"/"NaN" in every frame."""
    for url, nan in ((f"sqlite:///{tmp_path}/app.db", False), (pg_dsn, True)):
        gateway = await start_gateway(url)
        try:
            sql = (
                "INSERT INTO posts (id, title, author, updated_at) VALUES ('a', 't', 'bob', 1e999), "
                "('b', 't', 'bob', -1e999)"
                if not nan
                else "INSERT INTO posts (id, title, author, updated_at) VALUES "
                "('a', 't', 'bob', 'Infinity'), ('b', 't', 'bob', '-Infinity'), ('n', 't', 'bob', 'NaN')"
            )
            await gateway.log.execute(sql)
            async with raw_socket(gateway) as sock:
                await sock.connect(mallory())
                await sock.next(lambda f: "rxstore:live" in f)
                await gateway.log.execute(
                    sql.replace("'a'", "'c'").replace("'b'", "'d'").replace("'n'", "'m'")
                )
                await sock.next(
                    lambda f: ('"c"' in f and "rxstore:batch" in f) or ("post_update" in f and '"c"' in f)
                )
            values: dict[str, Any] = {}
            for frame in sock.frames:
                if frame.startswith("42"):
                    collect(json.loads(frame[2:], parse_constant=not_json), values)
            expected = {"a": "Infinity", "b": "-Infinity", "c": "Infinity", "d": "-Infinity"}
            if nan:
                expected |= {"n": "NaN", "m": "NaN"}
            assert values == expected, (url, values)
        finally:
            await gateway.stop()


def not_json(name: str) -> Any:
    raise AssertionError(f"{name} in a frame: not JSON (RFC 8259)")


def collect(data: Any, values: dict[str, Any]) -> None:
    """Every row's ``updated_at`` by id, from snapshot and batch frames."""
    if isinstance(data, dict):
        if "id" in data and "updated_at" in data:
            values[data["id"]] = data["updated_at"]
        for value in data.values():
            collect(value, values)
    elif isinstance(data, list):
        for value in data:
            collect(value, values)


async def test_msgpack_gateway_refuses_non_finite_numbers_too(tmp_path: Path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", serializer="msgpack")
    register_demo_mutations(gateway)
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    try:
        await client.connect(gateway.url, auth=mallory(), transports=["websocket"])
        ack = await client.call(
            "rxstore:mutate", {"id": "m", "name": "save_post", "args": {"id": "p", "updated_at": math.inf}}
        )
        assert ack["error"] == "invalid_payload", ack
        assert await all_posts(gateway.log) == {}
    finally:
        await client.disconnect()
        await gateway.stop()


# -- item 9: payloads python-socketio could not decode, oversize frames ----------------------------


async def test_an_integer_of_over_100_digits_gets_invalid_payload_not_a_timeout(
    gateway: RealtimeGateway,
) -> None:
    """RootStore.mutate with a 101-digit likes: CallRejected(invalid_payload) at once, not CallTimeout."""
    root, posts = root_for(gateway, "mallory")
    async with root:
        await wait_for(lambda: posts.value is not None, what="snapshot")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CallRejected) as caught:
            await root.mutate("save_post", {"id": "p1", "title": "t", "likes": 10**100}, timeout=8)
        assert caught.value.code == "invalid_payload" and "100" in str(caught.value)
        assert loop.time() - started < 3
    assert await all_posts(gateway.log) == {}


async def test_an_oversize_frame_that_asks_for_an_ack_is_answered_and_the_connection_kept(
    gateway: RealtimeGateway,
) -> None:
    """Over max_frame_bytes (within the websocket limit): invalid_payload naming it; far over: cut."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(gateway.url, auth=mallory(), transports=["websocket"])
    try:
        big = {"id": "m", "name": "save_post", "args": {"id": "p", "title": "x" * (MAX_FRAME + 100)}}
        ack = await client.call("rxstore:mutate", big, timeout=5)
        assert ack["error"] == "invalid_payload" and str(MAX_FRAME) in ack["message"], ack
        assert client.connected
        assert metric(gateway, "rxstore_bad_input_total", reason="invalid_payload") == 1
        huge = {"id": "m", "name": "save_post", "args": {"title": "x" * websocket_limit(MAX_FRAME)}}
        await client.emit("rxstore:mutate", huge)
        await wait_for(lambda: not client.connected, what="the oversize sender cut")
    finally:
        await client.disconnect()
    assert metric(gateway, "rxstore_bad_frames_total", reason="oversize_closed") == 1
    assert await all_posts(gateway.log) == {}


async def test_an_oversize_auth_payload_gets_a_bad_request_refusal(gateway: RealtimeGateway) -> None:
    async with raw_socket(gateway) as sock:
        answer = await sock.connect({**mallory(), "topics": ["posts"] * (MAX_FRAME // 8)})
    refusal = json.loads(answer[2:])
    assert refusal["data"]["reason"] == "bad_request" and str(MAX_FRAME) in refusal["data"]["message"]


async def test_an_integer_of_over_100_digits_in_auth_gets_a_bad_request_refusal(
    gateway: RealtimeGateway,
) -> None:
    async with raw_socket(gateway) as sock:
        answer = await sock.connect({**mallory(), "cursor": 10**100})
    assert json.loads(answer[2:])["data"]["reason"] == "bad_request"


async def test_postgresql_log_mirrors_like_sqlite_after_refusals(pg_dsn: str) -> None:
    """Refused payloads leave a PostgreSQL gateway serving: a valid mutation after them is applied."""
    log = open_change_log(pg_dsn)
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH, max_frame_bytes=MAX_FRAME)
    register_demo_mutations(gateway)
    await gateway.start(port=0)
    try:
        root, posts = root_for(gateway, "mallory")
        async with root:
            await wait_for(lambda: posts.value is not None, what="snapshot")
            with pytest.raises(CallRejected):
                await root.mutate("save_post", {"id": "p1", "title": "t", "likes": 10**100}, timeout=5)
            await root.mutate("save_post", {"id": "p1", "title": "ok", "updated_at": 1.5}, timeout=5)
            await wait_for(lambda: "p1" in posts.value, what="the valid mutation mirrored")
        assert (await all_posts(log))["p1"] == Post(id="p1", title="ok", author="mallory", updated_at=1.5)
    finally:
        await gateway.stop()
