"""Benchmark: a client that persists its state (``RootStore(persist=...)``), against one that does not.

A gateway in this process serves a SQLite ``posts`` table of ``ROWS`` rows; each client is a
process of its own (``benchmarks._persist_client``) with one ``TableStore`` of attrs ``Post``
rows, connected through a proxy that counts the bytes it receives.

* restart: a client follows the table (its state file written), stops; ``MISSED`` changes are
  committed while it is down; it starts again. Time to live: from the ``RootStore`` being made
  (after the imports) to its table holding the last change; bytes: what the gateway sent it.
  Against a client without a state file (a fresh snapshot). Alternated, median of ``repeats``.
* first state from disk: from the ``RootStore`` being made to ``await root.loaded()`` returning
  with the ``ROWS`` rows in the store (nothing from the gateway yet).
* steady state: ``STEADY`` UPDATEs in one transaction (each row once: every change is a row to
  write) reach a live client; its CPU (every thread: the state file's writer too, until the last
  change is on disk) per change, and changes/s from the commit to the last change in the table.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks._common import Output, Table, fmt
from benchmarks._gateway import AUTH, Process, Server
from benchmarks._proxy import CountingProxy

ROWS = 100_000
MISSED = 1_000
STEADY = 100_000

GOALS = {
    "time": (">= 10x less", 10.0, True),
    "bytes": (">= 50x fewer", 50.0, True),
    "cpu": ("<= 1.3x", 1.3, False),
    "rate": (">= 0.8x", 0.8, True),
}
"""Each ratio's goal (issue 26): as printed, its value, and whether the ratio must be at least it."""


class PersistClient(Process):
    """A ``benchmarks._persist_client`` process: one root, with a state file or none."""

    module = "benchmarks._persist_client"

    def __init__(self, url: str, *, state: Path | None, head: int) -> None:
        token = AUTH.issue("bench", ttl=None)
        super().__init__(url=url, token=token, state=None if state is None else str(state), head=head)


async def _start(url: str, state: Path | None, head: int, proxy: CountingProxy) -> dict[str, Any]:
    """Start a client, wait until it is live at ``head``, stop it; its figures and the bytes it got."""
    proxy.take()
    client = PersistClient(url, state=state, head=head)
    await client.start(timeout=300)
    received = proxy.take()
    await client.stop()
    ready = client.ready
    return {
        "live": ready["t_live"] - ready["t_start"],
        "disk": ready["t_disk"] - ready["t_start"],
        "rows_from_disk": ready["rows_from_disk"],
        "bytes": received,
    }


async def _restarts(server: Server, proxy: CountingProxy, state: Path, repeats: int, out: Output) -> Any:
    out.step("first run: the state file written")
    first = await _start(proxy.url, state, await server.head(), proxy)
    assert first["rows_from_disk"] == 0, first
    persisted, fresh = [], []
    for i in range(repeats):
        head = await server.write_changes(MISSED, 100)  # missed while the client is down
        out.step(f"restart {i + 1}/{repeats}: from the state file")
        persisted.append(await _start(proxy.url, state, head, proxy))
        assert persisted[-1]["rows_from_disk"] == ROWS, persisted[-1]
        out.step(f"restart {i + 1}/{repeats}: a fresh snapshot")
        fresh.append(await _start(proxy.url, None, head, proxy))
        out.advance()
    return persisted, fresh


async def _steady(server: Server, state: Path | None, changes: int, first: int) -> dict[str, float]:
    """``changes`` UPDATEs in one transaction reaching a live client (with ``state`` or not)."""
    client = PersistClient(server.url, state=state, head=await server.head())
    await client.start(timeout=300)
    try:
        await asyncio.sleep(0.2)  # let the connection settle
        await client.send(cmd="wait", seq=await server.head() + changes)
        started = time.time()
        await server.update(first, changes)
        reply = await client._read(300)
    finally:
        await client.stop()
    return {"rate": changes / (reply["t_done"] - started), "cpu_us": reply["cpu"] / changes * 1e6}


async def _steadies(
    server: Server, directory: Path, changes: int, repeats: int, runs: dict[str, list[Any]], out: Output
) -> None:
    """Alternate clients without and with a state file, each given ``changes`` UPDATEs."""
    first = 1
    for i in range(repeats):
        for variant in ("without", "with"):
            out.step(f"steady state {i + 1}/{repeats}: {variant} persist")
            path = directory / f"steady-{i}.db" if variant == "with" else None
            runs[variant].append(await _steady(server, path, changes, first))
            first += changes
            out.advance()


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def _verdict(ratio: float, goal: float, *, at_least: bool) -> str:
    met = ratio >= goal if at_least else ratio <= goal
    return "met" if met else f"MISSED ({fmt(ratio)}x)"


async def _run(out: Output, quick: bool) -> Table:
    repeats = 1 if quick else 3
    steady = STEADY // 5 if quick else STEADY
    table = Table(
        "persist",
        f"Persisted state: restart of a client following {ROWS:,} rows with {MISSED:,} changes missed; "
        "steady-state cost",
        ["measure", "with persist", "without (fresh snapshot)", "ratio", "goal", "verdict"],
    )
    out.start("persist", 2 * repeats + 2 * repeats)
    restarts: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory(prefix="rxstore-bench-state-") as directory:
        for old in ("key", "full"):
            async with Server(rows=ROWS, old=old) as server:
                gateway = urlsplit(server.url)
                proxy = await CountingProxy(gateway.hostname or "127.0.0.1", gateway.port or 80).start()
                try:
                    state = Path(directory) / f"state-{old}.db"
                    restarts[old] = await _restarts(server, proxy, state, repeats, out)
                finally:
                    await proxy.stop()
                if old == "full":  # the topic's default: the steady state on it
                    await _steadies(server, Path(directory), steady, repeats, runs, out)
    persisted, fresh = restarts["full"]
    live_p, live_f = _median(persisted, "live"), _median(fresh, "live")
    bytes_p, bytes_f = _median(persisted, "bytes"), _median(fresh, "bytes")
    disk = _median(persisted, "disk")
    lean, lean_fresh = restarts["key"]
    bytes_k, bytes_kf = _median(lean, "bytes"), _median(lean_fresh, "bytes")
    cpu_w, cpu_wo = _median(runs["with"], "cpu_us"), _median(runs["without"], "cpu_us")
    rate_w, rate_wo = _median(runs["with"], "rate"), _median(runs["without"], "rate")
    lines = [
        ("restart: seconds to live", live_p, live_f, live_f / live_p, "time", "s"),
        ("restart: bytes received", bytes_p, bytes_f, bytes_f / bytes_p, "bytes", "B"),
        ("restart: bytes received, topic old='key'", bytes_k, bytes_kf, bytes_kf / bytes_k, "bytes", "B"),
        ("steady: client CPU µs/change", cpu_w, cpu_wo, cpu_w / cpu_wo, "cpu", "us"),
        ("steady: changes/s", rate_w, rate_wo, rate_w / rate_wo, "rate", "1/s"),
    ]
    for name, with_, without, ratio, goal_name, unit in lines:
        goal_text, goal, at_least = GOALS[goal_name]
        table.add(
            [name, with_, without, f"{fmt(ratio)}x", goal_text, _verdict(ratio, goal, at_least=at_least)],
            table.row(name, "with persist", with_, unit),
            table.row(name, "without persist", without, unit),
        )
    table.add(
        [f"first state from disk, {ROWS:,} rows: seconds", disk, "-", "-", "-", "-"],
        table.row("first state from disk", "with persist", disk, "s"),
    )
    table.notes.append(
        f"restart: median of {repeats}, persisted and fresh alternated, each a new process; a change "
        "carries its old row in full (the topic's default), or its key only (Topic(old='key')); "
        f"steady: {steady:,} UPDATEs in one transaction over the {ROWS:,} rows (each row written once)"
    )
    table.notes.append(
        f"the persisted restart's {fmt(live_p)} s to live: {fmt(disk)} s filling the store from disk "
        f"(reading the file and folding {ROWS:,} rows), {fmt(live_p - disk)} s connecting and replaying"
    )
    out.finish()
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    return [asyncio.run(_run(out, quick))]
