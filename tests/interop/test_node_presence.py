"""A plain npm ``socket.io-client`` 4.x joins a presence channel and reads its members.

Runs ``tests/interop/presence.mjs`` (docs/protocol.md's JavaScript presence example, verbatim,
and a driver) with Node.js against a real gateway, beside a Python ``RootStore`` in the same
channel: each sees the other join, update and leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rxstore import PresenceStore, RootStore
from tests.gateway.harness import AUTH, start_gateway
from tests.interop.test_node_client import ROOT, node  # noqa: F401  (the fixture)
from tests.waiting import wait_for

pytestmark = [pytest.mark.node, pytest.mark.timeout(60)]

SCRIPT = Path(__file__).with_name("presence.mjs")


def docs_presence_example() -> str:
    page = (ROOT / "docs" / "protocol.md").read_text()
    match = re.search(r"### From JavaScript\n.*?```js\n(.*?)```", page, re.S)
    assert match is not None, "docs/protocol.md has no JavaScript presence example"
    return match.group(1)


def test_the_script_runs_the_protocol_pages_presence_example_verbatim() -> None:
    script = SCRIPT.read_text()
    body = re.search(r"// -- docs/protocol.md: begin\n(.*?)// -- docs/protocol.md: end\n", script, re.S)
    assert body is not None, "presence.mjs lost its docs/protocol.md markers"
    assert body.group(1) == docs_presence_example()


class Script:
    """The script as a subprocess: commands in, answers out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, command: dict[str, Any], answer: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(10):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                assert line, "the script exited"
                if line.startswith(answer + " "):
                    return json.loads(line[len(answer) + 1 :])

    async def members(self) -> list[tuple[str, Any]]:
        return [(m["user"], m["meta"]) for m in await self.ask({"members": True}, "members")]


@contextlib.asynccontextmanager
async def script(node: str, url: str) -> AsyncIterator[Script]:  # noqa: F811
    env = {**os.environ, "GATEWAY_URL": url, "RXSTORE_TOKEN": AUTH.issue("js")}
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield Script(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def test_the_npm_client_joins_and_reads_presence(tmp_path, node) -> None:  # noqa: F811
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    room = PresenceStore("posts")
    try:
        async with RootStore(gateway.url, stores=[room], token=AUTH.issue("ann")) as ann:
            await ann.join_presence("posts", {"status": "typing"})
            async with script(node, gateway.url) as js:
                await wait_for(lambda: "js" in room.value.users(), what="the npm client's join")

                async def both() -> bool:
                    return await js.members() == [("ann", {"status": "typing"}), ("js", {"status": "online"})]

                await wait_for(both, what="the whole list at the npm client")
                assert (await js.ask({"update": {"status": "away"}}, "updated"))["ok"] is True
                await wait_for(
                    lambda: room.value.users()["js"][0].meta == {"status": "away"}, what="its update"
                )
                await ann.update_presence("posts", {"status": "idle"})
                await ann.leave_presence("posts")

                async def ann_left() -> bool:
                    return await js.members() == [("js", {"status": "away"})]

                await wait_for(ann_left, what="ann's update then leave, at the npm client")
                await ann.join_presence("posts")
                js.proc.kill()  # the npm client dies: it leaves
                await wait_for(lambda: set(room.value.users()) == {"ann"}, what="the npm client's leave")
    finally:
        await gateway.stop()
