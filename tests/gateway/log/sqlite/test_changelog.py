"""SQLiteChangeLog against real database files in tmp_path: what only it does.

What every change log does is in tests/gateway/log/test_contract.py.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway.log.contract import AppliedMutation
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.protocol.errors import NotConnected
from rxstore.protocol.events import Change, Op

pytestmark = pytest.mark.timeout(30)

POSTS = "CREATE TABLE posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, likes INTEGER, score REAL)"


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "app.db"


@pytest.fixture
async def log(db_path: Path) -> AsyncIterator[SQLiteChangeLog]:
    log = SQLiteChangeLog(url_of(db_path), poll_interval=0.02)
    await log.open()
    await log.execute(POSTS)
    await log.watch("posts")
    yield log
    await log.close()


async def read_all(log: SQLiteChangeLog, after: int = 0) -> list[Change]:
    out: list[Change] = []
    while batch := await log.read(after, limit=100):
        out += batch
        after = batch[-1].seq
    return out


def replay(
    changes: list[Change], state: dict[Any, Mapping[str, Any]] | None = None
) -> dict[Any, Mapping[str, Any]]:
    state = dict(state or {})
    for change in changes:
        if change.op is Op.DELETE:
            del state[change.key("id")]
        else:
            assert change.record is not None
            state[change.key("id")] = change.record
    return state


async def test_open_creates_file_and_parent_dirs_and_open_is_idempotent(db_path: Path) -> None:
    log = open_change_log(url_of(db_path))
    assert isinstance(log, SQLiteChangeLog)
    assert not log.healthy
    await log.open()
    await log.open()
    try:
        assert db_path.exists()
        assert log.healthy
        assert await log.head() == 0
        assert await log.horizon() == 0
        assert await log.read(0) == []
        mode = sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        await log.close()
        await log.close()


def test_url_without_a_file_path_is_rejected() -> None:
    with pytest.raises(ValueError, match="file path"):
        SQLiteChangeLog("sqlite:///:memory:")
    with pytest.raises(ValueError, match="not a SQLite URL"):
        SQLiteChangeLog("postgresql://x/y")


async def test_blobs_are_captured_as_hex_and_snapshot_agrees(log: SQLiteChangeLog) -> None:
    await log.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, data BLOB, meta)")
    await log.watch("files")
    await log.execute("INSERT INTO files VALUES (?, ?, ?)", 1, b"\x00\xff", "x")
    [change] = await log.read(await log.head() - 1)
    assert change.record == {"id": 1, "data": "00FF", "meta": "x"}
    snap = await log.snapshot(["files"])
    assert snap.tables["files"] == [change.record]


async def test_huge_and_infinite_reals_are_captured_exactly(log: SQLiteChangeLog) -> None:
    """The triggers' printf path for REALs beyond 1e±200 and SQLite's 9e999 for infinities."""
    values = [1e300, -1.5e250, 2.5e-300, math.inf, -math.inf]
    for i, value in enumerate(values):
        await log.execute("INSERT INTO posts (id, title, score) VALUES (?, 't', ?)", f"p{i}", value)
    changes = await log.read(0)
    # Non-finite reals travel as the strings PostgreSQL's to_jsonb writes (docs/protocol.md, Numbers).
    expected = [v if math.isfinite(v) else ("Infinity" if v > 0 else "-Infinity") for v in values]
    assert [c.record["score"] for c in changes if c.record] == expected
    snap = await log.snapshot(["posts"])
    assert [r["score"] for r in snap.tables["posts"]] == expected


async def test_watch_is_idempotent_and_follows_added_columns(log: SQLiteChangeLog) -> None:
    await log.watch("posts")
    await log.execute("INSERT INTO posts (id, title) VALUES ('p1', 'a')")
    await log.execute("ALTER TABLE posts ADD COLUMN body TEXT DEFAULT ''")
    await log.watch("posts")
    await log.execute("INSERT INTO posts (id, title, body) VALUES ('p2', 'b', 'text')")
    changes = await log.read(0)
    assert len(changes) == 2  # one change per write despite watching twice
    assert changes[1].record is not None and changes[1].record["body"] == "text"


async def test_triggers_follow_a_column_added_by_another_connection(
    log: SQLiteChangeLog, db_path: Path
) -> None:
    """A schema change by someone else is noticed by the poll, without calling watch()."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("ALTER TABLE posts ADD COLUMN tags TEXT")
    other.close()
    await log.read(0)
    await log.wait(2)  # the poll notices the change and rebuilds the triggers
    await log.execute("INSERT INTO posts (id, title, tags) VALUES ('p1', 'a', 'x,y')")
    [change] = await log.read(0)
    assert change.record is not None and change.record["tags"] == "x,y"


async def test_a_write_between_read_and_wait_is_not_lost(log: SQLiteChangeLog, db_path: Path) -> None:
    """A change noticed after read() but before wait() makes wait() return at once.

    A witness task, waiting since before the write, returns when the poll has
    noticed it; only then does the reader wait, so its wake-up has come and gone.
    """
    assert await log.read(0) == []
    witness = asyncio.create_task(log.wait(10))  # never read: woken by the next notice only
    await asyncio.sleep(0)  # let it start waiting
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("INSERT INTO posts (id, title) VALUES ('p1', 'a')")
    other.close()
    await asyncio.wait_for(witness, 5)  # the poll (20 ms) noticed the write: the race is set up
    started = time.monotonic()
    await log.wait(10)
    assert time.monotonic() - started < 2  # not the 10 s timeout: no later wake-up comes
    assert len(await log.read(0)) == 1


WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
conn.execute("INSERT INTO posts (id, title, likes) VALUES ('ext', 'from another process', 7)")
conn.close()
"""


async def test_a_write_by_another_process_wakes_wait_and_is_read(log: SQLiteChangeLog, db_path: Path) -> None:
    assert await log.read(0) == []
    waiter = asyncio.create_task(log.wait(10))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(db_path))
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    exited = time.monotonic()
    await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - exited < 2  # poll_interval is 20 ms; the wait was 10 s
    [change] = await log.read(0)
    assert change.op is Op.INSERT
    assert change.record == {"id": "ext", "title": "from another process", "likes": 7, "score": None}


async def test_snapshot_seq_and_rows_agree_under_concurrent_writes(
    log: SQLiteChangeLog, db_path: Path
) -> None:
    """Replaying the log up to snapshot.seq gives exactly the snapshot's rows."""
    stop = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(db_path, timeout=5, isolation_level=None)
        i = 0
        while not stop.is_set():
            i += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO posts (id, title, likes) VALUES (?, 't', 0)", (f"p{i}",))
            conn.execute("UPDATE posts SET likes = likes + 1 WHERE id = ?", (f"p{i // 2}",))
            if i % 3 == 0:
                conn.execute("DELETE FROM posts WHERE id = ?", (f"p{i - 2}",))
            conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        snaps = []
        for _ in range(20):
            snaps.append(await log.snapshot(["posts", "posts"]))
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    changes = await read_all(log)
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert len({s.seq for s in snaps}) > 5, "the writer should have advanced between snapshots"
    for snap in snaps:
        assert snap.skip == frozenset()
        assert list(snap.tables) == ["posts"]
        rows = {row["id"]: row for row in snap.tables["posts"]}
        assert replay([c for c in changes if c.seq <= snap.seq]) == rows
    final = await log.fetch("SELECT * FROM posts")
    assert replay(changes) == {row["id"]: row for row in final}


async def test_reopening_the_file_continues_seqs_even_after_trimming_everything(
    db_path: Path,
) -> None:
    log = SQLiteChangeLog(url_of(db_path))
    await log.open()
    await log.execute(POSTS)
    await log.watch("posts")
    await log.execute("INSERT INTO posts (id, title) VALUES ('p1', 'a')")
    await log.execute("INSERT INTO posts (id, title) VALUES ('p2', 'b')")
    await log.trim(max_rows=0)
    await log.close()

    log = SQLiteChangeLog(url_of(db_path))
    await log.open()
    try:
        assert await log.head() == 2
        assert await log.horizon() == 2
        await log.execute("UPDATE posts SET title = 'c' WHERE id = 'p1'")  # triggers persisted
        assert [c.seq for c in await log.read(0)] == [3]
    finally:
        await log.close()


async def test_fetch_returns_dicts_and_a_write_through_fetch_wakes_tailers(
    log: SQLiteChangeLog,
) -> None:
    await log.execute("INSERT INTO posts (id, title) VALUES ('p1', 'a')")
    assert await log.fetch("SELECT id, title FROM posts WHERE id = ?", "p1") == [{"id": "p1", "title": "a"}]
    await log.read(0)
    waiter = asyncio.create_task(log.wait(10))
    await asyncio.sleep(0)
    rows = await log.fetch("INSERT INTO posts (id, title) VALUES ('p2', 'b') RETURNING id")
    assert rows == [{"id": "p2"}]
    await asyncio.wait_for(waiter, 1)


async def test_calls_run_off_the_event_loop(log: SQLiteChangeLog, db_path: Path) -> None:
    """A write blocked on another connection's lock does not block the loop."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(log.execute("INSERT INTO posts (id, title) VALUES ('p1', 'a')"))
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 10 and not write.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(write, 5)


async def test_close_leaves_no_thread_or_task_and_wakes_waiters(db_path: Path) -> None:
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    log = SQLiteChangeLog(url_of(db_path))
    await log.open()
    await log.execute(POSTS)
    assert any(t.name.startswith("rxstore-sqlite") for t in threading.enumerate())
    await log.read(0)
    waiter = asyncio.create_task(log.wait(10))
    await asyncio.sleep(0)
    await log.close()
    await asyncio.wait_for(waiter, 1)
    assert not log.healthy
    assert set(threading.enumerate()) <= threads_before
    assert asyncio.all_tasks() <= tasks_before | {waiter}
    with pytest.raises(NotConnected):
        await log.head()


async def test_a_log_file_from_before_mutations_gets_the_column_on_open(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TABLE rxstore_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
        "op TEXT NOT NULL, record TEXT, old TEXT, ts REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO rxstore_changes (topic, op, record, old, ts) VALUES ('t', 'INSERT', '{}', NULL, 1)"
    )
    conn.commit()
    conn.close()
    log = SQLiteChangeLog(url_of(db_path))
    await log.open()
    try:
        [change] = await log.read(0)
        assert change.mutation is None and change.record == {}
    finally:
        await log.close()


async def test_a_mutations_table_from_before_results_were_kept_gets_the_columns_on_open(
    db_path: Path,
) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TABLE rxstore_mutations (user_id TEXT NOT NULL, mutation TEXT NOT NULL, "
        "applied_at REAL NOT NULL, PRIMARY KEY (user_id, mutation))"
    )
    conn.execute("INSERT INTO rxstore_mutations VALUES ('alice', 'old', 1.0)")
    conn.commit()
    conn.close()
    log = SQLiteChangeLog(url_of(db_path))
    await log.open()
    try:
        assert await log.applied_mutation("old", "alice") == AppliedMutation("", None)
        assert await log.apply_mutation("old", "alice", []) is False
        assert await log.apply_mutation("new", "alice", [], fingerprint="f", result=1) is True
        assert await log.applied_mutation("new", "alice") == AppliedMutation("f", 1)
    finally:
        await log.close()
