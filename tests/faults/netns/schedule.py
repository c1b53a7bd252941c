"""A randomized schedule of network faults between namespaced hosts, and a Jepsen-style checker.

``python -m tests.faults.netns.schedule --seed 7 --duration 1800`` (as root) runs:

- hosts in network namespaces (:class:`~tests.faults.netns.hosts.NetLab`): ``pg``
  (PostgreSQL), ``redis``, ``node1`` and ``node2`` (``rxstore serve`` with
  ``--redis``, both on the same PostgreSQL log), ``client1`` and ``client2``
  (each a process of two tracked clients that also mutate, see
  ``client.py``); the test process itself writes ``posts`` straight
  into PostgreSQL at a steady rate;
- a :class:`~tests.faults.proxy.DelayProxy` in the test process for every
  link a host opens to another (client -> node, node -> PostgreSQL,
  node -> Redis), so each pair's latency can be set on its own;
- the schedule (:func:`make_schedule`): one fault after another, each held
  for a random time and then healed: a one-way or two-way partition of a
  pair, packet loss of 1-20 % on a pair (nftables in the host's namespace),
  latency of 50-500 ms with jitter on a pair (its proxy), or ``kill -9`` of a
  node (started again at the heal);
- the checker (:func:`check`): every client's state equals the database,
  every change applied once and in log order (:func:`~tests.faults.harness.account`),
  every acknowledged mutation applied exactly once and in order
  (:func:`~tests.faults.harness.account_mutations`), and every client live
  within :data:`LIVE_BOUND` seconds of the last heal.

It prints one line per fault (what, where, how long, how long the clients
took to show a marker written at its heal) and the verdict; the exit status
is 0 when the verdict is clean. ``tests/faults/netns/test_network_faults.py`` runs a short
schedule of the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.faults.harness import (
    REPO,
    Counts,
    GatewayProcess,
    MutationCounts,
    PostgresDb,
    PostgresWriter,
    account,
    account_mutations,
    state_diff,
)
from tests.faults.netns.hosts import Direction, NetLab, Rule
from tests.faults.proxy import DelayProxy
from tests.services import PostgresServer, RedisServer
from tests.waiting import wait_for

NODES = ("node1", "node2")
CLIENT_HOSTS = ("client1", "client2")
CLIENTS_PER_HOST = 2

LIVE_BOUND = 30.0
"""Seconds after the last heal within which every client must be live and hold a marker written then.

A client on a link that silently drops everything notices within the nodes' ping interval +
ping timeout (:data:`PING`: 3 s); a node's PostgreSQL connection resumes within TCP's next
retransmission (at most the fault's length); the clients' backoff is capped at 1 s."""

PING = ("--ping-interval", "1", "--ping-timeout", "2")
"""The nodes' Socket.IO ping: a dead path is noticed within 3 s (the default is 45 s)."""

KINDS = ("partition", "loss", "latency", "kill")

REPORT_LIMIT = 256 * 1024 * 1024
"""Bytes of one JSON line from a client host (its reports hold every seq its clients got)."""


@attrs.frozen
class Fault:
    """One fault of a schedule: held from ``at`` for ``duration`` seconds, then healed.

    ``host`` opens the links (a client host, or a node towards ``pg``/``redis``/the other node);
    ``direction`` is seen from ``host``: ``out`` drops what it sends, ``in`` what it receives.
    """

    at: float
    duration: float
    kind: str
    host: str
    peer: str = ""
    direction: Direction = "both"
    loss: int = 0
    latency_ms: int = 0
    jitter_ms: int = 0

    def describe(self) -> str:
        if self.kind == "kill":
            return f"kill -9 {self.host}"
        arrow = {"both": "<->", "out": "->", "in": "<-"}[self.direction]
        pair = f"{self.host}{arrow}{self.peer}"
        if self.kind == "partition":
            return f"partition {pair}"
        if self.kind == "loss":
            return f"loss {self.loss}% {self.host}<->{self.peer}"
        return f"latency {self.latency_ms}+-{self.jitter_ms}ms {self.host}<->{self.peer}"


def make_schedule(
    seed: int, duration: float, *, shortest: float = 1.0, longest: float = 20.0, gap: float = 1.0
) -> list[Fault]:
    """Faults one after another for ``duration`` seconds, drawn from ``seed`` (the same seed, the
    same schedule); each lasts ``shortest``-``longest`` s with up to ``gap`` s of calm after it.
    Every kind of fault appears when the schedule has room for four."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = gap
    while t + shortest <= duration:
        kinds = [k for k in KINDS if k not in {f.kind for f in faults}] or list(KINDS)
        kind = rng.choice(kinds)
        length = round(rng.uniform(shortest, min(longest, duration - t)), 2)
        faults.append(_fault(rng, kind, round(t, 2), length))
        t += length + rng.uniform(min(0.3, gap), gap)
    return faults


def _fault(rng: random.Random, kind: str, at: float, length: float) -> Fault:
    if kind == "kill":
        return Fault(at, length, kind, rng.choice(NODES))
    pairs = [(c, n) for c in CLIENT_HOSTS for n in NODES] + [(n, s) for n in NODES for s in ("pg", "redis")]
    if kind != "latency":
        pairs.append(("node1", "node2"))  # nodes open no link to each other: this one must change nothing
    host, peer = rng.choice(pairs)
    if kind == "partition":
        return Fault(at, length, kind, host, peer, rng.choice(["out", "in", "both"]))
    if kind == "loss":
        return Fault(at, length, kind, host, peer, loss=rng.randint(1, 20))
    latency = rng.randint(50, 500)
    return Fault(at, length, kind, host, peer, latency_ms=latency, jitter_ms=rng.randint(0, latency // 2))


# -- the hosts ------------------------------------------------------------------------------------


class ClientHost:
    """A client host's process (``client.py``) and what it said."""

    def __init__(self, name: str, netns: str, urls: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.netns = netns
        self.urls = list(urls)
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.markers: dict[tuple[str, str], float] = {}
        self.clients: list[str] = []
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue(16)
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.netns, sys.executable, "-m", "tests.faults.netns.client",
                self.name, str(CLIENTS_PER_HOST), *self.urls,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=REPO,
                limit=REPORT_LIMIT,
            )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        ready = await self.answer("ready", timeout)
        self.clients = list(ready["ready"])

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            if "marker" in message:
                self.markers[(message["client"], message["marker"])] = float(message["t"])
            else:
                await self.answers.put(message)

    async def answer(self, key: str, timeout: float) -> dict[str, Any]:
        try:
            message = await asyncio.wait_for(self.answers.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {key!r} within {timeout} s\n{self.log_tail()}") from None
        assert key in message, f"{self.name}: expected {key!r}, got {message}"
        return message

    def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())

    def shown(self, marker: str) -> dict[str, float]:
        """Client -> unix time it first showed ``marker``."""
        return {client: t for (client, title), t in self.markers.items() if title == marker}

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 10)
        if self._reader is not None:
            self._reader.cancel()


class Site:
    """Every host of the schedule, started in order and stopped whatever happened."""

    def __init__(self, work: Path, *, seed: int, rate: float) -> None:
        self.work = work
        self.seed = seed
        self.rate = rate
        self.lab = NetLab(["pg", "redis", *NODES, *CLIENT_HOSTS])
        self.pg: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.proxies: dict[tuple[str, str], DelayProxy] = {}
        self.nodes: dict[str, GatewayProcess] = {}
        self.client_hosts: list[ClientHost] = []
        self.writer: PostgresWriter | None = None
        self.db: PostgresDb | None = None
        self.faults: list[Fault] = []

    async def start(self) -> None:
        NetLab.sweep()
        self.lab.up()
        hosts, root = self.lab.hosts, self.lab.root_address
        self.pg = PostgresServer(host=hosts["pg"].address, netns=hosts["pg"].netns)
        await asyncio.to_thread(self.pg.start)
        dsn = await asyncio.to_thread(self.pg.create_database, "rxnet")
        self.db = PostgresDb(dsn)
        self.redis = RedisServer(host=hosts["redis"].address, netns=hosts["redis"].netns)
        await asyncio.to_thread(self.redis.start)
        for node in NODES:
            pg_proxy = await self._proxy(node, "pg", self.pg.host, self.pg.port)
            redis_proxy = await self._proxy(node, "redis", self.redis.host, self.redis.port)
            gateway = GatewayProcess(
                f"postgresql://postgres@{root}:{pg_proxy.port}/rxnet",
                log_dir=self.work,
                name=node,
                args=["--redis", f"redis://{root}:{redis_proxy.port}/0", *PING],
                host=hosts[node].address,
                netns=hosts[node].netns,
            )
            self.nodes[node] = gateway
        for gateway in self.nodes.values():  # one after the other: both create the schema
            await gateway.start(timeout=60)
        for name in CLIENT_HOSTS:
            urls = []
            for node, gateway in self.nodes.items():
                proxy = await self._proxy(name, node, gateway.host, gateway.port)
                urls.append(f"http://{root}:{proxy.port}")
            self.client_hosts.append(ClientHost(name, hosts[name].netns, urls, self.work))
        # Clients take their snapshots before anything is written (docs/reliability.md, limits).
        await asyncio.gather(*(c.start() for c in self.client_hosts))
        self.writer = PostgresWriter(dsn, rate=self.rate, seed=self.seed)
        self.writer.start()
        for host in self.client_hosts:
            host.send("go")

    async def _proxy(self, host: str, peer: str, upstream: str, port: int) -> DelayProxy:
        proxy = DelayProxy(upstream, port, host=self.lab.root_address, seed=self.seed + len(self.proxies))
        await proxy.start()
        self.proxies[(host, peer)] = proxy
        return proxy

    @property
    def clients(self) -> list[str]:
        return [c for host in self.client_hosts for c in host.clients]

    def shown(self, marker: str) -> dict[str, float]:
        return {c: t for host in self.client_hosts for c, t in host.shown(marker).items()}

    async def stop(self) -> None:
        for host in self.client_hosts:
            await host.stop()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.stop(), 10)
        for gateway in self.nodes.values():
            gateway.kill()
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                await proxy.close()
        for server in (self.redis, self.pg):
            if server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(server.close)
        self.lab.down()

    # -- faults ---------------------------------------------------------------------------------

    def _drop(self, fault: Fault, loss: int | None) -> list[Rule]:
        if fault.peer in NODES and fault.host in NODES:  # node <-> node: by address
            return self.lab.drop(fault.host, self.lab.hosts[fault.peer].address, direction=fault.direction,
                                 loss=loss)  # fmt: skip
        proxy = self.proxies[(fault.host, fault.peer)]
        return self.lab.drop(fault.host, self.lab.root_address, port=proxy.port, direction=fault.direction,
                             loss=loss)  # fmt: skip

    async def inject(self, fault: Fault) -> Callable[[], Any]:
        """Start ``fault``; return what heals it (a coroutine function)."""
        if fault.kind == "kill":
            gateway = self.nodes[fault.host]
            gateway.kill()
            return lambda: gateway.start(timeout=60)
        if fault.kind == "latency":
            proxy = self.proxies[(fault.host, fault.peer)]
            proxy.delay(fault.latency_ms / 1000, fault.jitter_ms / 1000)
            return lambda: _healed(lambda: proxy.delay(0))
        rules = self._drop(fault, fault.loss if fault.kind == "loss" else None)
        return lambda: _healed(lambda: self.lab.heal(rules))

    async def health(self) -> str:
        states = []
        for name, gateway in self.nodes.items():
            answer = await gateway.health()
            body = {} if answer is None else answer[1]
            status = "down" if answer is None else answer[0]
            role = (body.get("capture") or {}).get("role")
            states.append(f"{name}={status}/log:{body.get('log')}/redis:{body.get('redis')}/capture:{role}")
        return " ".join(states)


async def _healed(heal: Callable[[], None]) -> None:
    heal()


# -- the run and the checker --------------------------------------------------------------------


@attrs.frozen
class Verdict:
    """The checker's result: per-client counts, the mutations, liveness after the last heal."""

    counts: list[Counts]
    mutations: MutationCounts
    live_after_heal_s: float | None
    """Seconds from the last heal until the slowest client showed the marker written then."""
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    reports: Sequence[dict[str, Any]],
    oracle: Sequence[tuple[int, str | None, str | None]],
    rows: dict[str, Any],
    mutations: dict[str, dict[str, Any]],
    live_after_heal_s: float | None,
) -> Verdict:
    """The checker: one verdict from the clients' reports and mutations against the log and table."""
    seqs = [seq for seq, _, _ in oracle]
    counts = [account(report, seqs, rows) for report in reports]
    acked = {client: list(m["acked"]) for client, m in mutations.items()}
    failed = {client: [title for title, _ in m["failed"]] for client, m in mutations.items()}
    mutation_counts = account_mutations(oracle, acked, failed)
    problems = [
        f"{c}{'' if c.state_equal else ' (' + state_diff(r, rows) + ')'}"
        for c, r in zip(counts, reports, strict=True)
        if not c.clean
    ]
    if not mutation_counts.clean:
        problems.append(f"mutations: {mutation_counts}")
    if live_after_heal_s is None or live_after_heal_s > LIVE_BOUND:
        problems.append(f"a client was not live within {LIVE_BOUND} s of the last heal ({live_after_heal_s})")
    return Verdict(counts, mutation_counts, live_after_heal_s, problems)


async def run_schedule(
    faults: Sequence[Fault],
    work: Path,
    *,
    seed: int,
    rate: float = 50.0,
    say: Callable[[str], None] = print,
) -> Verdict:
    """Start the site, play ``faults``, heal everything, and check."""
    site = Site(work, seed=seed, rate=rate)
    site.faults = list(faults)
    try:
        await site.start()
        assert site.db is not None and site.writer is not None
        say(f"NETNS hosts up: {', '.join(f'{h.name}={h.address}' for h in site.lab.hosts.values())}; "
            f"clients {', '.join(site.clients)}; {len(faults)} faults")  # fmt: skip
        start = time.monotonic()
        played: list[tuple[int, Fault, float, str]] = []
        for i, fault in enumerate(faults):
            pause = start + fault.at - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # the schedule's own clock
            now = time.monotonic() - start
            say(f"NETNS t={now:.1f}s fault {i}: {fault.describe()} for {fault.duration:.1f}s")
            heal = await site.inject(fault)
            await asyncio.sleep(fault.duration)  # the fault's length
            await heal()
            healed = time.time()
            await site.db.write_marker(f"heal{i}")
            played.append((i, fault, healed, await site.health()))
        site.lab.heal_all()
        for proxy in site.proxies.values():
            proxy.delay(0)
        for gateway in site.nodes.values():
            if not gateway.running:
                await gateway.start(timeout=60)
        healed = time.time()
        await site.db.write_marker("healed")
        live_s: float | None = None
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: len(site.shown("healed")) == len(site.clients), LIVE_BOUND, "clients live")
            live_s = max(site.shown("healed").values()) - healed
        for finding in played:
            say(_finding(site, *finding))
        for host in site.client_hosts:
            host.send("quiet")
        mutations: dict[str, dict[str, Any]] = {}
        for host in site.client_hosts:
            mutations.update((await host.answer("mutations", 60))["mutations"])
        await site.writer.stop()
        await site.db.write_marker("final")
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: len(site.shown("final")) == len(site.clients), 60, "the final marker")
        oracle = await site.db.oracle()
        head = oracle[-1][0]
        for host in site.client_hosts:
            host.send(f"finish {head}")
        reports = []
        for host in site.client_hosts:
            reports.extend((await host.answer("reports", 90))["reports"])
        rows = await site.db.rows()
        verdict = check(reports, oracle, rows, mutations, live_s)
        say(f"NETNS writer: {site.writer.written} changes, {site.writer.errors} failed tries; "
            f"log: {len(oracle)} changes; {await site.health()}")  # fmt: skip
        for counts in verdict.counts:
            say(f"NETNS client {counts.name}: applied={counts.applied} lost={counts.lost} "
                f"duplicated={counts.duplicated} out_of_order={counts.out_of_order} "
                f"redelivered={counts.redelivered} resets={counts.resets} reconnects={counts.reconnects} "
                f"state==db {counts.state_equal} caught_up {counts.caught_up}")  # fmt: skip
        m = verdict.mutations
        say(f"NETNS mutations: acked={m.acked} failed={m.failed} (of those applied once: {m.failed_applied}) "
            f"applied={m.applied} acked_missing={len(m.acked_missing)} applied_twice={len(m.applied_twice)} "
            f"out_of_order={len(m.out_of_order)}")  # fmt: skip
        say(f"NETNS live after the last heal: {live_s if live_s is None else round(live_s, 2)} s "
            f"(bound {LIVE_BOUND} s)")  # fmt: skip
        say("NETNS verdict: " + ("clean" if verdict.ok else "NOT CLEAN:\n  " + "\n  ".join(verdict.problems)))
        return verdict
    finally:
        await site.stop()


def _finding(site: Site, i: int, fault: Fault, healed: float, health: str) -> str:
    """One line: the fault, the nodes' health at its heal, and how long after the heal each client
    showed the marker written then (``-``: never; a later fault may have held it up)."""
    # A client shows a marker's later titles only once it had the earlier ones (the same row, in log
    # order), though two in one batch show only the later: the first later title stands for it.
    shown: dict[str, float] = {}
    for title in [*(f"heal{j}" for j in range(i, len(site.faults))), "healed", "final"]:
        for client, at in site.shown(title).items():
            shown.setdefault(client, at)
    times = " ".join(f"{c}={shown[c] - healed:.2f}s" if c in shown else f"{c}=-" for c in site.clients)
    return (f"NETNS fault {i}: {fault.describe()} for {fault.duration:.1f}s at {fault.at:.1f}s; "
            f"at heal: {health}; clients had the heal's marker after: {times}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.netns.schedule", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the schedule (default: 1)")
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of faults (default: 1800)")
    parser.add_argument("--shortest", type=float, default=2.0, help="shortest fault in seconds (default: 2)")
    parser.add_argument("--longest", type=float, default=20.0, help="longest fault in seconds (default: 20)")
    parser.add_argument(
        "--gap", type=float, default=2.0, help="most calm after a fault, seconds (default: 2)"
    )
    parser.add_argument("--rate", type=float, default=50.0, help="changes/s written (default: 50)")
    parser.add_argument("--work", type=Path, default=None, help="where logs go (default: a temp dir)")
    args = parser.parse_args(argv)
    reason = NetLab.missing()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="rxstore-netns-"))
    work.mkdir(parents=True, exist_ok=True)
    faults = make_schedule(
        args.seed, args.duration, shortest=args.shortest, longest=args.longest, gap=args.gap
    )
    print(
        f"NETNS seed {args.seed}, duration {args.duration:.0f} s, {len(faults)} faults, logs in {work}",
        flush=True,
    )
    verdict = asyncio.run(
        run_schedule(faults, work, seed=args.seed, rate=args.rate, say=lambda s: print(s, flush=True))
    )
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
