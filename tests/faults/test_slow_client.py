"""Scenario 6: a client that stops reading must not stall the others nor grow the gateway without bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import pytest

from tests.faults.harness import (
    AUTH,
    REPO,
    FaultClient,
    SqliteDb,
    SqliteWriter,
    StalledClient,
    account,
    assert_clean,
    fetch_health,
    start_inprocess_gateway,
    summarize,
)
from tests.waiting import wait_for

RATE = 400
"""Changes per second written during the scenario."""
BODY = 2000
"""Bytes of body per change: about 2.2 kB of JSON per change and client."""
BASELINE = 5.0
"""Seconds of writing with only healthy clients."""
STALLED = 15.0
"""Seconds of writing with the stalled client connected too."""
FOLLOWERS = 3


class Followers:
    """The client process (tests/faults/client_proc.py) and what it says."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready = asyncio.Event()
        self.seen: dict[str, dict[str, float]] = {}
        """Marker title -> client -> Unix time it showed it."""
        self.final: dict[str, Any] | None = None
        self.done = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if "ready" in message:
                self.ready.set()
            elif "marker" in message:
                self.seen.setdefault(message["marker"], {})[message["client"]] = message["t"]
            elif "reports" in message:
                self.final = message
                self.done.set()
        self.done.set()

    async def finish(self, head: int, timeout: float = 40.0) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"finish {head}\n".encode())
        await self.proc.stdin.drain()
        await asyncio.wait_for(self.done.wait(), timeout)
        assert self.final is not None, "the client process ended without reports"
        return list(self.final["reports"])


async def _sample_rss(gateway, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((time.monotonic(), gateway.rss()))
        await asyncio.sleep(0.25)  # paces the RSS sampler


async def _tick(db: SqliteDb, written: dict[str, float], stop: asyncio.Event) -> None:
    k = 0
    while not stop.is_set():
        k += 1
        title = f"tick{k}"
        await db.write_marker(title)
        written[title] = time.time()
        await asyncio.sleep(0.5)  # paces the tick writer


def _mb(value: float) -> float:
    return round(value / 1e6, 1)


def _rss_at(samples: list[tuple[float, int]], at: float) -> int:
    return min(samples, key=lambda s: abs(s[0] - at))[1]


def _slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope in bytes per second."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    num = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    den = sum((t - mean_t) ** 2 for t, _ in samples)
    return num / den if den else 0.0


@pytest.mark.timeout(120)
async def test_slow_client_does_not_stall_others(cluster, recorder, tmp_path) -> None:
    """A gateway serves three followers running in their own process while a writer writes
    400 changes/s (2 kB bodies) into SQLite. After a 5 s baseline, a raw Socket.IO client
    connects, subscribes and stops reading for 15 s. The followers keep up all along (every
    half-second marker reaches each of them, lag measured), end equal to the database with no
    change lost, applied twice or out of order, and the gateway's RSS is sampled throughout:
    its growth while the stalled client is connected is reported (it is bounded by the
    gateway's client_queue_bytes and client_queue_limit)."""
    db = SqliteDb(tmp_path / "app.db")
    gateway = cluster.gateway(db.url)
    await gateway.start()
    await db.install_oracle()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.client_proc",
        gateway.url,
        str(FOLLOWERS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
        limit=1 << 26,  # the final reports are one long line
    )
    cluster.processes.append(proc)
    followers = Followers(proc)
    await asyncio.wait_for(followers.ready.wait(), 30)

    samples: list[tuple[float, int]] = []
    written: dict[str, float] = {}
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(gateway, samples, stop))
    writer = cluster.writer(SqliteWriter(db.path, rate=RATE, body=BODY))
    ticker = asyncio.create_task(_tick(db, written, stop))
    t0 = time.monotonic()
    await asyncio.sleep(BASELINE)  # a measurement window: RSS and tick latency before the stall
    t_stall = time.monotonic()
    baseline_ticks = set(written)
    stalled = StalledClient(gateway.port, AUTH.issue("slowpoke"))
    await asyncio.to_thread(stalled.connect)
    writes_at_stall = writer.written
    try:
        await asyncio.sleep(STALLED)  # a measurement window: the stall itself
        t_end = time.monotonic()
        writes_while_stalled = writer.written - writes_at_stall
        health = await gateway.health()
        stop.set()
        await asyncio.gather(sampler, ticker)
        await writer.stop()
        await db.write_marker("final")
        oracle = await db.oracle()
        head = oracle[-1][0]
        reports = await followers.finish(head)
    finally:
        stalled.close()
    rows = await db.rows()
    counts = [account(report, [seq for seq, _, _ in oracle], rows) for report in reports]

    def lag(titles: set[str]) -> float:
        lags = [seen - written[title] for title in titles for seen in followers.seen.get(title, {}).values()]
        return max(lags) if lags else float("inf")

    stalled_ticks = set(written) - baseline_ticks
    missing = [t for t in written if len(followers.seen.get(t, {})) < FOLLOWERS]
    rss_start, rss_stall, rss_end = _rss_at(samples, t0), _rss_at(samples, t_stall), _rss_at(samples, t_end)
    second_half = [s for s in samples if s[0] >= t_stall + STALLED / 2]
    result = summarize(
        "6-slow-client",
        counts,
        changes=len(oracle),
        live_s=None,
        caught_up_s=None,
        extra={
            "rate_per_s": RATE,
            "body_bytes": BODY,
            "followers_max_lag_baseline_s": round(lag(baseline_ticks), 3),
            "followers_max_lag_stalled_s": round(lag(stalled_ticks), 3),
            "ticks_missed": len(missing),
            "rss_start_mb": _mb(rss_start),
            "rss_growth_baseline_mb": _mb(rss_stall - rss_start),
            "rss_growth_stalled_mb": _mb(rss_end - rss_stall),
            "rss_slope_stalled_mb_per_s": _mb(_slope(second_half)),
            "changes_written_while_stalled": writes_while_stalled,
            "rss_per_change_stalled_kb": round((rss_end - rss_stall) / max(1, writes_while_stalled) / 1e3, 1),
            "gateway_clients_at_end": None if health is None else health[1].get("clients"),
        },
    )
    recorder.record(result)
    assert_clean(counts, reports, rows)
    assert not missing, f"followers missed markers {missing[:5]}"
    assert lag(stalled_ticks) < 2.0, "followers fell behind while a client stalled"


# -- bugs found while building this scenario (fixed), as regression tests --


@pytest.mark.timeout(60)
async def test_dropping_a_stalled_client_keeps_the_tailer_alive(tmp_path) -> None:
    """A client that stops reading is disconnected once it has taken no frame for
    ``client_send_timeout`` (past ``client_queue_limit`` it first leaves live delivery to catch up
    from the log); the others keep getting changes, and /healthz stays 200."""
    db = SqliteDb(tmp_path / "app.db")
    gateway = await start_inprocess_gateway(db.url, client_queue_limit=1000, client_send_timeout=3.0)
    follower = FaultClient("follower", gateway.url)
    stalled = StalledClient(gateway.port, AUTH.issue("slowpoke"))
    try:
        await follower.start()
        await wait_for(lambda: follower.live, 10, "follower live")
        await asyncio.to_thread(stalled.connect)
        # ~26 MB of frames. Up to ~8 MB of them can sit outside the gateway's own queue for this
        # client (python-socketio's per-socket backlog of 8 frames of up to 200 changes, and the
        # kernel's loopback send buffer), so the queue passes 1000 changes with a wide margin.
        await db.bulk_write(12_000, body=2000)

        async def dropped() -> bool:
            health = await fetch_health(gateway.url)
            return health is not None and health[1]["clients"] == 1

        await wait_for(dropped, 15, "the stalled client is disconnected", interval=0.05)
        await db.write_marker("after")
        await wait_for(
            lambda: "after" in follower.markers, 5, "the follower gets changes written after the drop"
        )
        health = await fetch_health(gateway.url)
        assert health is not None and health[0] == 200, health
    finally:
        stalled.close()
        await follower.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(gateway.stop(), 10)


@pytest.mark.timeout(60)
async def test_gateway_exits_on_sigterm_with_a_stalled_client(cluster, tmp_path) -> None:
    """``rxstore serve`` exits within 10 s of SIGTERM although a client has stopped reading."""
    db = SqliteDb(tmp_path / "app.db")
    gateway = cluster.gateway(db.url)
    await gateway.start()
    stalled = StalledClient(gateway.port, AUTH.issue("slowpoke"))
    try:
        await asyncio.to_thread(stalled.connect)
        await db.bulk_write(3000, body=2000)  # more than the socket buffers hold
        await asyncio.sleep(1.0)  # the point: SIGTERM while the gateway is blocked sending to it
        started = time.monotonic()
        code = await gateway.terminate(timeout=10)
        assert code == 0, f"no exit {time.monotonic() - started:.1f} s after SIGTERM"
    finally:
        stalled.close()
