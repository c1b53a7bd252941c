"""A RootStore follows the npm ``socket.io`` server (as the seed's NestJS backend runs on).

Runs ``tests/interop/seed_server.mjs`` with Node.js on a free 127.0.0.1 port: a
plain socket.io 4.x server that refuses a bad token and emits the seed's
``post_update`` with ``{type, post}`` for created, updated and deleted posts.
A real :class:`~rxstore.client.root.RootStore` with a ``TableStore`` given a ``parse``
adapter (and a seed-style ``DomainStore``) follows it. Needs ``node`` and
``node_modules/socket.io`` (``npm ci`` at the repository root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from rxstore import (
    Backoff,
    ConnectionRefused,
    ConnectionStatus,
    DomainStore,
    Event,
    RootStore,
    RxStoreError,
    SyncState,
    TableStore,
)
from tests.services import free_port, require_or_skip
from tests.waiting import wait_for

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("seed_server.mjs")
TOKEN = "seed-token"
TIMEOUT = 10.0
"""Seconds any one step may take."""


@attrs.frozen
class Post:
    id: str
    title: str
    author: str = ""
    likes: int = 0


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post

    def parse(self, payload: Any) -> tuple[str, Mapping[str, Any]]:
        return payload["type"], payload["post"]  # the seed's {type, post}


class PostActivity(DomainStore[tuple[str, ...]]):
    accepts = ("post_update",)
    initial: tuple[str, ...] = ()

    def reduce(self, state: tuple[str, ...], event: Event) -> tuple[str, ...]:
        return (*state, f"{event.data['type']} {event.data['post']['id']}")


@pytest.fixture
def node() -> str:
    """Path of ``node``, with the npm ``socket.io`` server installed at the repo root."""
    binary = shutil.which("node")
    if binary is None:
        require_or_skip("node not found: install Node.js >= 18 to run the socket.io interop tests")
    if not (ROOT / "node_modules" / "socket.io" / "package.json").is_file():
        require_or_skip(
            "node_modules/socket.io is missing: run `npm ci` at the repository root "
            "to run the socket.io server interop tests"
        )
    return binary


class SeedServer:
    """The Node script as a subprocess: JSON commands in, JSON lines out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(json.loads(line))

    async def wait(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, *, start: int = 0
    ) -> dict[str, Any]:
        """Return the first line from ``start`` on that ``predicate`` holds for, waiting up to ``TIMEOUT``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            for line in self.lines[start:]:
                if predicate(line):
                    return line
            if self._reader.done() or loop.time() > deadline:
                raise AssertionError(f"seed server: no {what} line; got {self.lines}")
            await asyncio.sleep(0.01)

    def count(self, key: str) -> int:
        return sum(1 for line in self.lines if key in line)

    async def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command; return its answer."""
        assert self.proc.stdin is not None
        before = len(self.lines)
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.wait(lambda line: line.get("ok") == cmd, cmd, start=before)

    async def write(self, kind: str, post: dict[str, Any]) -> None:
        await self.command(kind, post=post)


@contextlib.asynccontextmanager
async def seed_server(node: str) -> AsyncIterator[tuple[SeedServer, str]]:
    """Start the script on a free port; yield it and its URL; stop it by closing its stdin."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        str(port),
        TOKEN,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    server = SeedServer(proc)
    try:
        listening = await server.wait(lambda line: "listening" in line, "listening")
        assert listening["listening"] == port
        yield server, f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await server._reader


async def test_root_store_follows_the_npm_socketio_seed_server_created_updated_deleted(node: str) -> None:
    """The adapted table equals the server's posts, live at once, and again after the server kicks it."""
    posts = PostStore()
    activity = PostActivity()
    async with seed_server(node) as (server, url):
        root = RootStore(url, stores=[posts, activity], token=TOKEN, backoff=Backoff(initial=0.05))
        errors: list[RxStoreError] = []
        root.errors.subscribe(errors.append)
        async with root:
            connected = await server.wait(lambda line: "connected" in line, "connected")
            assert connected["auth"]["token"] == TOKEN  # the seed reads socket.handshake.auth.token
            assert posts.sync.state is SyncState.LIVE and posts.sync.cursor is None
            for i in range(1, 6):
                await server.write(
                    "created", {"id": f"p{i}", "title": f"post {i}", "author": "ann", "likes": i}
                )
            await server.write("updated", {"id": "p1", "title": "edited", "author": "ann", "likes": 10})
            await server.write("deleted", {"id": "p2"})
            await server.write("updated", {"id": "p3", "title": "édité «ü» 🚀", "author": "bob", "likes": 0})
            await server.write("deleted", {"id": "p5"})
            await wait_for(lambda: len(activity.value) == 9, what="nine post_update events", timeout=TIMEOUT)
            dump = await server.command("dump")
            assert posts.value.to_dict() == {key: Post(**row) for key, row in dump["posts"].items()}
            assert sorted(posts.value.to_dict()) == ["p1", "p3", "p4"]

            await server.command("kick")  # the server ends the session; the root comes back
            await wait_for(
                lambda: server.count("connected") == 2 and root.connection_state.connected,
                what="reconnect",
                timeout=TIMEOUT,
            )
            await wait_for(
                lambda: posts.sync.state is SyncState.LIVE, what="live after the reconnect", timeout=TIMEOUT
            )
            await server.write("created", {"id": "p6", "title": "after the kick"})
            await wait_for(lambda: "p6" in posts.value, what="p6 after the reconnect", timeout=TIMEOUT)
        assert errors == []
        assert activity.value[:3] == ("created p1", "created p2", "created p3")


async def test_npm_socketio_server_refusing_the_token_is_tried_max_attempts_times(node: str) -> None:
    """Middleware ``next(new Error("unauthorized"))``: ConnectionRefused after exactly max_attempts tries."""
    async with seed_server(node) as (server, url):
        root = RootStore(
            url, stores=[PostStore()], token="wrong", backoff=Backoff(initial=0.01, max_attempts=3)
        )
        with pytest.raises(ConnectionRefused) as refused:
            await asyncio.wait_for(root.setup_realtime(), TIMEOUT)
        assert refused.value.reason == "unauthorized"
        assert "gave up after 3 failed attempts" in str(refused.value)
        assert root.connection_state.status is ConnectionStatus.DISCONNECTED
        await root.teardown_realtime()
        await server.command("dump")  # every refusal line was written before this answer
        assert server.count("refused") == 3 and server.count("connected") == 0
        assert all(line["refused"]["token"] == "wrong" for line in server.lines if "refused" in line)
