"""The durable outbox across ``kill -9``: a client process is killed with SIGKILL and started again.

Real processes (``tests/persist/client_proc.py``), a real gateway on SQLite; the oracle is the
gateway's change log, where every change a mutation wrote carries the mutation's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import sys
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest

from rxstore import RootStore
from rxstore.gateway.demo import Post, all_posts, delete_post, save_post
from rxstore.protocol.errors import PersistError
from tests.persist.harness import PostStore, gateway_on
from tests.services import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.persist.client_proc", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def line_of(process: asyncio.subprocess.Process, key: str, timeout: float = 30) -> Any:
    """The first JSON line that has ``key``: its value (the whole line for ``recovered`` and ``pending``)."""
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(f"the client exited (rc={await process.wait()}) before telling {key!r}")
        message = json.loads(raw)
        if key in message:
            return message if key in ("recovered", "pending") else message[key]


def mutation_changes(db: Path) -> list[tuple[int, str, str]]:
    """(seq, mutation id, title) of every change written by a mutation, in log order."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT seq, mutation, record FROM rxstore_changes WHERE mutation IS NOT NULL ORDER BY seq"
        ).fetchall()
    return [(seq, mutation, json.loads(record)["title"]) for seq, mutation, record in rows]


async def kill_and_resume(tmp_path: Path, port: int, count: int, *, online: bool) -> dict[str, Any]:
    state = str(tmp_path / "state.db")
    url = f"http://127.0.0.1:{port}"
    gateway = await gateway_on(tmp_path, port) if online else None
    client = await start("submit", url, state, str(count))
    stored = await line_of(client, "stored")
    client.send_signal(signal.SIGKILL)
    assert await client.wait() == -signal.SIGKILL
    if gateway is None:
        gateway = await gateway_on(tmp_path, port)
    try:
        again = await start("resume", url, state)
        pending = await line_of(again, "pending")
        outcome: dict[str, Any] = await line_of(again, "recovered", timeout=60)
        assert await asyncio.wait_for(again.wait(), 30) == 0
        outcome.update(
            stored=stored,
            pending=pending["pending"],
            flagged=pending["has_pending_writes"],
            table=await all_posts(gateway.log),
        )
        return outcome
    finally:
        await gateway.stop()


@pytest.mark.timeout(120)
async def test_mutations_accepted_offline_survive_kill_9_and_apply_once_in_order(tmp_path: Path) -> None:
    """Offline (no gateway), 12 mutations are submitted and awaited ``stored``; the process is
    killed with SIGKILL. Restarted with the gateway up: the optimistic rows are back before any
    connect, each mutation is sent again and applied exactly once, in submission order, each
    result reaches the app, and the store equals the table."""
    outcome = await kill_and_resume(tmp_path, free_port(), 12, online=False)
    stored = outcome["stored"]
    assert outcome["pending"] == stored  # optimistic rows back from disk, in order
    assert outcome["flagged"]  # and the store says it holds writes not yet confirmed
    assert outcome["recovered"] == stored
    assert outcome["results"] == [{"id": f"m{i % 3}"} for i in range(12)]
    changes = mutation_changes(tmp_path / "app.db")
    assert [mutation for _, mutation, _ in changes] == stored  # once each, in order
    assert [title for _, _, title in changes] == [f"m{i}" for i in range(12)]
    assert outcome["rows"] == {key: post.title for key, post in outcome["table"].items()}
    assert outcome["rows"] == {"m0": "m9", "m1": "m10", "m2": "m11"}


@pytest.mark.timeout(120)
async def test_mutations_in_flight_at_kill_9_are_applied_once_after_the_restart(tmp_path: Path) -> None:
    """Online, 40 mutations are submitted and the process is killed as soon as all are on disk,
    while some are sent and some acknowledged: after the restart every one is applied exactly once
    (a retry of one already applied is answered as a duplicate, not written again), in order."""
    outcome = await kill_and_resume(tmp_path, free_port(), 40, online=True)
    stored = outcome["stored"]
    changes = mutation_changes(tmp_path / "app.db")
    assert [mutation for _, mutation, _ in changes] == stored
    assert set(outcome["recovered"]) <= set(stored)
    assert outcome["results"] == [{"id": f"m{stored.index(m) % 3}"} for m in outcome["recovered"]]
    assert outcome["rows"] == {key: post.title for key, post in outcome["table"].items()}


KILLS = 6


Lines = list[dict[str, Any]]


async def start_chaos(*args: str) -> tuple[asyncio.subprocess.Process, Lines, asyncio.Task[None]]:
    """A ``tests.persist.chaos_proc`` process, its JSON lines gathered as they come."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.persist.chaos_proc", *args,
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[dict[str, Any]] = []

    async def gather() -> None:
        assert process.stdout is not None
        while raw := await process.stdout.readline():
            try:
                lines.append(json.loads(raw))
            except ValueError:  # the line the kill cut short
                break

    return process, lines, asyncio.create_task(gather())


async def write_forever(gateway: Any) -> None:
    """Another writer: posts w0..w9 saved, and now and then deleted, one transaction every few ms."""
    for i in itertools.count():
        if i % 7 == 6:
            await delete_post(gateway.log, f"w{i % 10}")
        else:
            await save_post(gateway.log, Post(id=f"w{i % 10}", title=f"w{i}"))
        await asyncio.sleep(0.003)


def log_seqs(db: Path, after: int, upto: int) -> list[int]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT seq FROM rxstore_changes WHERE seq > ? AND seq <= ? ORDER BY seq", (after, upto)
        ).fetchall()
    return [seq for (seq,) in rows]


def applied_once_each(db: Path, lines: Lines) -> tuple[int | None, int | None]:
    """Check one process's changes: from its start (the disk cursor, or a snapshot) every logged
    change after it exactly once, in seq order, none skipped; return (start, last seq applied)."""
    start: int | None = next(line["from"] for line in lines if "from" in line)
    last, applied = start, list[int]()
    for line in lines:
        if "snapshot" in line:  # a first connect (no cursor) or a reset: the rows at that seq
            assert applied == [] or last is not None, line
            if applied:
                assert applied == log_seqs(db, first_of(start), last or 0)
            start, last, applied = line["snapshot"], line["snapshot"], []
        elif "seq" in line:
            applied.append(line["seq"])
            last = line["seq"]
    if applied:
        assert start is not None, "changes applied with neither a cursor nor a snapshot"
        assert applied == log_seqs(db, start, applied[-1]), (start, applied[-5:])
    return start, last


def first_of(start: int | None) -> int:
    return 0 if start is None else start


@pytest.mark.timeout(240)
async def test_sigkill_at_random_moments_while_a_writer_runs_and_mutations_are_queued(tmp_path: Path) -> None:
    """The client process is killed with SIGKILL ``KILLS`` times, each at a random moment (loading,
    connecting, replaying, live, with mutations queued, sent and in flight) while another writer
    changes the table all along. Each run applies every logged change after its start (the cursor
    on disk, or a snapshot) exactly once, in seq order, with no gap, and never starts past what
    the run before it applied; every mutation that was on disk is applied exactly once, and all
    applied mutations in submission order; after the last restart the store equals the table."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    port = free_port()
    url, state, db = f"http://127.0.0.1:{port}", str(tmp_path / "state.db"), tmp_path / "app.db"
    gateway = await gateway_on(tmp_path, port)
    writer = asyncio.create_task(write_forever(gateway))
    stored: dict[str, int] = {}
    previous_last: int | None = None
    try:
        for run in range(KILLS):
            process, lines, gathered = await start_chaos("run", url, state, str(run * 100_000))
            await wait_for(partial(has, lines, "from"), timeout=30, what="the state file loaded")
            await asyncio.sleep(rng.uniform(0.0, 1.5))  # the random moment of the kill
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
            await gathered
            previous_last = check_run(db, lines, previous_last, seed)
            stored.update({m: n for n, m in (line["stored"] for line in lines if "stored" in line)})
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        process, lines, gathered = await start_chaos("final", url, state)
        await wait_for(partial(has, lines, "settled"), timeout=60, what="the recovered mutations answered")
        head = await gateway.log.head()
        assert process.stdin is not None
        process.stdin.write(f"{head}\n".encode())
        assert await asyncio.wait_for(process.wait(), 60) == 0
        await gathered
        check_run(db, lines, previous_last, seed)
        final = lines[-1]
        assert final["at"] == head
        table = {key: attrs.asdict(post) for key, post in (await all_posts(gateway.log)).items()}
        assert final["rows"] == table, f"seed {seed}"
    finally:
        writer.cancel()
        await gateway.stop()
    applied = mutation_changes(db)
    ids = [mutation for _, mutation, _ in applied]
    numbers = [int(title[1:]) for _, _, title in applied]
    assert len(ids) == len(set(ids)), f"seed {seed}: a mutation applied twice"
    assert numbers == sorted(numbers), f"seed {seed}: mutations applied out of order"
    assert set(stored) <= set(ids), f"seed {seed}: {len(set(stored) - set(ids))} stored mutations lost"
    assert len(stored) > KILLS, f"seed {seed}: too few mutations stored to prove anything"


def has(lines: Lines, key: str) -> bool:
    return any(key in line for line in lines)


def check_run(db: Path, lines: Lines, previous_last: int | None, seed: int) -> int | None:
    """One run's changes applied once each, from a start no later than the last run's last change;
    return the last change it applied (the one before it's, if none)."""
    _start, last = applied_once_each(db, lines)
    loaded = next(line["from"] for line in lines if "from" in line)
    if loaded is not None:
        assert previous_last is not None and loaded <= previous_last, (seed, loaded, previous_last)
    return last if last is not None else previous_last


@pytest.mark.timeout(60)
async def test_a_second_process_opening_the_state_file_gets_a_clear_error(tmp_path: Path) -> None:
    """A client process holds the state file; a root in another process (this one) on the same
    file raises ``PersistError`` ``locked`` naming it; once the first process is killed the file
    opens, with the mutation the first one stored."""
    state = str(tmp_path / "state.db")
    holder = await start("submit", f"http://127.0.0.1:{free_port()}", state, "1")
    stored = await line_of(holder, "stored")
    try:
        with pytest.raises(PersistError, match="open in another process") as refused:
            RootStore("http://127.0.0.1:1", stores=[PostStore()], persist=state)
        assert refused.value.reason == "locked" and refused.value.path == state
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    root = RootStore("http://127.0.0.1:1", stores=[PostStore()], persist=state)
    assert await root.loaded() is False and [m.id for m in root.recovered] == stored
    await root.teardown_realtime()
