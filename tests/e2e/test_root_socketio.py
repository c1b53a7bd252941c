"""RootStore against a real python-socketio AsyncServer on aiohttp at 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import socketio
from aiohttp import web

from rxstore import Backoff, ConnectionRefused, ConnectionState, ConnectionStatus, RootStore, TableStore
from rxstore.client.connection import Retry
from rxstore.client.transport import SocketIOTransport
from rxstore.testing import change_frame
from tests.waiting import wait_for

TOKEN = "secret-token"


@attrs.frozen
class Post:
    id: str
    title: str


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


@attrs.define
class Server:
    sio: Any
    url: str
    auths: list[dict[str, Any]] = attrs.field(factory=list)
    sids: list[str] = attrs.field(factory=list)
    accepting: bool = True


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert isinstance(site._server, asyncio.Server)
    port = site._server.sockets[0].getsockname()[1]
    state = Server(sio, f"http://127.0.0.1:{port}")

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any) -> None:
        state.auths.append(auth)
        if not isinstance(auth, dict) or auth.get("token") != TOKEN:
            raise socketio.exceptions.ConnectionRefusedError(
                "invalid_token", {"reason": "invalid_token", "message": "the token is not valid"}
            )
        if not state.accepting:
            raise socketio.exceptions.ConnectionRefusedError(
                "unavailable", {"reason": "unavailable", "message": "try again later"}
            )
        state.sids.append(sid)

    yield state
    await runner.cleanup()


async def test_root_store_follows_post_updates_from_a_real_server(server: Server) -> None:
    posts = PostStore()
    async with RootStore(server.url, stores=[posts], token=TOKEN) as root:
        assert root.connection_state.status is ConnectionStatus.CONNECTED
        assert server.auths[-1] == {
            "token": TOKEN,
            "topics": ["posts"],
            "cursor": None,
            "cursor_ts": None,
            "epoch": None,
        }
        for frame in (
            change_frame("posts", 1, "INSERT", {"id": "p1", "title": "Hello"}),
            change_frame("posts", 2, "INSERT", {"id": "p2", "title": "World"}),
            change_frame("posts", 3, "UPDATE", {"id": "p1", "title": "Hello again"}),
            change_frame("posts", 4, "DELETE", {"id": "p2", "title": "World"}),
        ):
            await server.sio.emit(frame.name, frame.data)
        await wait_for(lambda: posts.seq == 4, timeout=5.0)
        assert posts.value.to_dict() == {"p1": Post("p1", "Hello again")}
        assert root.cursor == 4
    assert root.connection_state.status is ConnectionStatus.DISCONNECTED


async def test_wrong_token_is_refused_and_connection_says_why(server: Server) -> None:
    root = RootStore(server.url, stores=[PostStore()], token="wrong")
    states: list[ConnectionState] = []
    root.connection.subscribe(states.append)
    with pytest.raises(ConnectionRefused) as refused:
        await root.setup_realtime()
    assert refused.value.reason == "invalid_token"
    assert states[-1].status is ConnectionStatus.DISCONNECTED
    assert states[-1].reason == "invalid_token"
    await root.teardown_realtime()


async def test_token_provider_is_called_again_on_reconnect_and_cursor_resumes(server: Server) -> None:
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return TOKEN

    posts = PostStore()
    async with RootStore(server.url, stores=[posts], token=token) as root:
        frame = change_frame("posts", 7, "INSERT", {"id": "p7", "title": "seven"})
        await server.sio.emit(frame.name, frame.data)
        await wait_for(lambda: posts.seq == 7, timeout=5.0)
        await server.sio.disconnect(server.sids[-1])
        await wait_for(lambda: len(server.sids) == 2, timeout=5.0)
        assert calls == 2
        assert server.auths[-1]["cursor"] == 7
        await wait_for(lambda: root.connection_state.connected, timeout=5.0)
        assert root.metrics.reconnects == 1


async def test_call_is_acknowledged_and_queued_in_order_while_offline(server: Server) -> None:
    received: list[Any] = []

    @server.sio.on("create_post")
    async def create_post(sid: str, data: Any) -> dict[str, Any]:
        received.append(data)
        return {"ok": True, "n": len(received)}

    async with RootStore(
        server.url, stores=[PostStore()], token=TOKEN, backoff=Backoff(initial=0.05, maximum=0.1)
    ) as root:
        assert await root.call("create_post", {"title": "a"}) == {"ok": True, "n": 1}
        server.accepting = False
        retries: list[Retry] = []
        root.retries.subscribe(retries.append)
        await server.sio.disconnect(server.sids[-1])
        await wait_for(lambda: len(retries) >= 1, timeout=5.0, what="a refused attempt")
        queued = [asyncio.ensure_future(root.call("create_post", {"title": t})) for t in "bcd"]
        await wait_for(lambda: root.metrics.outbox_depth == 3, timeout=5.0, what="three calls queued")
        assert received == [{"title": "a"}]
        server.accepting = True
        acks = await asyncio.wait_for(asyncio.gather(*queued), 10)
    assert [a["n"] for a in acks] == [2, 3, 4]
    assert [d["title"] for d in received] == ["a", "b", "c", "d"]
    assert root.metrics.outbox_depth == 0


async def test_teardown_leaves_no_task_socket_or_subscription_behind() -> None:
    """The server runs in another process, so every task left here would be the client's."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).parent.parent / "plain_server.py"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        port = int((await asyncio.wait_for(process.stdout.readline(), 20)).decode())
        before = set(asyncio.all_tasks())
        posts = PostStore()
        transport = SocketIOTransport()
        root = RootStore(f"http://127.0.0.1:{port}", stores=[posts], transport=transport)
        async with root:
            assert root.connection_state.connected

        def leftover() -> list[asyncio.Task[Any]]:
            return [t for t in asyncio.all_tasks() - before if not t.done()]

        with contextlib.suppress(AssertionError):  # the assert below names what is left
            await wait_for(lambda: not leftover(), timeout=5.0, what="the root's tasks ended")
        assert leftover() == []
        assert not posts._errors.observers
        assert transport._client is None  # private: the transport has no public handle on its client
    finally:
        if process.stdin is not None:
            process.stdin.close()
        await asyncio.wait_for(process.wait(), 10)
