"""The gateway mounted in an application: an aiohttp app, and ASGI apps served by uvicorn.

Each test serves a real app on 127.0.0.1 with the gateway inside it, has a
real RootStore follow a table through it, asks the app's own route and the
gateway's /healthz and /metrics, and checks that stopping the app stops the
gateway with it (no task left running, the log closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rxstore import RootStore
from rxstore.client.transport import SocketIOTransport
from rxstore.gateway.access.guarded_websockets import websocket_limit
from rxstore.gateway.demo import Post, create_demo_schema, save_post
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.mount import ASGIApp
from rxstore.gateway.server import GatewayUsageError, RealtimeGateway
from tests.gateway.harness import AUTH, PostStore
from tests.waiting import wait_for

uvicorn = pytest.importorskip("uvicorn", reason="pip install -e '.[test]' (uvicorn)")
starlette = pytest.importorskip("starlette", reason="pip install -e '.[test]' (starlette)")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402


async def new_gateway(tmp_path: Path, **options: Any) -> RealtimeGateway:
    """A gateway over a SQLite file holding the demo ``posts`` table; not opened."""
    log = open_change_log(f"sqlite:///{tmp_path}/app.db")
    await log.open()
    await create_demo_schema(log)
    await log.close()
    return RealtimeGateway(log, topics=["posts"], auth=AUTH, **options)


def gateway_tasks() -> list[asyncio.Task[Any]]:
    """The gateway's tasks still running: tailer, trimmer, per-client sync and writer."""
    names = ("rxstore-gateway-", "rxstore-sync-", "rxstore-write-")
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(names) and not t.done()]


async def follow(url: str, **transport: Any) -> tuple[RootStore, PostStore]:
    posts = PostStore()
    root = RootStore(url, stores=[posts], token=AUTH.issue("alice"), transport=SocketIOTransport(**transport))
    await root.__aenter__()
    return root, posts


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def check_follows_and_reports(gateway: RealtimeGateway, url: str, **transport: Any) -> RootStore:
    """A RootStore at ``url`` gets the snapshot and a live change; /healthz and /metrics answer."""
    await save_post(gateway.log, Post(id="p1", title="before"))
    root, posts = await follow(url, **transport)
    await wait_for(lambda: "p1" in posts.value, what="snapshot through the mounted gateway")
    await save_post(gateway.log, Post(id="p2", title="live"))
    await wait_for(lambda: "p2" in posts.value, what="live change through the mounted gateway")
    status, body = await get(f"{url}/healthz")
    assert status == 200 and '"status":' in body and '"clients":1' in body.replace(" ", "")
    status, body = await get(f"{url}/metrics")
    assert status == 200 and "rxstore_connected_clients 1.0" in body
    return root


# -- aiohttp -------------------------------------------------------------------


async def test_an_aiohttp_app_serves_its_own_route_and_the_attached_gateway(tmp_path: Path) -> None:
    """The app's route, Socket.IO, /healthz and /metrics on one port; the app's lifecycle runs the gateway."""
    gateway = await new_gateway(tmp_path)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the app")

    app = web.Application()
    app.router.add_get("/hello", hello)
    gateway.attach(app)
    runner = web.AppRunner(app)  # aiohttp's default shutdown_timeout: 60 s
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        assert await get(f"{url}/hello") == (200, "hello from the app")
        root = await check_follows_and_reports(gateway, url)
    finally:
        started = time.monotonic()
        await asyncio.wait_for(runner.cleanup(), 30)  # with the client still connected
    try:
        assert time.monotonic() - started < 5, "the app's shutdown waited for the gateway's websockets"
        assert gateway_tasks() == []
        assert not gateway.log.healthy
    finally:
        await root.__aexit__(None, None, None)


async def test_an_aiohttp_app_can_put_the_gateway_on_other_paths(tmp_path: Path) -> None:
    """attach(socketio_path=, healthz=, metrics=) moves the endpoints; clients pass the same path."""
    gateway = await new_gateway(tmp_path)
    app = web.Application()
    gateway.attach(app, socketio_path="live/socket.io", healthz="/live/health", metrics=None)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        root, posts = await follow(url, socketio_path="live/socket.io")
        await save_post(gateway.log, Post(id="p1", title="hi"))
        await wait_for(lambda: "p1" in posts.value, what="a change on the moved endpoint")
        assert (await get(f"{url}/live/health"))[0] == 200
        assert (await get(f"{url}/metrics"))[0] == 404
        await root.__aexit__(None, None, None)
    finally:
        await runner.cleanup()
    assert gateway_tasks() == []


# -- ASGI ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def uvicorn_serving(app: ASGIApp, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1; its URL. Shut down on exit."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", **config)
    )
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started or task.done(), what="uvicorn started")
    if not server.started:
        await task
        raise AssertionError("uvicorn did not start (see the log above)")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_a_starlette_app_wrapped_by_the_gateway_serves_both_and_runs_both_lifespans(
    tmp_path: Path,
) -> None:
    """gateway.asgi_app(app) under uvicorn: the app's routes and lifespan, Socket.IO, /healthz, /metrics."""
    gateway = await new_gateway(tmp_path, async_mode="asgi")
    lifespan: list[str] = []

    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        lifespan.append(f"app startup, gateway head {await gateway.log.head()}")  # the log is open
        yield
        lifespan.append(f"app shutdown, log healthy {gateway.log.healthy}")  # ... until after this

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello from starlette")

    app = Starlette(routes=[Route("/hello", hello)], lifespan=app_lifespan)
    async with uvicorn_serving(gateway.asgi_app(app)) as url:
        assert await get(f"{url}/hello") == (200, "hello from starlette")
        assert (await get(f"{url}/nowhere"))[0] == 404  # Starlette's own answer
        root = await check_follows_and_reports(gateway, url)
    try:
        assert lifespan == ["app startup, gateway head 0", "app shutdown, log healthy True"]
        assert gateway_tasks() == []
        assert not gateway.log.healthy
    finally:
        await root.__aexit__(None, None, None)


async def test_a_gateway_mounted_under_a_prefix_follows_the_outer_apps_lifespan(tmp_path: Path) -> None:
    """Mount("/realtime", gateway.asgi_app()) with lifespan=gateway.lifespan: paths under the prefix."""
    gateway = await new_gateway(tmp_path, async_mode="asgi")
    app = Starlette(routes=[Mount("/realtime", gateway.asgi_app())], lifespan=gateway.lifespan)
    async with uvicorn_serving(app) as url:
        root = await check_follows_and_reports(
            gateway, f"{url}/realtime", socketio_path="/realtime/socket.io"
        )
        assert (await get(f"{url}/realtime/nowhere"))[0] == 404
    try:
        assert gateway_tasks() == []
        assert not gateway.log.healthy
    finally:
        await root.__aexit__(None, None, None)


async def test_the_wire_guard_and_the_client_queue_hold_under_asgi(tmp_path: Path) -> None:
    """Under ASGI a bad frame, an oversize frame and a missing handshake close the socket and are
    counted; a client too far behind catches up from the log on its connection, to the whole table."""
    gateway = await new_gateway(
        tmp_path, async_mode="asgi", max_frame_bytes=4096, client_queue_limit=10, handshake_timeout=0.3
    )
    limit = websocket_limit(4096)
    async with uvicorn_serving(gateway.asgi_app(), ws_max_size=4 * limit) as url:
        ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as session:
            for frame, code in (("garbage", None), ("4" + "x" * limit, 1009), (None, None)):
                async with session.ws_connect(ws_url) as ws:
                    assert (await ws.receive(timeout=5)).data.startswith("0")  # engine.io OPEN
                    if frame is not None:  # else: no Socket.IO CONNECT, for handshake_timeout
                        await ws.send_str(frame)
                    while (await ws.receive(timeout=5)).type not in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                    ):
                        pass
                    if code is not None:
                        assert ws.close_code == code
        bad = gateway.metrics.bad_frames
        assert bad.labels("malformed")._value.get() == 1
        assert bad.labels("oversize_closed")._value.get() == 1
        assert gateway.metrics.handshake_timeouts._value.get() == 1

        root, posts = await follow(url)
        await wait_for(lambda: root.metrics.reconnects == 0 and posts.value is not None, what="connected")
        await wait_for(lambda: bool(gateway._clients) and all(c.live for c in gateway._clients.values()))
        statements = [
            ("INSERT INTO posts (id, title) VALUES (?, ?)", (f"p{i}", f"post {i}")) for i in range(30)
        ]
        await gateway.log.apply_mutation("bulk", "alice", statements)  # one batch of 30 > the limit 10
        await wait_for(lambda: gateway.metrics.catchups._value.get() == 1, what="the client catching up")
        await wait_for(lambda: len(posts.value) == 30, what="the client with every row")
        assert root.metrics.reconnects == 0 and gateway.metrics.dropped._value.get() == 0  # the same link
        await root.__aexit__(None, None, None)
    assert gateway_tasks() == []


async def test_each_mode_refuses_the_other_modes_mounting_and_a_second_open(tmp_path: Path) -> None:
    """A gateway serves one async mode; asking for the other, or opening twice, says what to do."""
    aiohttp_gateway = await new_gateway(tmp_path)
    asgi_gateway = RealtimeGateway(aiohttp_gateway.log, topics=["posts"], auth=AUTH, async_mode="asgi")
    with pytest.raises(GatewayUsageError, match="async_mode='asgi'"):
        aiohttp_gateway.asgi_app()
    with pytest.raises(GatewayUsageError, match="async_mode='aiohttp'"):
        asgi_gateway.attach(web.Application())
    with pytest.raises(GatewayUsageError, match="async_mode='aiohttp'"):
        await asgi_gateway.start(port=0)
    with pytest.raises(GatewayUsageError, match="serves no port of its own"):
        _ = asgi_gateway.url
    with pytest.raises(ValueError, match="async_mode"):
        RealtimeGateway(aiohttp_gateway.log, topics=["posts"], auth=AUTH, async_mode="wsgi")  # type: ignore[arg-type]
    await asgi_gateway.open()
    try:
        with pytest.raises(GatewayUsageError, match="open already"):
            await asgi_gateway.open()
    finally:
        await asgi_gateway.close()
    assert gateway_tasks() == []


async def test_a_minimal_asgi_app_without_lifespan_still_gets_the_gateway_opened_and_closed(
    tmp_path: Path,
) -> None:
    """An ASGI app that refuses the lifespan scope (as the spec allows): the gateway runs its own."""
    gateway = await new_gateway(tmp_path, async_mode="asgi")

    async def minimal(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"no {scope['type']} here")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"minimal"})

    async with uvicorn_serving(gateway.asgi_app(minimal)) as url:
        assert await get(f"{url}/hello") == (200, "minimal")
        root = await check_follows_and_reports(gateway, url)
    try:
        assert gateway_tasks() == []
        assert not gateway.log.healthy
    finally:
        await root.__aexit__(None, None, None)
