"""``rxstore serve --workers N``: several gateway processes on one port (real processes on 127.0.0.1)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from rxstore import RootStore
from rxstore.cli._worker import merge_metrics
from rxstore.cli._workers import broadcast_caveat, worker_count
from rxstore.gateway.access.auth import TokenAuth
from rxstore.protocol.events import Event
from tests.cli.commands import serving
from tests.gateway.harness import PostStore
from tests.services import RedisServer
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers share a port on Linux")

SECRET = "workers-test-secret-0123456789abcdefghij"
RXSTORE = [sys.executable, "-m", "rxstore.cli"]


class Served:
    """A running ``rxstore serve --workers N``: its URL, its process, what it printed."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, lines: list[str]) -> None:
        self.process = process
        self.url = url
        self.lines = lines

    def workers(self) -> list[int]:
        """The worker processes' pids (the supervisor's children)."""
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics") as response:
            return await response.text()

    async def clients_per_worker(self) -> dict[str, int]:
        """``rxstore_connected_clients`` by worker, as the merged ``/metrics`` shows them."""
        found = re.findall(r'rxstore_connected_clients\{worker="(\d+)"\} ([\d.]+)', await self.metrics())
        return {worker: int(float(count)) for worker, count in found}


@asynccontextmanager
async def serve(db: Path, *args: str) -> AsyncIterator[Served]:
    process = await asyncio.create_subprocess_exec(
        *RXSTORE, "serve", "--db", f"sqlite:///{db}", "--demo-schema", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "RXSTORE_SECRET": SECRET},
    )  # fmt: skip
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(read())
    try:
        await wait_for(
            lambda: bool(lines) or process.returncode is not None, timeout=60, what="the serving line"
        )
        found = re.search(r"http://[\d.]+:\d+", lines[0] if lines else "")
        assert found, lines
        yield Served(process, found.group(0), lines)
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await reader


async def clients_on_every_worker(
    stack: AsyncExitStack, served: Served, workers: int, **options: object
) -> list[PostStore]:
    """Connect root stores until every worker has at least one (new connections spread at random)."""
    token = TokenAuth(secret=SECRET).issue("alice")
    stores: list[PostStore] = []
    for _ in range(40):
        store = PostStore()
        await stack.enter_async_context(RootStore(served.url, stores=[store], token=token, **options))  # type: ignore[arg-type]
        stores.append(store)
        counts = await wait_for_counts(served, len(stores))
        if len([c for c in counts.values() if c > 0]) == workers:
            return stores
    raise AssertionError(
        f"40 clients did not reach all {workers} workers: {await served.clients_per_worker()}"
    )


def insert(db: Path, first: int, count: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO posts (id, title) VALUES (?, ?)",
            [(f"p{i}", f"post {i}") for i in range(first, first + count)],
        )


def rows(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM posts")}


async def test_a_change_reaches_the_clients_of_every_worker_and_metrics_show_every_worker(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with serve(db, "--workers", "2") as served, AsyncExitStack() as stack:
        assert "with 2 workers" in served.lines[0]
        assert len(served.workers()) == 2
        stores = await clients_on_every_worker(stack, served, 2)
        insert(db, 0, 5)
        for store in stores:
            await wait_for(lambda s=store: len(s.value) == 5, what="the change at a client of each worker")

        async def counted_by_both() -> bool:
            metrics = await served.metrics()
            found = re.findall(r'rxstore_changes_total\{worker="(\d)"\} 5\.0', metrics)
            return "rxstore_workers 2" in metrics and sorted(found) == ["0", "1"]

        await wait_for(counted_by_both, what="/metrics: both workers broadcast the 5 changes")
        async with aiohttp.ClientSession() as http, http.get(served.url + "/healthz") as response:
            health = await response.json()
        assert health["status"] == "ok" and health["worker"] in (0, 1) and health["pid"] in served.workers()


async def test_a_worker_killed_with_sigkill_is_restarted_and_its_clients_lose_no_change(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with serve(db, "--workers", "2") as served, AsyncExitStack() as stack:
        stores = await clients_on_every_worker(stack, served, 2)
        victim = served.workers()[0]
        written = 0

        async def write(until: asyncio.Event) -> None:
            nonlocal written
            while not until.is_set():
                insert(db, written, 10)
                written += 10
                await asyncio.sleep(0.01)

        done = asyncio.Event()
        writer = asyncio.create_task(write(done))
        await wait_for(lambda: written >= 100, what="writes before the kill")
        os.kill(victim, signal.SIGKILL)
        await wait_for(
            lambda: any("exited with signal 9" in line for line in served.lines), what="the restart"
        )
        await wait_for(lambda: written >= 400, what="writes after the kill")
        done.set()
        await writer
        expected = rows(db)
        assert len(expected) == written
        for store in stores:
            await wait_for(
                lambda s=store: set(s.value.keys()) == expected, timeout=30, what="every row at every client"
            )
        await wait_for(
            lambda: len(served.workers()) == 2 and victim not in served.workers(), what="a new worker"
        )
        assert "rxstore_worker_restarts_total 1" in await served.metrics()


async def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    async with serve(tmp_path / "app.db", "--workers", "3") as served:
        workers = served.workers()
        assert len(workers) == 3
        served.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.process.wait(), 30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


async def test_client_broadcasts_cross_workers_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with (
        serve(tmp_path / "app.db", "--workers", "2", "--redis", redis_server.url) as served,
        AsyncExitStack() as stack,
    ):
        assert not any("reach the clients of the sender's worker only" in line for line in served.lines)
        token = TokenAuth(secret=SECRET).issue("alice")
        roots: list[RootStore] = []
        heard: list[list[object]] = []
        for _ in range(40):
            got: list[object] = []
            root = await stack.enter_async_context(RootStore(served.url, stores=[PostStore()], token=token))

            def hear(event: Event, got: list[object] = got) -> None:
                if event.name == "typing":
                    got.append(event.data)

            root.events.subscribe(hear)
            roots.append(root)
            heard.append(got)
            counts = await wait_for_counts(served, len(roots))
            if len([c for c in counts.values() if c > 0]) == 2:
                break
        await roots[0].broadcast("posts", "typing", {"who": "alice"})
        for got in heard[1:]:
            await wait_for(lambda g=got: len(g) == 1, what="the broadcast at a client of each worker")


async def wait_for_counts(served: Served, total: int) -> dict[str, int]:
    """The clients per worker, once the metrics (written every second) count ``total``."""
    counts: dict[str, int] = {}

    async def counted() -> bool:
        counts.update(await served.clients_per_worker())
        return sum(counts.values()) == total

    await wait_for(counted, what=f"{total} clients in the metrics")
    return counts


def test_merged_metrics_label_each_worker_and_keep_one_help_line_per_family() -> None:
    one = '# HELP c_total C.\n# TYPE c_total counter\nc_total 1.0\nc_total{reason="x"} 2.0\n'
    two = one.replace("1.0", "3.0")
    supervisor = "# HELP w W.\n# TYPE w gauge\nw 2\n"
    merged = merge_metrics([("0", one), ("1", two), (None, supervisor)])
    assert merged.splitlines() == [
        "# HELP c_total C.",
        "# TYPE c_total counter",
        'c_total{worker="0"} 1.0',
        'c_total{worker="0",reason="x"} 2.0',
        'c_total{worker="1"} 3.0',
        'c_total{worker="1",reason="x"} 2.0',
        "# HELP w W.",
        "# TYPE w gauge",
        "w 2",
    ]


def test_workers_must_be_at_least_one() -> None:
    import subprocess

    result = subprocess.run([*RXSTORE, "serve", "--workers", "0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "0 workers: use 1 or more" in result.stderr


def test_a_port_another_server_listens_on_is_refused_even_if_it_allows_sharing(tmp_path: Path) -> None:
    """SO_REUSEPORT would let the workers share a port with any process of this user: refused instead."""
    import socket
    import subprocess

    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        db = f"sqlite:///{tmp_path / 'app.db'}"
        result = subprocess.run(
            [*RXSTORE, "serve", "--db", db, "--demo-schema", "--workers", "2", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "RXSTORE_SECRET": SECRET},
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the address is in use" in result.stderr


async def test_plain_serve_is_one_process_and_has_no_caveat_to_print(tmp_path: Path) -> None:
    """The default serves every feature: one process (broadcasts reach every client), nothing on stderr."""
    async with serving("--db", "app.db", "--demo-schema", "--port", "0", cwd=tmp_path) as server:
        assert "workers" not in server.out[0] and server.children() == []
    assert server.err == [] and len(server.out) == 2, (server.out, server.err)


async def test_workers_without_redis_say_in_one_line_what_they_cost(tmp_path: Path) -> None:
    async with serving(
        "--db", "app.db", "--demo-schema", "--port", "0", "--workers", "2", cwd=tmp_path
    ) as server:
        assert "with 2 workers" in server.out[0]
        await wait_for(lambda: bool(server.err), what="the caveat on stderr")
    assert len(server.err) == 1, server.err
    for fragment in ("--workers 2 without --redis", "root.broadcast", "sender's worker only", "--redis URL"):
        assert fragment in server.err[0], server.err


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: one worker either way")
async def test_redis_makes_the_default_one_worker_per_core(tmp_path: Path, redis_server: RedisServer) -> None:
    cores = len(os.sched_getaffinity(0))
    args = ("--db", "app.db", "--demo-schema", "--port", "0", "--redis", redis_server.url)
    async with serving(*args, cwd=tmp_path) as server:
        assert f"with {cores} workers" in server.out[0]
        assert len(server.children()) == cores
    assert server.err == []


def test_the_default_is_one_worker_unless_redis_carries_broadcasts_across_them() -> None:
    plain = argparse.Namespace(workers=None, redis=None)
    with_redis = argparse.Namespace(workers=None, redis="redis://127.0.0.1:6379/0")
    assert worker_count(plain) == 1
    assert worker_count(with_redis) == len(os.sched_getaffinity(0))
    assert broadcast_caveat(plain, 1) is None and broadcast_caveat(with_redis, 4) is None
    assert broadcast_caveat(plain, 3) is not None
