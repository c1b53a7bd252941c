"""Real sizes: big tables, big transactions, big broadcasts, clients that never read.

- A 50 MB table (rows up to 900 KB, written by an outside process) reaches a
  ``RootStore`` and an npm ``socket.io-client`` intact, in chunks; on
  PostgreSQL too.
- Twenty connections that never read a 10 MiB table keep the gateway small
  (snapshots stream a chunk at a time, with backpressure), and another user
  still gets its snapshot at once.
- One transaction of 200 rows of 100 KB reaches every live client; nobody is
  dropped as "slow".
- Broadcasts go through the bounded per-client queue: a client that never
  reads is dropped, the others get every broadcast.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import sqlite3
import string
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from rxstore import DomainStore, Event, RootStore, SyncState
from rxstore.gateway.access.auth import TokenAuth
from rxstore.gateway.server import RealtimeGateway
from tests.faults.harness import AUTH as PROCESS_AUTH
from tests.faults.harness import GatewayProcess, StalledClient, fetch_health
from tests.gateway.harness import AUTH, PostStore, start_gateway
from tests.services import require_or_skip
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
DIGEST_SCRIPT = REPO / "tests" / "interop" / "snapshot_digest.mjs"


def _body(size: int, rng: random.Random) -> str:
    chunk = "".join(rng.choices(string.ascii_letters, k=1024))
    return (chunk * (size // 1024 + 1))[:size]


def _rows(spec: Iterable[tuple[str, int, int]], seed: int = 1) -> list[tuple[str, str, str]]:
    """``(prefix, count, body_bytes)`` groups -> ``(id, title, body)`` rows."""
    rng = random.Random(seed)
    return [
        (f"{prefix}{index:05d}", f"{prefix} {index}", _body(size, rng))
        for prefix, count, size in spec
        for index in range(count)
    ]


def _digest(rows: Mapping[str, str]) -> str:
    """sha256 of ``id\\nbody\\n`` over the rows in id order (as snapshot_digest.mjs computes it)."""
    digest = hashlib.sha256()
    for key in sorted(rows):
        digest.update(f"{key}\n{rows[key]}\n".encode())
    return digest.hexdigest()


def _write_sqlite(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Insert ``rows`` in one transaction from a connection of its own (an outside writer)."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO posts (id, title, body) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name} in /metrics")


def _metrics(gateway: RealtimeGateway) -> str:
    from prometheus_client import generate_latest

    return generate_latest(gateway.metrics.registry).decode()


def _node() -> str:
    binary = shutil.which("node")
    if binary is None:
        require_or_skip("node not found: install Node.js >= 18 to run the socket.io-client interop tests")
    if not (REPO / "node_modules" / "socket.io-client" / "package.json").is_file():
        require_or_skip("node_modules/socket.io-client is missing: run `npm ci` at the repository root")
    return binary


async def _node_digest(url: str, token: str, limit: float = 90.0) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        _node(),
        str(DIGEST_SCRIPT),
        url,
        token,
        str(limit),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit + 15)
    assert out, f"node printed nothing (exit {proc.returncode}): {err.decode()[-2000:]}"
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    report["exit"] = proc.returncode
    return report


async def _mirror(
    url: str, user: str = "alice", timeout: float = 90.0, auth: TokenAuth = AUTH
) -> tuple[RootStore, PostStore]:
    """A connected RootStore whose PostStore is live (or an AssertionError after ``timeout``)."""
    posts = PostStore()
    root = RootStore(url, stores=[posts], token=auth.issue(user))
    await root.setup_realtime()
    await wait_for(lambda: posts.sync.state is SyncState.LIVE, timeout, "the snapshot to arrive")
    return root, posts


# -- a 50 MB table --------------------------------------------------------------


@pytest.fixture
async def sqlite_gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path / 'big.db'}")
    yield gateway
    await gateway.stop()


@pytest.mark.node
async def test_a_50_mb_table_reaches_a_root_store_and_an_npm_client_intact(
    sqlite_gateway: RealtimeGateway, tmp_path: Path
) -> None:
    gateway = sqlite_gateway
    # 36 MB of 900 KB rows (each bigger than aiohttp's old 4 MiB budget allows 4 of) + 14 MB of 20 KB rows.
    rows = _rows([("big", 40, 900_000), ("small", 700, 20_000)])
    await asyncio.to_thread(_write_sqlite, tmp_path / "big.db", rows)
    expected = {key: body for key, _, body in rows}
    assert sum(len(body) for body in expected.values()) >= 50_000_000

    root, posts = await _mirror(gateway.url)
    try:
        mirrored = {key: post.body for key, post in posts.value.to_dict().items()}
        assert len(mirrored) == len(expected)
        assert _digest(mirrored) == _digest(expected)
        assert root.metrics.reconnects == 0
    finally:
        await root.teardown_realtime()
    frames = _metric(_metrics(gateway), "rxstore_snapshot_frames_total")
    assert frames >= 40, f"a 50 MB snapshot went in {frames} frames"

    report = await _node_digest(gateway.url, AUTH.issue("bob"))
    assert report["errors"] == [] and report["exit"] == 0, report
    assert report["count"] == len(expected) and report["digest"] == _digest(expected), report
    assert report["frames"] >= 40


@pytest.mark.postgres
async def test_a_big_postgresql_table_reaches_a_root_store_in_chunks(pg_dsn: str) -> None:
    gateway = await start_gateway(pg_dsn)
    try:
        # 12 MB: 10 rows of 600 KB and 300 of 20 KB, varied bodies, one transaction.
        await gateway.log.execute(
            "INSERT INTO posts (id, title, body) "
            "SELECT 'p' || lpad(g::text, 4, '0'), 't', repeat(md5(g::text), CASE WHEN g <= 10 "
            "THEN 18750 ELSE 625 END) FROM generate_series(1, 310) AS g"
        )
        expected = {r["id"]: r["body"] for r in await gateway.log.fetch("SELECT id, body FROM posts")}
        root, posts = await _mirror(gateway.url)
        try:
            mirrored = {key: post.body for key, post in posts.value.to_dict().items()}
            assert _digest(mirrored) == _digest(expected)
        finally:
            await root.teardown_realtime()
        assert _metric(_metrics(gateway), "rxstore_snapshot_frames_total") >= 10
    finally:
        await gateway.stop()


# -- clients that never read ----------------------------------------------------


async def test_connections_that_never_read_a_10_mib_table_keep_the_gateway_small(tmp_path: Path) -> None:
    db = tmp_path / "stall.db"
    gateway = GatewayProcess(f"sqlite:///{db}", log_dir=tmp_path)
    await gateway.start()
    stalled: list[StalledClient] = []
    try:
        rows = _rows([("r", 500, 20_000)])  # 10 MB
        await asyncio.to_thread(_write_sqlite, db, rows)
        # Warm up: one whole snapshot, so that what a snapshot allocates once is in the baseline.
        root, posts = await _mirror(gateway.url, user="bob", auth=PROCESS_AUTH)
        assert len(posts.value) == 500
        await root.teardown_realtime()
        baseline = gateway.rss()

        token = PROCESS_AUTH.issue("mallory")
        for _ in range(20):
            client = StalledClient(gateway.port, token)
            await asyncio.to_thread(client.connect)
            stalled.append(client)
        health = await fetch_health(gateway.url)
        assert health is not None and health[1]["clients"] == 20
        peak = baseline
        deadline = time.monotonic() + 4.0  # a measurement window, not a synchronisation
        while time.monotonic() < deadline:
            peak = max(peak, gateway.rss())
            await asyncio.sleep(0.1)  # paces the RSS sampling of the window
        # Another user is not kept waiting by mallory's stalled snapshots.
        started = time.monotonic()
        root, posts = await _mirror(gateway.url, user="carol", timeout=10.0, auth=PROCESS_AUTH)
        waited = time.monotonic() - started
        assert len(posts.value) == 500
        await root.teardown_realtime()
        peak = max(peak, gateway.rss())
        growth = (peak - baseline) / 2**20
        print(
            f"gateway RSS {baseline / 2**20:.0f} MiB -> peak {peak / 2**20:.0f} MiB;",
            f"carol waited {waited:.2f} s",
        )
        assert growth < 120, f"20 non-reading clients grew the gateway by {growth:.0f} MiB"
    finally:
        for client in stalled:
            client.close()
        await gateway.terminate()


async def test_a_stalled_snapshot_is_dropped_after_client_send_timeout(tmp_path: Path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path / 'slow.db'}", client_send_timeout=1.0)
    try:
        await asyncio.to_thread(_write_sqlite, tmp_path / "slow.db", _rows([("r", 400, 20_000)]))
        client = StalledClient(gateway.port, AUTH.issue("mallory"))
        await asyncio.to_thread(client.connect)
        try:
            await wait_for(lambda: not gateway._clients, 15.0, "the stalled client to be dropped")
        finally:
            client.close()
        assert _metric(_metrics(gateway), "rxstore_stalled_clients_dropped_total") == 1
        assert _metric(_metrics(gateway), "rxstore_snapshots_active") == 0
    finally:
        await gateway.stop()


# -- one big transaction --------------------------------------------------------


async def test_one_transaction_of_20_mb_reaches_every_live_client_without_dropping_any(
    sqlite_gateway: RealtimeGateway, tmp_path: Path
) -> None:
    gateway = sqlite_gateway
    first, first_posts = await _mirror(gateway.url, user="alice")
    second, second_posts = await _mirror(gateway.url, user="bob")
    try:
        rows = _rows([("t", 200, 100_000)])
        await asyncio.to_thread(_write_sqlite, tmp_path / "big.db", rows)
        expected = _digest({key: body for key, _, body in rows})
        for posts in (first_posts, second_posts):
            await wait_for(lambda p=posts: len(p.value) == 200, 60.0, "the transaction's rows")
            assert _digest({key: post.body for key, post in posts.value.to_dict().items()}) == expected
        assert first.metrics.reconnects == second.metrics.reconnects == 0
        metrics = _metrics(gateway)
        assert _metric(metrics, "rxstore_slow_clients_dropped_total") == 0
        assert _metric(metrics, "rxstore_events_sent_total") == 400
    finally:
        await first.teardown_realtime()
        await second.teardown_realtime()


# -- broadcasts -----------------------------------------------------------------


@attrs.frozen
class Typing:
    count: int = 0
    chars: int = 0


class TypingStore(DomainStore[Typing]):
    accepts = ("typing",)
    initial = Typing()

    def reduce(self, state: Typing, event: Event) -> Typing:
        return Typing(state.count + 1, state.chars + len(event.data["data"]))


async def test_broadcasts_go_through_the_bounded_queue_and_drop_a_client_that_never_reads(
    sqlite_gateway: RealtimeGateway,
) -> None:
    gateway = sqlite_gateway
    stalled = StalledClient(gateway.port, AUTH.issue("mallory"))
    await asyncio.to_thread(stalled.connect)
    typing = TypingStore()
    listener = RootStore(gateway.url, stores=[typing], topics=["posts"], token=AUTH.issue("bob"))
    sender = RootStore(gateway.url, topics=["posts"], token=AUTH.issue("alice"))
    await listener.setup_realtime()
    await sender.setup_realtime()
    try:
        payload = "x" * 900_000
        for _ in range(200):
            await sender.broadcast("posts", "typing", payload)
        await wait_for(lambda: typing.value.count == 200, 60.0, "every broadcast at the listener")
        assert typing.value.chars == 200 * 900_000
        metrics = _metrics(gateway)
        assert _metric(metrics, "rxstore_slow_clients_dropped_total") >= 1, "the stalled client was kept"
        assert len(gateway._clients) == 2
        assert _metric(metrics, "rxstore_broadcasts_total") >= 200
        assert listener.metrics.reconnects == 0
    finally:
        stalled.close()
        await sender.teardown_realtime()
        await listener.teardown_realtime()


async def test_rxstore_serve_takes_the_limits_from_its_options(tmp_path: Path) -> None:
    """``--frame-bytes 64KiB``: a 2 MB snapshot arrives in 30+ chunks, whole."""
    import aiohttp

    db = tmp_path / "opts.db"
    gateway = GatewayProcess(
        f"sqlite:///{db}", log_dir=tmp_path, args=["--frame-bytes", "64KiB", "--snapshot-concurrency", "1"]
    )
    await gateway.start()
    try:
        rows = _rows([("r", 100, 20_000)])
        await asyncio.to_thread(_write_sqlite, db, rows)
        root, posts = await _mirror(gateway.url, auth=PROCESS_AUTH)
        await root.teardown_realtime()
        assert _digest({k: p.body for k, p in posts.value.to_dict().items()}) == _digest(
            {key: body for key, _, body in rows}
        )
        async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/metrics") as response:
            frames = _metric(await response.text(), "rxstore_snapshot_frames_total")
        assert frames >= 30, f"2 MB in {frames} frames of 64 KiB"
    finally:
        await gateway.terminate()
