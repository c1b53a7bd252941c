"""A plain npm ``socket.io-client`` 4.x (what a Next.js app uses) follows a table through the gateway.

Runs ``tests/interop/follow_posts.mjs`` with Node.js against a real
:class:`~rxstore.gateway.server.RealtimeGateway` on SQLite. Needs ``node`` and
``node_modules`` (``npm ci`` at the repository root).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, all_posts, delete_post, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, start_gateway
from tests.services import require_or_skip

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("follow_posts.mjs")
LIMIT = 45.0
"""Default time limit of the Node script, seconds; the test waits a little longer."""
POST_FIELDS = {field.name for field in attrs.fields(Post)}


@pytest.fixture
def node() -> str:
    """Path of ``node``, with the npm ``socket.io-client`` installed at the repo root."""
    binary = shutil.which("node")
    if binary is None:
        require_or_skip("node not found: install Node.js >= 18 to run the socket.io-client interop tests")
    if not (ROOT / "node_modules" / "socket.io-client" / "package.json").is_file():
        require_or_skip(
            "node_modules/socket.io-client is missing: run `npm ci` at the repository root "
            "to run the socket.io-client interop tests"
        )
    return binary


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    yield gateway
    await gateway.stop()


class NodeFollower:
    """The Node script as a subprocess: its stderr status lines, then its one JSON line."""

    def __init__(self, proc: asyncio.subprocess.Process, limit: float) -> None:
        self.proc = proc
        self.timeout = limit + 15
        self.statuses: list[dict[str, Any]] = []
        self.stderr_other: list[str] = []

    @classmethod
    async def start(cls, node: str, url: str, token: str, count: int, limit: float) -> NodeFollower:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            url,
            token,
            str(count),
            str(limit),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, limit)

    async def wait_for_status(self, status: str) -> dict[str, Any]:
        """Read stderr until the script reports ``status`` (e.g. ``live``)."""
        stderr = self.proc.stderr
        assert stderr is not None

        async def read() -> dict[str, Any]:
            while line := await stderr.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    self.stderr_other.append(line.decode(errors="replace"))
                    continue
                self.statuses.append(message)
                if message.get("status") == status:
                    found: dict[str, Any] = message
                    return found
            raise AssertionError(f"node exited before {status!r}; stderr: {self.stderr_other}")

        return await asyncio.wait_for(read(), self.timeout)

    async def result(self) -> tuple[int, dict[str, Any]]:
        """Wait (bounded) for the script to exit; return its exit code and its JSON line."""
        try:
            stdout, stderr = await asyncio.wait_for(self.proc.communicate(), self.timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
            raise AssertionError(f"node did not exit within {self.timeout} s") from None
        for line in stderr.decode(errors="replace").splitlines():
            try:
                self.statuses.append(json.loads(line))
            except ValueError:
                self.stderr_other.append(line)
        lines = stdout.decode().splitlines()
        assert len(lines) == 1, f"expected one JSON line, got {stdout!r}; stderr: {stderr.decode()}"
        return self.proc.returncode or 0, json.loads(lines[0])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


@contextlib.asynccontextmanager
async def follow(
    node: str, url: str, token: str, count: int, *, limit: float = LIMIT
) -> AsyncIterator[NodeFollower]:
    follower = await NodeFollower.start(node, url, token, count, limit)
    try:
        yield follower
    finally:
        if follower.proc.returncode is None:
            follower.kill()
            await follower.proc.wait()


def as_post(row: dict[str, Any]) -> Post:
    """A row as the Node client holds it (JSON: 0/1 booleans from SQLite, 0 for 0.0) as a Post."""
    assert set(row) == POST_FIELDS, f"row fields {sorted(row)} != {sorted(POST_FIELDS)}"
    return Post(**{**row, "private": bool(row["private"]), "updated_at": float(row["updated_at"])})


async def test_node_socketio_client_follows_posts_snapshot_then_live(
    node: str, gateway: RealtimeGateway
) -> None:
    """Snapshot, then every live INSERT/UPDATE/DELETE once, in log order, with the same fields."""
    log = gateway.log
    for i in range(5):
        await save_post(log, Post(id=f"seed{i}", title=f"seed {i}", author="bob", likes=i))
    await delete_post(log, "seed4")

    inserts, updates, deletes = 40, 8, 5
    count = inserts + updates + deletes
    async with follow(node, gateway.url, AUTH.issue("alice"), count) as follower:
        live = await follower.wait_for_status("live")
        snapshot_seq = live["seq"]
        assert snapshot_seq == await log.head() == 6
        for i in range(inserts):
            await save_post(
                log,
                Post(
                    id=f"p{i}",
                    title=f'title {i} «ünïcode» "quoted" 🚀',
                    body="line1\nline2",
                    author="alice",
                    private=i % 3 == 0,
                    likes=i * 7,
                    updated_at=1_700_000_000.25 + i,
                ),
            )
        for i in range(updates):
            # Half of them update rows the client only knows from the snapshot.
            post_id = f"seed{i}" if i < 4 else f"p{i}"
            await save_post(log, Post(id=post_id, title=f"edited {i}", likes=1000 + i, updated_at=2.5))
        for post_id in ("seed0", "p1", "p2", "p3", "p39"):
            await delete_post(log, post_id)
        code, report = await follower.result()

    assert report["errors"] == [] and code == 0, report
    assert report["snapshot"] == {"seq": snapshot_seq, "count": 4, "frames": 1}
    expected = await all_posts(log)
    assert {key: as_post(row) for key, row in report["rows"].items()} == expected
    seqs = report["seqs"]
    assert all(a < b for a, b in itertools.pairwise(seqs)), f"not strictly increasing: {seqs}"
    assert len(set(seqs)) == len(seqs) == count and report["dropped"] == []
    logged = [change.seq for change in await log.read(snapshot_seq, limit=10 * count)]
    assert seqs == logged, "the client must receive exactly the logged changes after its snapshot"
    assert report["cursor"] == seqs[-1] == await log.head()


async def test_node_socketio_client_with_bad_token_is_refused_with_reason(
    node: str, gateway: RealtimeGateway
) -> None:
    """A refusal reaches connect_error as ``err.message == reason``, ``err.data == {reason, message}``."""
    async with follow(node, gateway.url, "not-a-jwt", 1) as follower:
        code, report = await follower.result()
    assert code == 2, report
    assert report["refused"] == "invalid_token"
    assert report["data"]["reason"] == "invalid_token"
    assert isinstance(report["data"]["message"], str) and report["data"]["message"]
    assert report["rows"] == {} and report["seqs"] == []


@pytest.mark.timeout(60)
async def test_node_socketio_client_resumes_from_its_cursor_across_a_gateway_restart(
    node: str, tmp_path: Path
) -> None:
    """A server-side disconnect, changes while down, restart: replayed once each, no new snapshot."""
    url = f"sqlite:///{tmp_path}/app.db"
    gateway = await start_gateway(url)
    port = gateway.port
    restarted: RealtimeGateway | None = None
    try:
        await save_post(gateway.log, Post(id="seed", title="before"))
        before, while_down, after = 10, 10, 5
        count = before + while_down + after
        async with follow(node, gateway.url, AUTH.issue("alice"), count, limit=30) as follower:
            snapshot_seq = (await follower.wait_for_status("live"))["seq"]
            for i in range(before):
                await save_post(gateway.log, Post(id=f"a{i}", title="live"))
            # Disconnects the client ("io server disconnect"). NB: this currently takes ~30 s:
            # stop() runs runner.cleanup() right after sio.disconnect(), before the Node client's
            # websocket close handshake completes, and Node's `ws` waits its 30 s closeTimeout.
            await gateway.stop()
            log = open_change_log(url)
            await log.open()
            for i in range(while_down):
                await save_post(log, Post(id=f"b{i}", title="while the gateway was down"))
            await delete_post(log, "a0")
            restarted = RealtimeGateway(log, topics=["posts"], auth=AUTH)
            await restarted.start(port=port)
            for i in range(after - 1):
                await save_post(log, Post(id=f"c{i}", title="after the restart"))
            code, report = await follower.result()
        assert report["errors"] == [] and code == 0, report
        assert report["snapshots"] == 1, "the reconnect must send its cursor, not null"
        assert [s["status"] for s in follower.statuses].count("connected") >= 2
        assert {key: as_post(row) for key, row in report["rows"].items()} == await all_posts(log)
        seqs = report["seqs"]
        assert report["dropped"] == []
        assert seqs == [change.seq for change in await log.read(snapshot_seq, limit=10 * count)]
    finally:
        if restarted is not None:
            await restarted.stop()
        else:
            await gateway.stop()
