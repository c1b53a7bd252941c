"""Benchmark: presence (issue 29, item 5).

* updates: a gateway in this process (per-connection rate limit lifted) and ``MEMBERS`` members
  of one channel in a helper process (``benchmarks._presence_members``: raw websockets, each
  frame counted, not decoded). ``UPDATERS`` of the members send ``rxstore:presence_update`` and
  wait for its acknowledgement, again and again, for ``SECONDS``: the updates/s one node takes
  and fans out (the updates of one turn of the gateway's loop go to every member as one diff
  frame per channel), the gateway's CPU per update, and how long after the last
  acknowledgement every member had every updater's last update.
* kill -9: two ``rxstore serve --redis`` nodes on a throwaway ``redis-server``; ``KILLED``
  members on node 1, an observer (a ``RootStore`` with a ``PresenceStore``) on node 2. Node 1 is
  killed with SIGKILL: the seconds until the observer's list holds itself only, against the
  documented bound (``lease + heartbeat / 2``, 5.5 s by default).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Output, Table, fmt
from benchmarks._gateway import AUTH, Process, Server
from rxstore import PresenceStore, RootStore
from rxstore.gateway import PresenceLimits

MEMBERS = 1_000
UPDATERS = 10
SECONDS = 5.0
KILLED = 100
UNLIMITED = PresenceLimits(updates_per_second=1e9, burst=10**9, max_members=10**6)


class Members(Process):
    """A ``benchmarks._presence_members`` process: ``members`` websockets in the channel ``posts``."""

    module = "benchmarks._presence_members"

    def __init__(self, url: str, members: int) -> None:
        super().__init__(url=url, members=members)


async def _updates(out: Output, members: int, seconds: float) -> dict[str, Any]:
    async with Server(rows=10, presence=UNLIMITED) as server:
        out.step(f"{members:,} members joining")
        process = Members(server.url, members)
        await process.start(timeout=600)
        try:
            out.advance()
            out.step(f"{UPDATERS} updaters for {seconds:g} s")
            cpu = time.process_time()
            result = await process.request(cmd="updates", seconds=seconds, updaters=UPDATERS)
            result["cpu"] = time.process_time() - cpu  # the gateway's (this process): updates and drain
            result["joined_s"] = process.ready["seconds"]
            out.advance()
        finally:
            await process.stop()
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Node:
    """``rxstore serve --redis`` as a child process."""

    def __init__(self, directory: Path, name: str, redis: str) -> None:
        self.port = _free_port()
        cmd = [
            sys.executable, "-m", "rxstore.cli", "serve", "--db", f"sqlite:///{directory / name}.db",
            "--tables", "posts", "--demo-schema", "--port", str(self.port), "--workers", "1",
            "--redis", redis,
        ]  # fmt: skip
        env = {**os.environ, "RXSTORE_SECRET": AUTH.secret}
        log = (directory / f"{name}.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def healthy(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"node on {self.url} did not become healthy")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


async def _kill_once(directory: Path, redis: str, killed: int) -> float:
    nodes = [_Node(directory, f"n{i}", redis) for i in (1, 2)]
    try:
        await asyncio.gather(*(node.healthy() for node in nodes))
        members = Members(nodes[0].url, killed)
        await members.start(timeout=300)
        room = PresenceStore("posts")
        observer = RootStore(nodes[1].url, stores=[room], token=AUTH.issue("observer", ttl=None))
        await observer.setup_realtime()
        try:
            await observer.join_presence("posts")
            while len(room.value) < killed + 1:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            nodes[0].kill()
            while len(room.value) > 1:
                await asyncio.sleep(0.005)
            return time.monotonic() - started
        finally:
            await observer.teardown_realtime()
            if members.proc is not None:
                members.proc.kill()  # its sockets died with node 1
                await members.proc.wait()
    finally:
        for node in nodes:
            node.kill()


async def _kills(out: Output, repeats: int, killed: int) -> list[float] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with tempfile.TemporaryDirectory(prefix="rxstore-bench-presence-") as tmp:
        directory = Path(tmp)
        port = _free_port()
        redis = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        try:
            times = []
            for i in range(repeats):
                out.step(f"kill -9 {i + 1}/{repeats}: {killed} members on node 1")
                times.append(await _kill_once(directory, f"redis://127.0.0.1:{port}/0", killed))
                out.advance()
            return times
        finally:
            redis.kill()
            redis.wait(10)


async def _run(out: Output, quick: bool) -> Table:
    members = MEMBERS // 10 if quick else MEMBERS
    seconds = SECONDS / 5 if quick else SECONDS
    repeats = 1 if quick else 3
    out.start("presence", 2 + repeats)
    result = await _updates(out, members, seconds)
    kills = await _kills(out, repeats, KILLED // 10 if quick else KILLED)
    table = Table(
        "presence",
        f"Presence: {members:,} members in one channel on one node; a node killed with SIGKILL",
        ["measure", "value", "unit", "note"],
    )
    rate = result["updates"] / result["seconds"]
    drained = result["drained"]
    per_frame = result["updates"] * members / max(result["frames"], 1)
    table.add(
        ["updates/s taken and fanned out", rate, "1/s", f"{UPDATERS} updaters, each waiting for its ack"],
        table.row("updates", f"{members} members", rate, "1/s"),
    )
    table.add(
        ["diff frames delivered/s", result["frames"] / (result["seconds"] + (drained or 0.0)), "1/s",
         f"{result['frames']:,} frames to {members:,} members: {fmt(per_frame)} updates a frame"],
        table.row("frames", f"{members} members", result["frames"], "frames"),
    )  # fmt: skip
    cpu_us = result["cpu"] / result["updates"] * 1e6
    table.add(
        ["gateway CPU per update", cpu_us, "µs", "the update and its fan-out, over the run"],
        table.row("cpu per update", f"{members} members", cpu_us, "us"),
    )
    table.add(
        [
            "updates/s the gateway's CPU allows",
            1e6 / cpu_us,
            "1/s",
            "1 / CPU per update: one core, to itself",
        ],
        table.row("capacity", f"{members} members", 1e6 / cpu_us, "1/s"),
    )
    table.add(
        ["every member had every last update", drained, "s", "after the last ack"],
        table.row("drained", f"{members} members", drained, "s"),
    )
    table.notes.append(
        "updates/s taken is bounded here by the members' one process (it reads every diff of every "
        "member, and the updaters wait for their acks in it) on a 2-core machine shared with the gateway"
    )
    if kills is None:
        table.notes.append("kill -9: not measured (no redis-server on this machine)")
    else:
        bound = PresenceLimits().node_gone_within
        table.add(
            [f"kill -9 of a node: its {KILLED // 10 if quick else KILLED} members gone elsewhere, median",
             statistics.median(kills), "s", f"max {fmt(max(kills))} s of {len(kills)}; bound {fmt(bound)} s"],
            table.row("kill -9 to gone", "median", statistics.median(kills), "s"),
            table.row("kill -9 to gone", "max", max(kills), "s"),
        )  # fmt: skip
    table.notes.append(f"{members:,} members joined in {fmt(result['joined_s'])} s (one at a time)")
    out.finish()
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    return [asyncio.run(_run(out, quick))]
