"""A plain npm ``socket.io-client`` 4.x follows a window (``order_by`` + ``limit``) exactly.

Runs ``tests/interop/follow_window.mjs`` (the JavaScript window example of
docs/protocol.md, verbatim, and a driver) with Node.js against a real
:class:`~rxstore.gateway.server.RealtimeGateway` on SQLite, writes random inserts,
updates and deletes, and checks after each round, once quiet, that the script's window
is what ``SELECT ... ORDER BY likes DESC, id LIMIT n`` gives, and that it never held
more than ``n`` rows: it applies an INSERT's ``out`` and a refill snapshot; and after the
example's ``more(3)`` (``rxstore:more``, its ``rxstore:page``), the same with ``n + 3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway.demo import Post, delete_post, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, start_gateway
from tests.interop.test_node_client import ROOT, node  # noqa: F401  (the fixture)
from tests.waiting import wait_for

pytestmark = [pytest.mark.node, pytest.mark.timeout(90)]

SCRIPT = Path(__file__).with_name("follow_window.mjs")
LIMIT = 5
KEYS = 24
AUTHORS = ("ann", "ann", "bob")


def docs_window_example() -> str:
    """The JavaScript window example of docs/protocol.md."""
    page = (ROOT / "docs" / "protocol.md").read_text()
    match = re.search(r"### Following a window\n.*?```js\n(.*?)```", page, re.S)
    assert match is not None, "docs/protocol.md has no JavaScript window example"
    return match.group(1)


def test_the_script_runs_the_protocol_pages_window_example_verbatim() -> None:
    """follow_window.mjs holds docs/protocol.md's window example, unchanged, as its body."""
    script = SCRIPT.read_text()
    body = re.search(r"// -- docs/protocol.md: begin\n(.*?)// -- docs/protocol.md: end\n", script, re.S)
    assert body is not None, "follow_window.mjs lost its docs/protocol.md markers"
    assert body.group(1) == docs_window_example()


class Follower:
    """The script as a subprocess: ``{"rows": true}`` in, its window out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def window(self) -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(b'{"rows": true}\n')
        await stdin.drain()
        async with asyncio.timeout(10):
            while True:
                raw = await stdout.readline()
                assert raw, f"the script exited; it printed {self.lines}"
                self.lines.append(raw.decode().rstrip("\n"))
                if self.lines[-1].startswith("rows "):
                    window: dict[str, Any] = json.loads(self.lines[-1][5:])
                    return window

    async def more(self, n: int) -> dict[str, Any]:
        """Load ``n`` more rows (the docs' ``more``): ``{"added", "limit"}`` once they are in."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"more": n}).encode() + b"\n")
        await stdin.drain()
        async with asyncio.timeout(10):
            while True:
                raw = await stdout.readline()
                assert raw, f"the script exited; it printed {self.lines}"
                self.lines.append(raw.decode().rstrip("\n"))
                if self.lines[-1].startswith("more "):
                    answer: dict[str, Any] = json.loads(self.lines[-1][5:])
                    return answer

    async def window_becomes(
        self, expected: list[dict[str, Any]], timeout: float = 10, limit: int = LIMIT
    ) -> None:
        """Ask for the window until it is ``expected`` (changes are on their way); never over ``limit``."""
        window: dict[str, Any] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while (window := await self.window())["rows"] != expected:
                    await asyncio.sleep(0.05)
        assert window.get("rows") == expected, f"the node window {window} is not the database's {expected}"
        assert window["max"] <= limit, f"the node window held {window['max']} rows, over its limit {limit}"


@contextlib.asynccontextmanager
async def follow_window(node: str, url: str) -> AsyncIterator[Follower]:  # noqa: F811
    env = {**os.environ, "GATEWAY_URL": url, "RXSTORE_TOKEN": AUTH.issue("alice"), "LIMIT": str(LIMIT)}
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield Follower(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    yield gateway
    await gateway.stop()


async def window_in_db(gateway: RealtimeGateway, limit: int = LIMIT) -> list[dict[str, Any]]:
    """ann's posts as the window's SQL orders them, projected to the window's columns."""
    rows = await gateway.log.fetch(
        "SELECT id, title, likes FROM posts WHERE author = 'ann' ORDER BY likes DESC, id LIMIT ?", limit
    )
    return [dict(row) for row in rows]


async def write_randomly(gateway: RealtimeGateway, rng: random.Random, writes: int) -> None:
    """Random upserts (inserts, updates in and out of ann's posts, likes up and down) and deletes."""
    for n in range(writes):
        key = f"p{rng.randrange(KEYS):02d}"
        if rng.random() < 0.2:
            await delete_post(gateway.log, key)
        else:
            post = Post(id=key, title=f"t{n}", author=rng.choice(AUTHORS), likes=rng.randrange(12))
            await save_post(gateway.log, post)
        if rng.random() < 0.3:
            await asyncio.sleep(0)


@pytest.mark.parametrize("seed", [1, 2])
async def test_node_client_keeps_a_window_equal_to_sql_order_by_limit_under_random_writes(
    node: str,  # noqa: F811  (the fixture)
    gateway: RealtimeGateway,
    seed: int,
) -> None:
    """The docs' window example, after each round of random writes, holds exactly the
    database's ``ORDER BY likes DESC, id LIMIT 5`` (moves out by ``out``, refills by snapshot)."""
    rng = random.Random(seed)
    await write_randomly(gateway, rng, 40)
    async with follow_window(node, gateway.url) as follower:
        await follower.window_becomes(await window_in_db(gateway))
        for _ in range(6):
            await write_randomly(gateway, rng, 60)
            await follower.window_becomes(await window_in_db(gateway))
    refills = gateway.metrics.window_refills._value.get()
    assert refills > 0, "no refill: the writes never made a full window read again"


async def test_node_client_loads_more_and_keeps_the_wider_window_under_random_writes(
    node: str,  # noqa: F811  (the fixture)
    gateway: RealtimeGateway,
) -> None:
    """The docs' ``more(3)``: a page of the rows after its last (nothing sent again), acknowledged once
    they are in; then, after each round of random writes, the database's ``LIMIT 8``."""
    rng = random.Random(3)
    await write_randomly(gateway, rng, 40)
    async with follow_window(node, gateway.url) as follower:
        await follower.window_becomes(await window_in_db(gateway))
        head = await gateway.log.head()
        await wait_for(lambda: gateway.tailer.head >= head, 10, "every write sent: nothing races the page")
        widened = await window_in_db(gateway, LIMIT + 3)
        answer = await follower.more(3)
        assert answer == {"added": len(widened) - LIMIT, "limit": LIMIT + 3}, answer
        assert (await follower.window())["rows"] == widened, "the rows were in when more() returned"
        assert gateway.metrics.window_pages._value.get() == 1, "a page: only the rows after its last"
        for _ in range(4):
            await write_randomly(gateway, rng, 60)
            await follower.window_becomes(await window_in_db(gateway, LIMIT + 3), limit=LIMIT + 3)
