"""A root with ``persist=``: restarts resume from disk, resets fall back to a snapshot, offline starts.

Against a real gateway over a real SQLite database on 127.0.0.1; each "restart" is a new
``RootStore`` over the same state file (tests/persist/test_kill.py kills real processes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from rxstore import RootStore
from rxstore.gateway.demo import Post, all_posts, delete_post, save_post
from rxstore.persist import Persist
from rxstore.protocol.errors import PersistError
from tests.persist.harness import AUTH, PostStore, Received, gateway_on, sample, write_posts
from tests.services import free_port
from tests.waiting import wait_for


def root_on(port: int, state: Path | Persist, posts: PostStore) -> RootStore:
    return RootStore(f"http://127.0.0.1:{port}", stores=[posts], token=AUTH.issue("ann"), persist=state)


async def first_run(tmp_path: Path, port: int, state: Path, rows: int = 50) -> None:
    """A root follows ``rows`` posts to live, writes them to ``state``, and stops."""
    posts = PostStore()
    root = root_on(port, state, posts)
    async with root:
        await root.live(timeout=10)
        assert len(posts.value) == rows
        await root.persisted()
    assert root.persist is not None and root.persist.metrics.writes >= 1


async def test_a_restart_resumes_from_disk_and_gets_only_the_changes_missed_meanwhile(tmp_path: Path) -> None:
    """50 posts followed and persisted; while the client is down 3 updates, 1 insert and 1 delete are
    written. The restarted root shows the 50 rows from disk before it connects (``from_disk``), then
    gets exactly the 5 missed changes and no snapshot (the gateway sent none), and equals the table."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(50))
        state = tmp_path / "state.db"
        await first_run(tmp_path, port, state)
        for i in range(3):
            await save_post(gateway.log, Post(id=f"p{i}", title="edited"))
        await save_post(gateway.log, Post(id="p50", title="new"))
        await delete_post(gateway.log, "p49")
        snapshots_before = sample(gateway, "rxstore_snapshots_total")

        posts = PostStore()
        root = root_on(port, state, posts)
        received = Received(root)
        assert await root.loaded()  # before any connect
        assert len(posts.value) == 50 and posts.value["p0"].title == "t0"
        assert posts.sync.from_disk and root.cursor == 50
        async with root:
            await root.live(timeout=10)
            await wait_for(lambda: len(posts.value) == 50 and "p50" in posts.value, what="the missed changes")
            assert (received.snapshots, received.changes) == (0, 5)
            assert sample(gateway, "rxstore_snapshots_total") == snapshots_before
            assert posts.value.to_dict() == await all_posts(gateway.log)
            assert not posts.sync.from_disk  # live: no longer only from disk
    finally:
        await gateway.stop()


async def test_an_epoch_change_while_down_falls_back_to_a_snapshot_and_replaces_the_disk_copy(
    tmp_path: Path,
) -> None:
    """The log gets a new epoch (a restored backup) while the client is down: the restarted root
    shows its disk copy, gets a reset and one snapshot, equals the table, and the file then holds
    the new epoch and rows (a third start resumes from it with no snapshot)."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(20))
        state = tmp_path / "state.db"
        await first_run(tmp_path, port, state, rows=20)
        epoch = await gateway.log.mark_restore()
        await delete_post(gateway.log, "p3")

        posts = PostStore()
        root = root_on(port, state, posts)
        received = Received(root)
        assert await root.loaded() and len(posts.value) == 20
        async with root:
            await root.live(timeout=10)
            assert received.snapshots == 1 and root.epoch == epoch
            assert posts.value.to_dict() == await all_posts(gateway.log)
            await root.persisted()

        third, posts3 = None, PostStore()
        third = root_on(port, state, posts3)
        received3 = Received(third)
        assert await third.loaded() and third.epoch == epoch and len(posts3.value) == 19
        async with third:
            await third.live(timeout=10)
            assert received3.snapshots == 0
    finally:
        await gateway.stop()


async def test_an_offline_start_runs_on_the_disk_copy_while_the_connection_is_retried(tmp_path: Path) -> None:
    """With the gateway down, ``setup_realtime(wait=False)`` + ``loaded()`` show the rows from disk
    (stale, from_disk); once the gateway is back the root connects by itself and is live and equal."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    await write_posts(gateway, range(10))
    state = tmp_path / "state.db"
    await first_run(tmp_path, port, state, rows=10)
    await save_post(gateway.log, Post(id="p10", title="while down"))
    await gateway.stop()

    posts = PostStore()
    root = root_on(port, state, posts)
    root.backoff = root.backoff.__class__(initial=0.05, maximum=0.2)
    try:
        await root.setup_realtime(wait=False)
        assert await root.loaded()
        assert len(posts.value) == 10 and posts.sync.from_disk and not root.connection_state.connected
        gateway = await gateway_on(tmp_path, port)
        await root.live(timeout=15)
        assert posts.value.to_dict() == await all_posts(gateway.log) and "p10" in posts.value
    finally:
        await root.teardown_realtime()
        await gateway.stop()


async def test_a_burst_of_changes_is_written_in_few_transactions(tmp_path: Path) -> None:
    """300 changes (one transaction each on the gateway) reach a persisted root: its state file gets
    them all (a restart shows them) in far fewer transactions than changes (``interval=0.2``)."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        state = tmp_path / "state.db"
        posts = PostStore()
        root = root_on(port, Persist(state, interval=0.2), posts)
        async with root:
            await root.live(timeout=10)
            await write_posts(gateway, range(300))
            await wait_for(lambda: len(posts.value) == 300, what="300 rows")
            await root.persisted()
            metrics = root.persist.metrics  # type: ignore[union-attr]
            assert metrics.changes == 301  # the 300 changes and the first snapshot
            assert metrics.writes <= 30, metrics  # without coalescing: one per frame, ~300
        again = PostStore()
        assert await root_on(port, state, again).loaded() and len(again.value) == 300
    finally:
        await gateway.stop()


async def test_a_corrupt_file_is_set_aside_with_one_warning_and_a_fresh_snapshot_follows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A state file of garbage: one WARNING naming it, the file moved to ``*.corrupt-*``, and the
    root takes a fresh snapshot (nothing from disk, no crash)."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(5))
        state = tmp_path / "state.db"
        state.write_bytes(b"this is not a database" * 100)
        posts = PostStore()
        with caplog.at_level(logging.WARNING, logger="rxstore.persist"):
            root = root_on(port, state, posts)
            async with root:
                assert not await root.loaded()
                await root.live(timeout=10)
                assert len(posts.value) == 5
        warnings = [r.getMessage() for r in caplog.records if r.name == "rxstore.persist"]
        assert len(warnings) == 1 and "not a readable state file" in warnings[0], warnings
        assert list(tmp_path.glob("state.db.corrupt-*"))
        assert sqlite3.connect(state).execute("SELECT count(*) FROM rxstore_rows").fetchone() == (5,)
    finally:
        await gateway.stop()


async def test_a_foreign_database_is_left_untouched_and_the_root_runs_without_persistence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``persist=`` naming the app's own database (a foreign SQLite file): one WARNING, the file is
    not written, the root runs in memory."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        foreign = tmp_path / "other.db"
        with sqlite3.connect(foreign) as db:
            db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        posts = PostStore()
        with caplog.at_level(logging.WARNING, logger="rxstore.persist"):
            root = root_on(port, foreign, posts)
        assert root.persist is not None and root.persist.failed is not None
        assert root.persist.failed.reason == "foreign"
        async with root:
            await root.live(timeout=10)
        tables = {r[0] for r in sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master")}
        assert tables == {"invoices"}
        assert sum(r.name == "rxstore.persist" for r in caplog.records) == 1
    finally:
        await gateway.stop()


async def test_a_second_root_on_the_same_file_gets_a_clear_error(tmp_path: Path) -> None:
    """Two roots (as two processes would) on one state file: the second raises ``PersistError``
    ``locked`` naming the file; once the first is torn down the file opens again."""
    state = tmp_path / "state.db"
    port = free_port()
    first = root_on(port, state, PostStore())
    with pytest.raises(PersistError, match="open in another process") as raised:
        root_on(port, state, PostStore())
    assert raised.value.reason == "locked"
    await first.teardown_realtime()
    assert root_on(port, state, PostStore()).persist is not None


async def test_a_changed_subset_on_restart_falls_back_to_a_snapshot(tmp_path: Path) -> None:
    """The disk copy followed the whole table; the restarted app follows ``where title = 't1'``: the
    disk rows are not shown (a warning), and the root takes the subset's snapshot."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(5))
        state = tmp_path / "state.db"
        await first_run(tmp_path, port, state, rows=5)
        posts = PostStore(where={"title": "t1"})
        root = root_on(port, state, posts)
        assert not await root.loaded() and len(posts.value) == 0
        async with root:
            await root.live(timeout=10)
            assert list(posts.value) == ["p1"]
    finally:
        await gateway.stop()


async def test_persisted_waits_for_the_write_and_teardown_writes_what_is_left(tmp_path: Path) -> None:
    """``await root.persisted()`` returns once the rows are in the file; a change arriving just before
    teardown is written by the teardown (the next start shows it)."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        state = tmp_path / "state.db"
        posts = PostStore()
        root = root_on(port, Persist(state, interval=60.0), posts)  # only persisted()/teardown write
        async with root:
            await root.live(timeout=10)
            await write_posts(gateway, range(3))
            await wait_for(lambda: len(posts.value) == 3, what="3 rows")
            await root.persisted()
            await write_posts(gateway, range(3, 4))
            await wait_for(lambda: len(posts.value) == 4, what="4 rows")
        again = PostStore()
        assert await root_on(port, state, again).loaded() and len(again.value) == 4
    finally:
        await gateway.stop()
        await asyncio.sleep(0)
