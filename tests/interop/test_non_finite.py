"""Non-finite numbers from an outside writer reach the npm ``socket.io-client`` as strict JSON.

SQLite stores ``1e999`` as an infinite REAL; JSON has no infinity. The gateway
sends such a value as the string ``"Infinity"`` (``"-Infinity"``, ``"NaN"``),
as PostgreSQL's ``to_jsonb`` does, in snapshots, replays and live frames alike
(docs/protocol.md, "Numbers"). Before, the frames carried a bare ``Infinity``:
socket.io-client disconnected with "parse error" and reconnected forever.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, start_gateway
from tests.interop.test_node_client import ROOT, node  # noqa: F401  (the fixture)
from tests.waiting import wait_for

pytestmark = pytest.mark.node

SCRIPT = Path(__file__).with_name("non_finite.mjs")


def outside_insert(db: Path, post_id: str, updated_at: str) -> None:
    """Another process's write: plain sqlite3, a literal such as ``1e999`` in the SQL."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(
                "INSERT INTO posts (id, title, author, updated_at) "
                f"VALUES ('{post_id}', 'odd', 'bob', {updated_at})"
            )
    finally:
        conn.close()


async def run_node(binary: str, url: str, cursor: int | None, want: int) -> dict[str, Any]:
    """Run non_finite.mjs (bounded) and return its report; the gateway writes while it runs."""
    proc = await asyncio.create_subprocess_exec(
        binary,
        str(SCRIPT),
        url,
        AUTH.issue("alice"),
        "null" if cursor is None else str(cursor),
        str(want),
        "20",
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("node did not exit within 30 s") from None
    lines = stdout.decode().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {stdout!r}; stderr: {stderr.decode()}"
    report: dict[str, Any] = json.loads(lines[0])
    return report


async def wait_until_live(node_task: asyncio.Task[dict[str, Any]], gateway: RealtimeGateway) -> None:
    """Wait until the gateway has a live client; fail at once if the node process ended first."""

    def live() -> bool:
        assert not node_task.done(), node_task.result()
        return any(c.live for c in gateway._clients.values())  # private: no public per-client state

    await wait_for(live, 15, "the node client going live", interval=0.02)


async def test_npm_client_parses_snapshot_replay_and_live_frames_with_outside_infinities(
    node: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """1e999 / -1e999 written by another process arrive as "Infinity" / "-Infinity"; no parse error."""
    db = tmp_path / "app.db"
    gateway = await start_gateway(f"sqlite:///{db}")
    try:
        await asyncio.to_thread(outside_insert, db, "up", "1e999")
        await asyncio.to_thread(outside_insert, db, "down", "-1e999")

        # Snapshot, then a live change.
        task = asyncio.create_task(run_node(node, gateway.url, None, 1))
        await wait_until_live(task, gateway)
        await asyncio.to_thread(outside_insert, db, "live", "-1e999")
        report = await task
        assert report["disconnects"] == ["io client disconnect"] and report["errors"] == [], report
        snapshot = {row["id"]: row["updated_at"] for row in report["snapshot"]}
        assert snapshot == {"up": "Infinity", "down": "-Infinity"}
        assert [(r["id"], r["updated_at"]) for r in report["changes"]] == [("live", "-Infinity")]

        # A replay from cursor 0: every logged change, in batch frames.
        report = await run_node(node, gateway.url, 0, 3)
        assert report["disconnects"] == ["io client disconnect"] and report["errors"] == [], report
        assert report["snapshot"] is None
        assert [(r["id"], r["updated_at"]) for r in report["changes"]] == [
            ("up", "Infinity"),
            ("down", "-Infinity"),
            ("live", "-Infinity"),
        ]
    finally:
        await gateway.stop()
