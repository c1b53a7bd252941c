"""The first connection fails fast, and waiting until the stores are live (issue 13, items 2 and 3).

Against real sockets on 127.0.0.1: a closed port (nothing listens), a real
:class:`~rxstore.gateway.server.RealtimeGateway` on SQLite (started late,
stopped, restarted on the same port), and a plain python-socketio server that
accepts connections but never sends ``rxstore:live``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import socketio
from aiohttp import web

from rxstore import (
    Backoff,
    ConnectError,
    ConnectionState,
    ConnectionStatus,
    LiveTimeout,
    RootStore,
    RxStoreError,
    SyncState,
    TransportError,
)
from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, create_demo_schema, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, PostStore
from tests.services import CountingTransport, closed_port
from tests.waiting import wait_for

FAST = Backoff(initial=0.02, factor=2.0, maximum=0.1, jitter=0.0)
"""Quick retries: the tests wait for conditions, not for delays."""
SLACK = 3.0
"""Seconds a bounded wait may overrun its bound on a loaded machine (one attempt in flight)."""


async def gateway_on(directory: Path, port: int = 0) -> RealtimeGateway:
    """A real gateway serving the demo ``posts`` table of ``directory/app.db`` on ``port``."""
    log = open_change_log(f"sqlite:///{directory}/app.db")
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH)
    await gateway.start(port=port)
    return gateway


def record(root: RootStore) -> tuple[list[ConnectionState], list[RxStoreError]]:
    states: list[ConnectionState] = []
    errors: list[RxStoreError] = []
    root.connection.subscribe(states.append)
    root.errors.subscribe(errors.append)
    return states, errors


# -- item 3: the first connection fails fast --------------------------------------------------


async def test_a_closed_port_fails_the_first_connection_with_connect_error_naming_url_and_cause() -> None:
    """``async with RootStore(wrong URL)`` raises ``ConnectError`` after ``connect_timeout`` seconds
    (not a silent hang), naming the URL and the last failure; it is reported once, the link is
    disconnected with reason ``connect_timeout``, and no attempt follows."""
    transport = CountingTransport()
    url = f"http://127.0.0.1:{closed_port()}"
    root = RootStore(url, transport=transport, topics=["posts"], backoff=FAST, connect_timeout=0.5)
    states, errors = record(root)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectError) as failed:
        async with asyncio.timeout(0.5 + SLACK + 5):  # a hang fails here, as a TimeoutError
            async with root:
                raise AssertionError("connected to a closed port")
    took = loop.time() - started
    exc = failed.value
    assert 0.5 <= took < 0.5 + SLACK
    assert isinstance(exc, ConnectionError) and isinstance(exc, RxStoreError)
    assert exc.url == url and exc.timeout == 0.5 and exc.attempts == transport.attempts >= 2
    assert str(exc).startswith(f"cannot connect to {url} within 0.5 s, {exc.attempts} failed attempts")
    # The last failure is reachable (exc.cause, exc.__context__) but not printed with the traceback.
    assert isinstance(exc.cause, TransportError) and url in str(exc.cause)
    assert exc.__context__ is exc.cause and exc.__suppress_context__ and exc.__cause__ is None
    assert str(exc.cause).removeprefix(f"cannot connect to {url}: ") in str(exc)
    assert str(exc).count(url) == 1
    assert "connect_timeout=None" in str(exc)
    assert errors == [exc]
    assert states[-1] == ConnectionState(ConnectionStatus.DISCONNECTED, reason="connect_timeout", url=url)
    attempts = transport.attempts
    await asyncio.sleep(10 * FAST.maximum)  # given up: the loop is over
    assert transport.attempts == attempts and root.connection_state == states[-1]


NO_SERVER_SCRIPT = """
import asyncio, sys, attrs
from rxstore import RootStore, TableStore

@attrs.frozen
class Post:
    id: str
    title: str

class PostStore(TableStore[Post]):
    table, record_type = "posts", Post

async def main() -> None:
    posts = PostStore()
    async with RootStore(sys.argv[1], stores=[posts], token="t", connect_timeout=1) as root:
        await root.live(timeout=10)

asyncio.run(main())
"""
"""The README's live.py, with a 1 s ``connect_timeout`` and a token that needs no environment."""


async def test_with_no_server_a_script_prints_one_traceback_of_its_own_calls_and_one_message(
    tmp_path: Path,
) -> None:
    """The README's live.py with nothing listening: stderr holds one traceback (the script's calls down
    to rxstore's ``await``) and the ``ConnectError`` naming the URL, once; no chained tracebacks of
    aiohttp, engineio or socketio, and no log line repeating the error."""
    url = f"http://127.0.0.1:{closed_port()}"
    script = tmp_path / "live.py"
    script.write_text(NO_SERVER_SCRIPT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), url, stdout=PIPE, stderr=PIPE, cwd=tmp_path
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 1 + SLACK + 30)
    lines = stderr.decode().splitlines()
    assert process.returncode == 1, lines
    message = f"rxstore.protocol.errors.ConnectError: cannot connect to {url} within 1 s"
    assert lines[-1].startswith(message), lines
    assert sum(url in line for line in lines) == 1, "the error is told once: not logged, not chained"
    assert lines.count("Traceback (most recent call last):") == 1 and lines[0].startswith("Traceback")
    frames = [line for line in lines if line.startswith("  File ")]
    assert all("aiohttp" not in f and "engineio" not in f and "socketio" not in f for f in frames), frames
    # Beyond the frames (each one line, then its source and carets, indented): the header and the error.
    told = [line for line in lines if not line.startswith("  ")]
    assert told == [lines[0], lines[-1]], told
    assert len(lines) <= 25, lines  # 106 lines, six tracebacks, before


async def test_by_default_the_first_connection_gives_up_within_about_ten_seconds() -> None:
    """The defaults (``connect_timeout=10``, the default ``Backoff``) turn the issue's silent hang
    on a wrong URL into a ``ConnectError`` after about 10 s."""
    url = f"http://127.0.0.1:{closed_port()}"
    root = RootStore(url, topics=["posts"])
    assert root.connect_timeout == 10.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectError, match=f"cannot connect to {url} within 10 s"):
        await asyncio.wait_for(root.setup_realtime(), 10 + SLACK + 5)
    assert 10 <= loop.time() - started < 10 + SLACK


async def test_a_gateway_that_comes_up_within_connect_timeout_is_connected(tmp_path: Path) -> None:
    """Starting the client before its gateway is fine: the first connection keeps trying
    until ``connect_timeout`` and connects as soon as the gateway listens."""
    port = closed_port()
    posts = PostStore()
    root = RootStore(
        f"http://127.0.0.1:{port}", stores=[posts], token=AUTH.issue("alice"), backoff=FAST, connect_timeout=8
    )
    setup = asyncio.create_task(root.setup_realtime())
    await wait_for(lambda: root.connection_state.status is ConnectionStatus.RECONNECTING, 5, "a failed try")
    assert not setup.done()
    gateway = await gateway_on(tmp_path, port)
    try:
        await asyncio.wait_for(setup, 8)
        assert root.connection_state.connected
    finally:
        await root.teardown_realtime()
        await gateway.stop()


async def test_connect_timeout_none_retries_the_first_connection_for_ever(tmp_path: Path) -> None:
    """``connect_timeout=None`` (a long-lived service): well past any bound the first connection
    is still being retried, and it connects when the gateway finally comes up."""
    port = closed_port()
    transport = CountingTransport()
    root = RootStore(
        f"http://127.0.0.1:{port}",
        stores=[PostStore()],
        token=AUTH.issue("alice"),
        transport=transport,
        backoff=FAST,
        connect_timeout=None,
    )
    states, errors = record(root)
    setup = asyncio.create_task(root.setup_realtime())
    await wait_for(lambda: transport.attempts >= 12, what="twelve attempts (over a second)")
    assert not setup.done() and not errors
    gateway = await gateway_on(tmp_path, port)
    try:
        await asyncio.wait_for(setup, 8)
        assert states[-1].connected
    finally:
        await root.teardown_realtime()
        await gateway.stop()


async def test_without_waiting_connect_timeout_does_not_apply_and_retries_go_on() -> None:
    """``setup_realtime(wait=False)`` keeps its background retries: past ``connect_timeout``
    nothing is raised or reported and the root is still reconnecting."""
    transport = CountingTransport()
    root = RootStore(
        f"http://127.0.0.1:{closed_port()}",
        transport=transport,
        topics=["posts"],
        backoff=FAST,
        connect_timeout=0.2,
    )
    states, errors = record(root)
    try:
        await root.setup_realtime(wait=False)
        await asyncio.sleep(0.6)  # three times connect_timeout
        await wait_for(lambda: transport.attempts >= 8, what="attempts after connect_timeout")
        assert states[-1].status is ConnectionStatus.RECONNECTING and not errors
    finally:
        await root.teardown_realtime()


async def test_reconnects_after_the_first_connection_are_not_bounded_by_connect_timeout(
    tmp_path: Path,
) -> None:
    """Once connected, a lost gateway is retried per ``Backoff`` however long it is away
    (well past ``connect_timeout``), and the root resumes when it is back."""
    gateway = await gateway_on(tmp_path)
    port = gateway.port
    posts = PostStore()
    transport = CountingTransport()
    root = RootStore(
        gateway.url,
        stores=[posts],
        token=AUTH.issue("alice"),
        transport=transport,
        backoff=FAST,
        connect_timeout=0.3,
    )
    _, errors = record(root)
    async with root:
        await gateway.stop()
        await wait_for(lambda: transport.attempts >= 10, what="reconnection attempts")
        await asyncio.sleep(0.3)  # the point: past connect_timeout (0.3 s), still reconnecting, no error
        assert root.connection_state.status is ConnectionStatus.RECONNECTING
        assert not any(isinstance(e, ConnectError) for e in errors)
        gateway = await gateway_on(tmp_path, port)
        try:
            await save_post(gateway.log, Post(id="back", title="after the outage"))
            await root.live(timeout=8)
            await wait_for(lambda: "back" in posts.value, what="the change after the outage")
        finally:
            await gateway.stop()
    assert not any(isinstance(e, ConnectError) for e in errors)


def test_connect_timeout_must_be_positive_or_none() -> None:
    """A zero or negative ``connect_timeout`` is a mistake, refused when the root is made."""
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="connect_timeout must be > 0"):
            RootStore("http://127.0.0.1:1", connect_timeout=bad)


# -- item 2: waiting until live, for real ------------------------------------------------------


async def test_root_live_waits_until_every_table_holds_its_snapshot(tmp_path: Path) -> None:
    """After ``await root.live()`` (and ``await posts.live()``) the table store is live and holds
    every row of the table; ``async with`` alone only promises a connection."""
    gateway = await gateway_on(tmp_path)
    try:
        for number in range(300):
            await save_post(gateway.log, Post(id=f"p{number}", title="x" * 200))
        posts = PostStore()
        async with RootStore(gateway.url, stores=[posts], token=AUTH.issue("alice")) as root:
            assert root.connection_state.connected
            await asyncio.wait_for(root.live(timeout=8), 10)
            assert posts.sync.state is SyncState.LIVE and len(posts.value) == 300
            status = await posts.live(timeout=1)  # live already: at once
            assert status.state is SyncState.LIVE and status.cursor == posts.seq
            await root.live(timeout=1)
    finally:
        await gateway.stop()


@pytest.fixture
async def mute_server() -> AsyncIterator[str]:
    """A python-socketio server that accepts every connection and sends nothing."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_live_times_out_with_an_error_naming_the_store_its_state_and_the_connection(
    mute_server: str,
) -> None:
    """Connected to a server that never sends the snapshot: ``root.live`` and ``posts.live`` raise
    ``LiveTimeout`` (a ``TimeoutError``) after their timeout, naming the store, its state and
    the connection's state; the root keeps running."""
    posts = PostStore()
    async with RootStore(mute_server, stores=[posts], token="t") as root:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LiveTimeout) as timed_out:
            await root.live(timeout=0.3)
        assert 0.3 <= loop.time() - started < 0.3 + SLACK
        exc = timed_out.value
        assert isinstance(exc, TimeoutError) and isinstance(exc, RxStoreError)
        assert str(exc) == "not live after 0.3 s: PostStore replaying (no snapshot yet); connection connected"
        assert exc.waiting == {"PostStore": "replaying (no snapshot yet)"} and exc.connection == "connected"
        with pytest.raises(LiveTimeout, match=r"^not live after 0.2 s: PostStore replaying"):
            await posts.live(timeout=0.2)
        assert root.connection_state.connected
