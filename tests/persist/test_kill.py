"""The durable outbox across ``kill -9``: a client process is killed with SIGKILL and started again.

Real processes (``tests/persist/client_proc.py``), a real gateway on SQLite; the oracle is the
gateway's change log, where every change a mutation wrote carries the mutation's id.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway.demo import all_posts
from tests.persist.harness import gateway_on
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.persist.client_proc", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def line_of(process: asyncio.subprocess.Process, key: str, timeout: float = 30) -> Any:
    """The first JSON line that has ``key`` (its value for ``stored`` and ``pending``)."""
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(f"the client exited (rc={await process.wait()}) before telling {key!r}")
        message = json.loads(raw)
        if key in message:
            return message if key == "recovered" else message[key]


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
        outcome.update(stored=stored, pending=pending, table=await all_posts(gateway.log))
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
