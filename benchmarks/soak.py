"""Soak: client churn against one gateway for a bounded time, watching whether anything grows.

``python -m benchmarks.soak [--duration S] [--clients N] [--processes P] [--seed N]``

One gateway (SQLite, the demo ``posts`` table, its mutations, presence on ``posts``)
runs in this process. Client processes (``benchmarks._churn_client``) hold ``N``
connections in all, each one cycling: connect, follow a subset, switch subsets,
sometimes mutate, sometimes join presence, leave after a moment, connect again.
A writer updates posts meanwhile. The run is cut into rounds; after each round
every client stops and the gateway is left **quiet** (no client connected), and
this process is measured: its RSS, open file descriptors, asyncio tasks, its
live objects by type (after a full garbage collection), the blocks still
allocated by each line of code (``tracemalloc``: it sees what the collector does
not track, such as a dict of strings), and the gateway's own gauges from
``/metrics``. While clients churn, the same is sampled every few
seconds.

The first round is the warm-up (caches fill, the allocator grows its arenas).
After it, a leak shows as growth from quiet point to quiet point: the verdict
fails on any asyncio task or file descriptor more, on a per-connection gauge
above zero when quiet, on any object type or allocating line that grew by more
than ``max(OBJECT_SLACK, connections / 10)`` objects (blocks), or on RSS growth
above ``--rss-slack`` MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._common import rss_bytes
from benchmarks._gateway import AUTH, Process, Server
from rxstore.gateway.demo import register_demo_mutations

QUIET_GAUGES = (
    "rxstore_connected_clients",
    "rxstore_subscriptions",
    "rxstore_queued_bytes",
    "rxstore_presence_members",
    "rxstore_pending_syncs",
    "rxstore_catching_up",
    "rxstore_requests_in_flight",
    "rxstore_snapshots_active",
    "rxstore_snapshots_waiting",
)
"""The gateway's per-connection gauges: all zero once no client is connected."""

PING_TASK = "AsyncSocket._send_ping"
"""python-engineio's per-connection ping task (4.x): it outlives its connection by up to a ping interval."""

OBJECT_SLACK = 200
"""Objects of one type that may come or go between quiet points without being called a leak."""


class ChurnProcess(Process):
    """A ``benchmarks._churn_client`` process with ``slots`` churning connections."""

    module = "benchmarks._churn_client"

    def __init__(self, url: str, *, slots: int, first_user: int, seed: int, hold: float) -> None:
        tokens = [AUTH.issue(f"soak-{first_user + i}", ttl=None) for i in range(slots)]
        super().__init__(url=url, tokens=tokens, seed=seed, hold=hold)


@dataclass
class Sample:
    """The gateway process at one moment."""

    seconds: float
    """Since the soak began."""
    phase: str
    """``round N`` while clients churn, ``quiet N`` after round N's clients stopped."""
    rss_mib: float
    fds: int
    tasks: int
    """asyncio tasks, the engine.io ping tasks of closed connections left out (see ``pings``)."""
    pings: int
    """Closed connections' engine.io ping tasks: each sleeps out the ``ping_interval`` it began."""
    objects: int
    gauges: dict[str, float]


@dataclass
class Quiet:
    """A sample with no client connected, and the live objects by type then."""

    sample: Sample
    types: Counter[str]
    sites: Counter[str] = field(default_factory=Counter)
    """Blocks still allocated by each line (``file:line``), when traced."""


@dataclass
class SoakResult:
    """What a soak saw, and its verdict."""

    baseline: Sample | None = None
    """The gateway started, before any client."""
    samples: list[Sample] = field(default_factory=list)
    quiets: list[Quiet] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    """Every rule the last quiet point broke against the first (empty: no growth after warm-up)."""

    @property
    def ok(self) -> bool:
        return not self.findings


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _tasks() -> tuple[int, int]:
    """This loop's tasks: other than engine.io's ping tasks, and those."""
    pings = sum(getattr(task.get_coro(), "__qualname__", "") == PING_TASK for task in asyncio.all_tasks())
    return len(asyncio.all_tasks()) - pings, pings


def _types() -> Counter[str]:
    gc.collect()
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


@contextlib.contextmanager
def _traced(trace: bool) -> Iterator[None]:
    """Trace allocations (one frame) while the block runs, unless off or already traced."""
    started = trace and not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(1)
    try:
        yield
    finally:
        if started:
            tracemalloc.stop()


def _sites() -> Counter[str]:
    """Blocks still allocated by each line of code (empty unless ``tracemalloc`` traces)."""
    if not tracemalloc.is_tracing():
        return Counter()
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        ]
    )
    return Counter(
        {
            f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}": stat.count
            for stat in snapshot.statistics("lineno")
        }
    )


async def _gauges(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in QUIET_GAUGES:
            values[family.name] = sum(sample.value for sample in family.samples)
    return values


async def _sample(session: aiohttp.ClientSession, url: str, phase: str, began: float) -> Sample:
    tasks, pings = _tasks()
    return Sample(
        seconds=time.monotonic() - began,
        phase=phase,
        rss_mib=rss_bytes() / 2**20,
        fds=_fds(),
        tasks=tasks,
        pings=pings,
        objects=len(gc.get_objects()),
        gauges=await _gauges(session, url),
    )


async def _write(server: Server, rate: float, stop: asyncio.Event) -> None:
    """Update posts at ``rate`` changes/s until ``stop``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    i = 0
    while not stop.is_set():
        await server.update(i % server.rows + 1, 1)
        i += 1
        delay = started + i / rate - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def _quiet(session: aiohttp.ClientSession, url: str, timeout: float) -> None:
    """Wait until every per-connection gauge is zero and no ping task is left (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gauges = await _gauges(session, url)
        if not any(gauges.values()) and not _tasks()[1]:
            return
        await asyncio.sleep(0.1)


def _judge(result: SoakResult, connections: int, rss_slack_mib: float, ping_interval: float) -> None:
    """Compare the last quiet point with the first (after the warm-up round); fill ``result.findings``."""
    first, last = result.quiets[0], result.quiets[-1]
    a, b = first.sample, last.sample
    findings = result.findings
    if b.tasks > a.tasks:
        findings.append(f"asyncio tasks grew: {a.tasks} -> {b.tasks}")
    if b.pings:
        findings.append(f"{b.pings} ping tasks of closed connections left after {2 * ping_interval + 10:g} s")
    if b.fds > a.fds:
        findings.append(f"open file descriptors grew: {a.fds} -> {b.fds}")
    findings.extend(
        f"{name} = {value:g} with no client connected" for name, value in b.gauges.items() if value
    )
    slack = max(OBJECT_SLACK, connections // 10)
    findings.extend(
        f"{name}: {first.types[name]} -> {last.types[name]} objects (+{n})"
        for n, name in _grown(first.types, last.types, slack)
    )
    findings.extend(
        f"allocated at {site}: {first.sites[site]} -> {last.sites[site]} blocks (+{n})"
        for n, site in _grown(first.sites, last.sites, slack)
    )
    if b.rss_mib - a.rss_mib > rss_slack_mib:
        findings.append(
            f"RSS grew {b.rss_mib - a.rss_mib:.1f} MiB (> {rss_slack_mib:g}): "
            f"{a.rss_mib:.1f} -> {b.rss_mib:.1f}"
        )


def _grown(first: Counter[str], last: Counter[str], slack: int, most: int = 10) -> list[tuple[int, str]]:
    """The ``most`` names whose count grew by more than ``slack``: ``(growth, name)``, largest first."""
    grown = ((last[name] - first[name], name) for name in last)
    return sorted(((n, name) for n, name in grown if n > slack), reverse=True)[:most]


async def soak(
    *,
    clients: int = 200,
    processes: int = 2,
    rounds: int = 4,
    round_seconds: float = 10.0,
    write_rate: float = 50.0,
    hold: float = 0.5,
    seed: int = 1,
    sample_every: float = 2.0,
    rss_slack_mib: float = 16.0,
    ping_interval: float = 25.0,
    trace: bool = True,
    progress: Callable[[str], None] = print,
) -> SoakResult:
    """Churn ``clients`` connections for ``rounds`` rounds of ``round_seconds``; judge the growth.

    Args:
        clients: Connections held at once, spread over ``processes`` client processes.
        processes: Client processes.
        rounds: Rounds (at least 2: the first is the warm-up).
        round_seconds: How long each round's clients churn.
        write_rate: Post updates per second while clients churn.
        hold: The most seconds a connection stays before it leaves (uniform from 0).
        seed: Seeds every client process's choices (process ``i`` gets ``seed + i``).
        sample_every: Seconds between samples while clients churn.
        rss_slack_mib: RSS growth between the first and the last quiet point still judged fine.
        ping_interval: The gateway's engine.io ping interval (a closed connection's ping task
            lives up to this long, so each quiet point waits for it).
        trace: Count the blocks each line of code keeps allocated (``tracemalloc``, one frame;
            it slows this process, the gateway's, by about a third).
        progress: Where each sample's line goes.
    """
    if rounds < 2:
        raise ValueError(f"a soak needs at least 2 rounds (the first warms up), got {rounds}")
    result = SoakResult()
    server = Server(rows=1000, ping_interval=ping_interval, ping_timeout=ping_interval)
    with _traced(trace):
        async with server, aiohttp.ClientSession() as session:
            assert server.gateway is not None
            register_demo_mutations(server.gateway)
            url = server.url
            began = time.monotonic()
            result.baseline = await _sample(session, url, "baseline", began)
            progress(_line(result.baseline))
            per_process = [clients // processes + (i < clients % processes) for i in range(processes)]
            for number in range(1, rounds + 1):
                churners = [
                    ChurnProcess(url, slots=n, first_user=sum(per_process[:i]), seed=seed + i, hold=hold)
                    for i, n in enumerate(per_process)
                ]
                await asyncio.gather(*(c.start() for c in churners))
                stop = asyncio.Event()
                writer = asyncio.create_task(_write(server, write_rate, stop))
                ends = time.monotonic() + round_seconds
                while (left := ends - time.monotonic()) > 0:
                    await asyncio.sleep(min(sample_every, left))
                    sample = await _sample(session, url, f"round {number}", began)
                    result.samples.append(sample)
                    progress(_line(sample))
                stop.set()
                await writer
                for churner in churners:
                    reply = await churner.request(cmd="stop", timeout=120)
                    result.counts.update(reply["counts"])
                    result.errors.update(reply["errors"])
                    await churner.stop()
                await _quiet(session, url, timeout=2 * ping_interval + 10)
                types, sites = _types(), _sites()
                quiet = Quiet(await _sample(session, url, f"quiet {number}", began), types, sites)
                result.samples.append(quiet.sample)
                progress(_line(quiet.sample))
                if number > 1:  # the first round warms up
                    result.quiets.append(quiet)
    _judge(result, result.counts["cycles"], rss_slack_mib, ping_interval)
    return result


def _line(sample: Sample) -> str:
    gauges = sample.gauges
    return (
        f"{sample.seconds:7.1f}s {sample.phase:>9}  rss {sample.rss_mib:6.1f} MiB  fds {sample.fds:4d}  "
        f"tasks {sample.tasks:4d} + {sample.pings:5d} pings  objects {sample.objects:8d}  "
        f"clients {gauges.get('rxstore_connected_clients', 0):5.0f}  "
        f"subscriptions {gauges.get('rxstore_subscriptions', 0):5.0f}  "
        f"presence {gauges.get('rxstore_presence_members', 0):4.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Churn clients against one gateway for a bounded time and report whether anything grows "
        "(RSS, file descriptors, asyncio tasks, objects by type, per-connection gauges).",
    )
    parser.add_argument("--duration", type=float, default=120, help="seconds of churn in all (default 120)")
    parser.add_argument(
        "--rounds", type=int, default=0, help="rounds to cut it into (default: one a minute, >= 3)"
    )
    parser.add_argument("--clients", type=int, default=1000, help="connections at once (default 1000)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--write-rate", type=float, default=50, help="post updates per second (default 50)")
    parser.add_argument("--hold", type=float, default=2.0, help="most seconds a connection stays (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' choices (default: random)")
    parser.add_argument("--ping-interval", type=float, default=25, help="the gateway's (default 25 s)")
    parser.add_argument(
        "--rss-slack", type=float, default=32, help="MiB of RSS growth judged fine (default 32)"
    )
    parser.add_argument(
        "--no-trace",
        action="store_true",
        help="do not count the blocks each line keeps allocated (tracemalloc slows the gateway by a third)",
    )
    args = parser.parse_args(argv)
    seed = args.seed or random.randrange(1, 2**31)
    rounds = args.rounds or max(3, round(args.duration / 60))
    print(
        f"soak: seed {seed}, {args.clients} connections in {args.processes} processes, {rounds} rounds "
        f"of {args.duration / rounds:.0f} s"
    )
    result = asyncio.run(
        soak(
            clients=args.clients,
            processes=args.processes,
            rounds=rounds,
            round_seconds=args.duration / rounds,
            write_rate=args.write_rate,
            hold=args.hold,
            seed=seed,
            rss_slack_mib=args.rss_slack,
            ping_interval=args.ping_interval,
            trace=not args.no_trace,
        )
    )
    counts = ", ".join(f"{name} {n}" for name, n in sorted(result.counts.items()))
    print(f"churn: {counts}")
    for error, n in result.errors.most_common(10):
        print(f"cycle error x{n}: {error}")
    for finding in result.findings:
        print(f"GROWTH: {finding}")
    print(f"soak: seed {seed}: {'no growth after the warm-up round' if result.ok else 'GROWTH FOUND'}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
