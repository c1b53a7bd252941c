"""Real networks: hosts in network namespaces, nftables partitions and loss, delaying proxies, and a
short randomized schedule of them with kill -9 of nodes, checked Jepsen-style (schedule.py)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxstore.client.transport import SocketIOTransport
from rxstore.protocol.errors import TransportError
from tests.faults.harness import REPO, account_mutations, summarize
from tests.faults.netns.hosts import NetLab
from tests.faults.netns.schedule import KINDS, LIVE_BOUND, check, make_schedule, run_schedule
from tests.faults.proxy import DelayProxy
from tests.services import PostgresServer, RedisServer, require_or_skip
from tests.waiting import wait_for

SEED = int(os.environ.get("RXSTORE_NETNS_SEED", "28"))
"""The CI schedule's seed (fixed; another one with ``RXSTORE_NETNS_SEED``)."""

DURATION = 16.0
"""Seconds of the CI schedule's faults (the whole test: about a minute on 2 busy cores)."""


def _require_netns() -> None:
    reason = NetLab.missing()
    if reason:
        require_or_skip(reason)


@pytest.fixture(autouse=True)
def _no_lab_left() -> Iterator[None]:
    """Whatever a test did (failed, timed out), no namespace of this process outlives it."""
    try:
        yield
    finally:
        NetLab.down_all()


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """Two hosts, ``a`` and ``b``, removed whatever the test did."""
    _require_netns()
    NetLab.sweep()
    with NetLab(["a", "b"]) as made:
        yield made


# -- the schedule and the checker, without a network ------------------------------------------------


def test_a_schedule_is_drawn_from_its_seed_and_holds_every_kind_of_fault() -> None:
    """The same seed gives the same schedule; faults follow one another within the duration, and a
    schedule with room for four holds each kind (partition, loss, latency, kill -9)."""
    faults = make_schedule(5, 60, longest=5)
    assert faults == make_schedule(5, 60, longest=5) != make_schedule(6, 60, longest=5)
    assert {f.kind for f in faults[:4]} == set(KINDS)
    for earlier, later in itertools.pairwise(faults):
        assert earlier.at + earlier.duration <= later.at
    assert all(1 <= f.loss <= 20 for f in faults if f.kind == "loss")
    assert all(50 <= f.latency_ms <= 500 for f in faults if f.kind == "latency")
    assert faults[-1].at + faults[-1].duration <= 60


def test_mutations_acknowledged_are_counted_missing_twice_or_out_of_order() -> None:
    """An acknowledged mutation missing from the log, one applied twice, or a client's mutations
    in the log in another order than it made them each make the count unclean; a failed mutation
    applied once does not."""
    log = [(1, "m1", "a-m1"), (2, None, "t2"), (3, "m2", "a-m2"), (4, "m3", "b-m1")]
    assert account_mutations(log, {"a": ["a-m1", "a-m2"]}, {"b": ["b-m1"]}).clean
    assert account_mutations(log, {"a": ["a-m1", "a-m2"]}, {"b": ["b-m1"]}).failed_applied == 1
    assert account_mutations(log, {"a": ["a-m1", "a-m2", "a-m3"]}).acked_missing == ("a-m3",)
    assert account_mutations([*log, (5, "m4", "a-m1")], {"a": ["a-m1"]}).applied_twice == ("a-m1",)
    assert account_mutations(log, {"a": ["a-m2", "a-m1"]}).out_of_order == ("a",)


def test_the_verdict_needs_every_client_live_within_the_bound() -> None:
    """A run whose clients are all clean still fails the verdict when a client was not live within
    :data:`LIVE_BOUND` of the last heal."""
    report = {
        "name": "c",
        "timeline": [("snap", 1)],
        "received": [],
        "resets": 0,
        "root_duplicates": 0,
        "reconnects": 0,
        "errors": [],
        "seq": 1,
        "state": {},
    }
    assert check([report], [(1, None, "t")], {}, {}, 0.5).ok
    assert not check([report], [(1, None, "t")], {}, {}, None).ok
    assert not check([report], [(1, None, "t")], {}, {}, LIVE_BOUND + 1).ok


# -- the parts, on real namespaces and sockets ---------------------------------------------------------


@pytest.fixture
def server(lab: NetLab) -> Iterator[int]:
    """A TCP server on the test namespace's bridge address that answers each connection ``ok``."""
    sock = socket.create_server((lab.root_address, 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def _answered(lab: NetLab, host: str, port: int, *, tries: int = 1, timeout: float = 2.0) -> int:
    """How many of ``tries`` connections from ``host``'s namespace to the server got ``ok`` (``timeout``
    seconds each)."""
    code = (
        "import socket, sys\n"
        "ok = 0\n"
        f"for _ in range({tries}):\n"
        "    try:\n"
        f"        with socket.create_connection(({lab.root_address!r}, {port}), timeout={timeout}) as s:\n"
        "            ok += s.recv(2) == b'ok'\n"
        "    except OSError:\n"
        "        pass\n"
        "print(ok)\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", lab.hosts[host].netns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30 + 2 * timeout * tries,
        check=True,
    )
    return int(out.stdout)


@pytest.mark.timeout(60)
def test_partitions_one_way_and_two_way_drop_the_pair_and_heal(lab: NetLab, server: int) -> None:
    """Host ``a`` reaches a server of the test's namespace; a rule in ``a`` dropping what it sends
    there, or what it receives from there, or both, cuts that pair (the connection times out) while
    ``b`` still gets through; healing the rule restores it. A rule for another port of the peer
    leaves the pair alone; one for its port with 100 % loss cuts it."""
    assert _answered(lab, "a", server) == 1
    for direction in ("in", "out", "both"):
        rules = lab.drop("a", lab.root_address, direction=direction)
        assert _answered(lab, "a", server) == 0, direction
        assert _answered(lab, "b", server) == 1, direction
        lab.heal(rules)
        assert _answered(lab, "a", server) == 1, direction
    lab.drop("a", lab.root_address, port=server + 1)
    assert _answered(lab, "a", server) == 1
    lab.drop("a", lab.root_address, port=server, loss=100)
    assert _answered(lab, "a", server) == 0
    lab.heal_all()
    assert _answered(lab, "a", server) == 1


@pytest.mark.timeout(90)
def test_random_loss_drops_some_packets_of_the_pair(lab: NetLab, server: int) -> None:
    """``numgen random mod 100 < 50`` on what ``a`` receives from the server drops about half its
    packets: of 20 connection attempts (1 s each), some are answered and some are not."""
    lab.drop("a", lab.root_address, port=server, direction="in", loss=50)
    answered = _answered(lab, "a", server, tries=20, timeout=1.0)
    assert 0 < answered < 20, answered


@pytest.mark.timeout(60)
def test_sweep_removes_what_a_killed_run_left_and_nothing_of_a_live_run(lab: NetLab) -> None:
    """A namespace and a root veth named for a pid that is gone (a run killed before its cleanup)
    are removed by ``NetLab.sweep()``; those of this live run are kept."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    netns, link = f"rxn-{dead.pid}-1-x", f"rxn{dead.pid}x1"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    peer = f"rxt{dead.pid}p"  # the pair in the test's namespace: removing the namespace leaves it
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", peer], check=True)
    removed = NetLab.sweep()
    assert netns in removed and link in removed
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert netns not in listed and lab.hosts["a"].netns in listed
    assert subprocess.run(["ip", "link", "show", link], capture_output=True, check=False).returncode != 0


@pytest.mark.timeout(60)
async def test_a_connect_to_a_node_whose_packets_never_come_back_ends_after_connect_timeout(
    lab: NetLab,
) -> None:
    """Found by the schedule: a client whose node's packets stop arriving (one-way partition)
    noticed it within the ping timeout, but its next attempt at that node waited for TCP's connect
    (aiohttp's 30 s) before it tried the next node. ``SocketIOTransport(connect_timeout=2)`` now
    gives up on a host that answers nothing with a ``TransportError`` (try the next node) after
    ``connect_timeout``, well within 15 s."""
    lab.drop("a", lab.root_address, direction="in")
    transport = SocketIOTransport(connect_timeout=2.0)
    url = f"http://{lab.hosts['a'].address}:8080"
    with pytest.raises(TransportError, match="cannot connect"):
        await asyncio.wait_for(transport.connect(url, {"token": None, "topics": [], "cursor": None}), 15)


@pytest.mark.timeout(60)
def test_a_run_killed_with_sigkill_leaves_nothing_after_the_next_sweep() -> None:
    """A process that made hosts (and runs a process inside one) is killed with SIGKILL, so its
    cleanup never runs: the next ``NetLab.sweep()`` removes its namespaces, kills what ran in
    them, and its veth in the test's namespace is gone."""
    _require_netns()
    code = (
        "import subprocess, sys, time\n"
        "from tests.faults.netns.hosts import NetLab\n"
        "lab = NetLab(['x', 'y'])\n"
        "lab.up()\n"
        "inside = subprocess.Popen(['ip', 'netns', 'exec', lab.hosts['x'].netns, 'sleep', '300'])\n"
        "print(lab.prefix, lab.root_link, inside.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert run.stdout is not None
    prefix, link, inside = run.stdout.readline().split()
    run.kill()
    run.wait()
    removed = NetLab.sweep()
    assert sum(name.startswith(prefix) for name in removed) == 3  # the bridge's namespace, x and y
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert prefix not in listed
    assert subprocess.run(["ip", "link", "show", link], capture_output=True, check=False).returncode != 0
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # reaped by init once killed
            os.kill(int(inside), 0)
            time.sleep(0.05)  # paces the check for the killed process to go


@pytest.mark.timeout(30)
async def test_delay_proxy_holds_what_it_forwards_and_keeps_its_order() -> None:
    """With a 30 s latency, a chunk the proxy has read is not passed on (the server has not got it);
    with 20 ms +- 15 ms, 200 numbered lines come back through it in order; with none, nothing more
    is delayed."""
    got: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            got.append(line)
            writer.write(line)
            await writer.drain()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = DelayProxy("127.0.0.1", port, seed=1)
    await proxy.start()
    try:
        proxy.delay(30.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"held\n")
        await wait_for(lambda: proxy.delayed >= 1, 5, "the proxy read the chunk")
        await asyncio.sleep(0.2)  # gives a proxy that does not hold time to pass it on
        assert got == []
        writer.close()
        proxy.delay(0.02, 0.015)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        lines = [f"{i}\n".encode() for i in range(200)]
        for line in lines:
            writer.write(line)
        back = [await asyncio.wait_for(reader.readline(), 10) for _ in lines]
        assert back == lines
        delayed = proxy.delayed
        assert delayed > 1
        proxy.delay(0)
        writer.write(b"now\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"now\n"
        assert proxy.delayed == delayed
        writer.close()
    finally:
        await proxy.close()
        server.close()


# -- the short schedule ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(90)
async def test_short_schedule_of_network_faults_and_kills_is_clean(recorder, tmp_path: Path) -> None:
    """PostgreSQL, Redis, two gateway nodes and two client hosts (two clients each, mutating) in
    network namespaces; a 16 s schedule drawn from a fixed seed (printed) plays partitions, loss,
    latency and kill -9 of a node, one after another, each healed. Then every client equals the
    database, got every change once and in log order, every acknowledged mutation is in the log
    exactly once and in order, and every client was live within the bound after the last heal."""
    _require_netns()
    for reason in (PostgresServer.missing(), RedisServer.missing()):
        if reason:
            require_or_skip(reason)
    faults = make_schedule(SEED, DURATION, shortest=1.0, longest=3.0, gap=1.0)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    replay = (
        f"python -m tests.faults.netns.schedule --seed {SEED} --duration {DURATION:.0f} "
        "--shortest 1 --longest 3 --gap 1"
    )
    say(f"NETNS seed {SEED} (replay: {replay})")
    verdict = await run_schedule(faults, tmp_path, seed=SEED, say=say)
    recorder.record(
        summarize(
            "netns-schedule",
            verdict.counts,
            changes=max((c.expected for c in verdict.counts), default=0),
            live_s=verdict.live_after_heal_s,
            caught_up_s=None,
            extra={
                "seed": SEED,
                "faults": len(faults),
                "mutations_acked": verdict.mutations.acked,
                "mutations_failed": verdict.mutations.failed,
            },
        )
    )
    assert verdict.ok, "\n".join(lines)
