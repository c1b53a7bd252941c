"""rxstore.gateway.delivery.wire: shared live frames written straight to idle websocket clients.

Real gateways on SQLite on 127.0.0.1; RootStore clients (python-socketio over a websocket, no
compression: the direct path), raw aiohttp websocket clients (one asking for permessage-deflate:
the ordinary path; one that stops reading). Order, completeness, metrics, bounds, and the
library internals the direct path relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import engineio.async_drivers.aiohttp
import engineio.async_socket
import pytest

from rxstore.gateway.delivery.wire import Link, websocket_bytes, websocket_frame
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.errors import RxStoreError
from rxstore.protocol.events import BATCH, LIVE, SNAPSHOT
from tests.gateway.harness import AUTH, SeqCounter, root_for, start_gateway
from tests.gateway.raw_socketio import read_events
from tests.waiting import wait_for

INSERT = (
    "INSERT INTO posts (id, title, body, author, private, likes, updated_at) "
    "VALUES (?, ?, ?, 'alice', 0, 0, 0.0)"
)
LIKE = "UPDATE posts SET likes = likes + 1 WHERE id = ?"


@contextlib.asynccontextmanager
async def gateway_at(tmp_path: Path, **options: Any) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path / 'direct.db'}", **options)
    try:
        yield gateway
    finally:
        await gateway.stop()


class RawClient:
    """A Socket.IO client over one raw aiohttp websocket, recording the seqs of its changes in order."""

    def __init__(self, gateway: RealtimeGateway, *, compress: int = 0) -> None:
        self.url = gateway.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.compress = compress
        self.seqs: list[int] = []
        self.snapshot_rows = 0
        self.live = False
        self.reading = asyncio.Event()
        self.reading.set()
        self.session = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> RawClient:
        self.ws = ws = await self.session.ws_connect(self.url, compress=self.compress, max_msg_size=0)
        await ws.receive()  # the engine.io OPEN packet
        await ws.send_str("40" + json.dumps({"token": AUTH.issue("alice"), "topics": ["posts"]}))
        self.task = asyncio.create_task(self._read(ws))
        await wait_for(lambda: self.live, 10, "rxstore:live")
        return self

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await read_events(ws, self._on_event, self.reading)

    def _on_event(self, name: str, payload: Any) -> None:
        if name == BATCH:
            self.seqs.extend(event[1]["seq"] for event in payload["events"])
        elif name == SNAPSHOT:
            self.snapshot_rows += len(payload["records"])
        elif name == LIVE:
            self.live = True

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        await self.session.close()


def direct_writes(gateway: RealtimeGateway) -> float:
    return float(gateway.metrics.direct_writes._value.get())


def in_order(seqs: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(seqs))


# -- the bytes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "header"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_a_websocket_frame_has_the_rfc6455_header_for_every_length(size: int, header: int) -> None:
    """FIN + opcode, no mask bit, and a 7-, 16- or 64-bit length (RFC 6455, 5.2)."""
    frame = websocket_frame(b"x" * size, 0x2)
    assert frame[0] == 0x82 and frame[1] & 0x80 == 0 and len(frame) == header + size
    length = frame[1] if header == 2 else int.from_bytes(frame[2:header], "big")
    assert length == size and frame[header:] == b"x" * size


def test_the_wire_bytes_of_a_frame_are_engineio_message_packets() -> None:
    """A text packet travels as '4' + its text; a binary one as its bytes, in a binary frame."""
    text = engineio.packet.Packet(engineio.packet.MESSAGE, '2["x",1]')
    binary = engineio.packet.Packet(engineio.packet.MESSAGE, b"\x01\x02")
    assert websocket_bytes([text, binary]) == b"\x81\x094" + b'2["x",1]' + b"\x82\x02\x01\x02"


# -- order and completeness ----------------------------------------------------------------------


async def test_frames_arrive_complete_and_in_order_under_a_stream_and_metrics_count_them(
    tmp_path: Path,
) -> None:
    """Three RootStore clients, 300 changes in 150 transactions: each gets every seq once, in order,
    most frames by the direct path; rxstore_events_sent counts every change to every client."""
    async with gateway_at(tmp_path) as gateway:
        roots = [root_for(gateway) for _ in range(3)]
        counters = [SeqCounter(root) for root, _ in roots]
        async with contextlib.AsyncExitStack() as stack:
            for root, _ in roots:
                await stack.enter_async_context(root)
            await wait_for(lambda: sum(c.live for c in gateway._clients.values()) == 3, 10, "3 live")
            for i in range(150):  # bodies of 7-bit, 16-bit and 64-bit websocket lengths
                body = "b" * (70_000 if i % 50 == 7 else 300 if i % 2 else 10)
                await gateway.log.execute(INSERT, f"p{i}", f"post {i}", body)
                await gateway.log.execute(LIKE, f"p{i}")
            head = await gateway.log.head()
            await wait_for(lambda: all(len(c.seen) == 300 for c in counters), 20, "every change")
            for counter, (_, posts) in zip(counters, roots, strict=True):
                assert counter.seen == sorted(set(counter.seen)) and counter.seen[-1] == head
                assert len(posts.value) == 150 and all(p.likes == 1 for p in posts.value.values())
            assert direct_writes(gateway) > 0
            await wait_for(lambda: gateway.metrics.sent._value.get() == 900, 5, "900 sent")


async def test_msgpack_frames_go_the_direct_way_as_binary_websocket_frames(tmp_path: Path) -> None:
    """With serializer="msgpack" a shared frame travels as a binary websocket frame (as
    python-engineio sends it): a msgpack RootStore gets every change once, in order, small and big."""
    from rxstore import SocketIOTransport

    async with gateway_at(tmp_path, serializer="msgpack") as gateway:
        root, posts = root_for(gateway, transport=SocketIOTransport(serializer="msgpack"))
        counter = SeqCounter(root)
        async with root:
            await wait_for(lambda: any(c.live for c in gateway._clients.values()), 10, "live")
            for i in range(60):
                await gateway.log.execute(INSERT, f"p{i}", f"post {i}", "b" * (70_000 if i == 30 else 100))
            await wait_for(lambda: len(posts.value) == 60, 20, "60 rows")
            assert counter.seen == sorted(set(counter.seen)) and len(counter.seen) == 60
            assert posts.value["p30"].body == "b" * 70_000
            assert direct_writes(gateway) > 0


async def test_a_client_connecting_while_changes_stream_gets_its_snapshot_before_any_batch(
    tmp_path: Path,
) -> None:
    """Clients connect one after another while changes stream at full speed: no batch overtakes a
    snapshot, a replay or rxstore:live (the router never reports a snapshot older than its cursor,
    each client sees every change after its snapshot once and in order) and each table ends equal to
    the database."""
    async with gateway_at(tmp_path, frame_bytes=4096) as gateway:
        for i in range(300):  # a snapshot of many frames
            await gateway.log.execute(INSERT, f"p{i}", f"post {i}", "b" * 200)
        stop = asyncio.Event()

        async def stream() -> None:
            i = 0
            while not stop.is_set():
                await gateway.log.execute(LIKE, f"p{i % 300}")
                i += 1
                await asyncio.sleep(0)

        writer = asyncio.create_task(stream())
        errors: list[RxStoreError] = []
        counters: list[SeqCounter] = []
        async with contextlib.AsyncExitStack() as stack:
            roots = []
            try:
                for _ in range(6):
                    root, posts = root_for(gateway)
                    root.errors.subscribe(errors.append)
                    counters.append(SeqCounter(root))
                    await stack.enter_async_context(root)
                    roots.append(posts)
                    await wait_for(lambda posts=posts: len(posts.value) == 300, 20, "its snapshot")
            finally:
                stop.set()
                await writer
            rows = await gateway.log.fetch("SELECT id, likes FROM posts")
            expected = {row["id"]: row["likes"] for row in rows}
            for posts in roots:
                await wait_for(
                    lambda posts=posts: {k: p.likes for k, p in posts.value.items()} == expected,
                    20,
                    "the table equal to the database",
                )
        assert errors == []
        for counter in counters:  # from its snapshot on, every change once and in order
            assert counter.seen == list(range(counter.seen[0], counter.seen[0] + len(counter.seen)))
        assert direct_writes(gateway) > 0


async def test_a_frame_queued_right_after_a_send_never_overtakes_it(tmp_path: Path) -> None:
    """delivery.send hands a frame to python-engineio; a frame enqueued next (direct path otherwise
    idle) waits behind it, because python-engineio still holds it: the client sees both in order."""
    async with gateway_at(tmp_path) as gateway:
        raw = await RawClient(gateway).connect()
        try:
            client = next(iter(gateway._clients.values()))
            delivery = gateway.delivery
            for seq in range(1, 41, 2):
                first = delivery.batch_frames([["post_update", {"seq": seq, "record": {"id": "x"}}]])[0]
                then = delivery.batch_frames([["post_update", {"seq": seq + 1, "record": {"id": "x"}}]])[0]
                await delivery.send(client, first)
                assert delivery.enqueue(client, then)
                await wait_for(lambda seq=seq: len(raw.seqs) == seq + 1, 10, "the pair")
            assert raw.seqs == list(range(1, 41))
            assert isinstance(client.link, Link)
        finally:
            await raw.close()


async def test_a_frame_never_overtakes_one_still_in_the_clients_queue(tmp_path: Path) -> None:
    """A frame queued while python-engineio was busy stays ahead of the next one, even when the
    websocket is idle again before the client's writer task has run: the next one is queued too."""
    async with gateway_at(tmp_path) as gateway:
        raw = await RawClient(gateway).connect()
        try:
            client = next(iter(gateway._clients.values()))
            delivery = gateway.delivery
            assert delivery.enqueue(client, delivery.batch_frames([["post_update", {"seq": 1}]])[0])
            await wait_for(lambda: raw.seqs == [1], 10, "the first change")
            link = client.link
            assert isinstance(link, Link)
            for seq in range(2, 42, 2):
                link.ws.sending += 1  # python-engineio is writing to the websocket, as far as rxstore knows
                assert delivery.enqueue(client, delivery.batch_frames([["post_update", {"seq": seq}]])[0])
                assert client.queue  # not idle: queued
                link.ws.sending -= 1  # idle again, and the client's writer task has not run yet
                assert delivery.enqueue(client, delivery.batch_frames([["post_update", {"seq": seq + 1}]])[0])
                await wait_for(lambda seq=seq: len(raw.seqs) == seq + 1, 10, "the pair")
            assert raw.seqs == list(range(1, 42))
        finally:
            await raw.close()


async def test_a_frame_for_a_client_that_left_is_not_queued_and_counts_no_bytes(tmp_path: Path) -> None:
    """Work that began before a client left (a broadcast, a subscribe's snapshot) ends at enqueue:
    nothing is queued for it, rxstore_queued_bytes stays 0, and enqueue reports no overflow."""
    async with gateway_at(tmp_path) as gateway:
        raw = await RawClient(gateway).connect()
        try:
            client = next(iter(gateway._clients.values()))
            delivery = gateway.delivery
            link = client.link
            gateway.sessions.forget(client.sid)  # it left; a broadcast still holds it
            if isinstance(link, Link):
                link.ws.sending += 1  # the socket busy: a live client's frame would be queued
            for seq in range(1, 6):
                assert delivery.enqueue(client, delivery.batch_frames([["post_update", {"seq": seq}]])[0])
            assert not client.queue
            assert gateway.metrics.queued_bytes._value.get() == 0
        finally:
            await raw.close()


# -- clients that take the ordinary path -----------------------------------------------------------


async def test_a_compressing_client_beside_direct_ones_gets_correct_frames_the_ordinary_way(
    tmp_path: Path,
) -> None:
    """A websocket client that negotiates permessage-deflate is never linked (aiohttp compresses
    its frames) and gets every change in order, beside RootStore clients on the direct path."""
    async with gateway_at(tmp_path) as gateway:
        deflate = await RawClient(gateway, compress=15).connect()
        plain = await RawClient(gateway).connect()
        root, posts = root_for(gateway)
        try:
            async with root:
                await wait_for(lambda: sum(c.live for c in gateway._clients.values()) == 3, 10, "3 live")
                for i in range(100):
                    await gateway.log.execute(INSERT, f"p{i}", f"post {i}", "body " * 50)
                await wait_for(lambda: len(posts.value) == 100, 20, "the RootStore's 100 rows")
                await wait_for(lambda: len(deflate.seqs) == 100 == len(plain.seqs), 20, "100 each")
                assert deflate.seqs == plain.seqs and in_order(deflate.seqs)
                links = {c.sid: c.link for c in gateway._clients.values()}
                assert sorted(type(link).__name__ for link in links.values()) == ["Link", "Link", "bool"]
                assert direct_writes(gateway) >= 100
        finally:
            await deflate.close()
            await plain.close()


async def test_the_old_path_is_kept_when_direct_delivery_is_off(tmp_path: Path) -> None:
    """Delivery.direct = False (the benchmark's 'before'): no direct write, every change delivered."""
    async with gateway_at(tmp_path) as gateway:
        gateway.delivery.direct = False
        plain = await RawClient(gateway).connect()
        try:
            for i in range(20):
                await gateway.log.execute(INSERT, f"p{i}", f"post {i}", "body")
            await wait_for(lambda: len(plain.seqs) == 20, 10, "20 changes")
            assert direct_writes(gateway) == 0 and in_order(plain.seqs)
        finally:
            await plain.close()


# -- bounds --------------------------------------------------------------------------------------


async def test_a_client_that_stops_reading_while_frames_go_the_direct_way_is_dropped(tmp_path: Path) -> None:
    """A linked client stops reading: its TCP buffer fills, then its queue; it is dropped (queue
    bytes or client_send_timeout) while a RootStore beside it gets every change."""
    async with gateway_at(tmp_path, client_queue_bytes=1 << 20, client_send_timeout=2.0) as gateway:
        slow = await RawClient(gateway).connect()
        root, posts = root_for(gateway)
        try:
            async with root:
                await wait_for(lambda: sum(c.live for c in gateway._clients.values()) == 2, 10, "2 live")
                await gateway.log.execute(INSERT, "p0", "post 0", "first")
                await wait_for(lambda: slow.seqs != [], 10, "the first change")
                assert direct_writes(gateway) >= 1
                slow.reading.clear()
                assert slow.ws is not None
                transport = slow.ws._response.connection.transport  # type: ignore[union-attr]
                assert transport is not None
                transport.pause_reading()  # the kernel buffers fill, then the gateway's
                dropped = gateway.metrics.dropped._value.get() + gateway.metrics.stalled._value.get()
                body = "x" * 16_000
                i = 1
                while len(gateway._clients) == 2 and i < 3000:
                    await gateway.log.execute(INSERT, f"p{i}", f"post {i}", body)
                    i += 1
                await wait_for(lambda: len(gateway._clients) == 1, 15, "the slow client dropped")
                after = gateway.metrics.dropped._value.get() + gateway.metrics.stalled._value.get()
                assert after == dropped + 1
                await wait_for(lambda: len(posts.value) == i, 20, "every row at the RootStore")
        finally:
            await slow.close()


# -- the internals the direct path relies on -----------------------------------------------------


def test_the_library_internals_the_direct_path_relies_on_are_still_there() -> None:
    """python-engineio's aiohttp driver (handler, _sock, environ, send), AsyncSocket's state and
    queue, asyncio.Queue's unfinished-task count, aiohttp's one-write uncompressed frames."""
    driver = engineio.async_drivers.aiohttp.WebSocket
    assert list(inspect.signature(driver.__init__).parameters) == ["self", "handler", "server"]
    assert "self._sock = WebSocketResponse(" in inspect.getsource(driver.__call__)
    assert "self.environ = environ" in inspect.getsource(driver.__call__)
    assert "send_str" in inspect.getsource(driver.send)
    handler = inspect.getsource(engineio.async_socket.AsyncSocket._websocket_handler)
    assert "await ws.send(pkt.encode())" in handler and "self.upgraded = True" in handler
    assert "self.queue.task_done()" in inspect.getsource(engineio.async_socket.AsyncSocket.poll)
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(1)
    queue.get_nowait()
    assert queue._unfinished_tasks == 1  # type: ignore[attr-defined]
    from aiohttp._websocket.writer import WebSocketWriter

    assert "self.transport.write(header + message)" in inspect.getsource(
        WebSocketWriter._write_websocket_frame
    )
