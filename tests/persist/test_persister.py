"""A root with ``persist=``: restarts resume from disk, resets fall back to a snapshot, offline starts.

Against a real gateway over a real SQLite database on 127.0.0.1; each "restart" is a new
``RootStore`` over the same state file (tests/persist/test_kill.py kills real processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from rxstore import RootStore, TableStore
from rxstore.gateway.demo import Post, all_posts, delete_post, save_post
from rxstore.persist import Persist
from rxstore.persist.file import StateFile
from rxstore.persist.persister import RETRY_FIRST
from rxstore.protocol.errors import PersistError
from tests.disks import fill, small_filesystem
from tests.persist.harness import AUTH, PostStore, Received, gateway_on, sample, write_posts
from tests.services import free_port
from tests.waiting import wait_for


def root_on(port: int, state: Path | Persist, posts: PostStore) -> RootStore:
    return RootStore(f"http://127.0.0.1:{port}", stores=[posts], token=AUTH.issue("ann"), persist=state)


def copy(source: Path, target: Path) -> None:
    """Copy a SQLite database with the backup API, as a backup tool would."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


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


async def test_a_restore_nobody_marked_is_told_by_the_persisted_cursor_ts_and_falls_back_to_a_snapshot(
    tmp_path: Path,
) -> None:
    """The database file is restored from a backup taken at seq 10 while the client is down (no
    ``mark-restore``: the epoch is the same) and 8 other posts are written (seqs 11-18). The
    restarted root sends the ``ts`` of its cursor's change from its state file: it gets a reset
    (``cursor_unknown``) and a snapshot, and equals the table, not its 15 rows plus seqs 16-18."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    db, backup = tmp_path / "app.db", tmp_path / "backup.db"
    try:
        await write_posts(gateway, range(10))
        copy(db, backup)
        await write_posts(gateway, range(10, 15))
        state = tmp_path / "state.db"
        await first_run(tmp_path, port, state, rows=15)
    finally:
        await gateway.stop()
    copy(backup, db)  # the restore
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(100, 108))
        posts = PostStore()
        root = root_on(port, state, posts)
        received = Received(root)
        resets: list[Any] = []
        root.events.subscribe(
            lambda e: resets.append(e.data["reason"]) if e.name == "rxstore:reset" else None
        )
        assert await root.loaded() and len(posts.value) == 15
        assert root.cursor == 15 and root.cursor_ts is not None
        async with root:
            await root.live(timeout=10)
            assert resets == ["cursor_unknown"] and received.snapshots == 1
            assert posts.value.to_dict() == await all_posts(gateway.log)
            assert len(posts.value) == 18
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


@attrs.frozen
class PostWithScore:
    """The app's next version of the record type: a new field, with a default (old rows fit)."""

    id: str
    title: str
    body: str = ""
    author: str = ""
    private: bool = False
    likes: int = 0
    updated_at: float = 0.0
    score: int = 0


@attrs.frozen
class PostNeedingRank:
    """A record type old rows do not fit: a field without a default that they lack."""

    id: str
    title: str
    rank: int


async def restart_with(record_type: type[Any], tmp_path: Path) -> tuple[RootStore, TableStore[Any], Any]:
    """A first run with ``Post`` rows, a change while down, then a root whose store has ``record_type``."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    await write_posts(gateway, range(5))
    state = tmp_path / "state.db"
    await first_run(tmp_path, port, state, rows=5)
    await save_post(gateway.log, Post(id="p9", title="while down"))

    class Changed(TableStore[Any]):
        table = "posts"

    Changed.record_type = record_type
    store = Changed()
    root = RootStore(f"http://127.0.0.1:{port}", stores=[store], token=AUTH.issue("ann"), persist=state)
    return root, store, gateway


async def test_rows_that_still_fit_a_changed_record_type_are_shown_from_disk(tmp_path: Path) -> None:
    """The record type gained a field with a default: the rows on disk are revalidated, fit, and
    are shown from disk; the root resumes (the missed change, no snapshot)."""
    root, store, gateway = await restart_with(PostWithScore, tmp_path)
    try:
        received = Received(root)
        assert await root.loaded() and len(store.value) == 5
        assert store.value["p1"] == PostWithScore(id="p1", title="t1")
        async with root:
            await root.live(timeout=10)
            await wait_for(lambda: "p9" in store.value, what="the missed change")
            assert received.snapshots == 0
    finally:
        await gateway.stop()


async def test_rows_that_no_longer_fit_a_changed_record_type_fall_back_to_a_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The record type gained a field the rows on disk lack: one warning naming the store's
    subscription and the type, nothing shown from disk, and a fresh snapshot (whose rows do not
    fit either: reported, never a crash, never a row of the old shape)."""
    root, store, gateway = await restart_with(PostNeedingRank, tmp_path)
    try:
        errors: list[Exception] = []
        root.errors.subscribe(errors.append)
        received = Received(root)
        with caplog.at_level(logging.WARNING, logger="rxstore.persist"):
            assert not await root.loaded()
        warnings = [r.getMessage() for r in caplog.records if r.name == "rxstore.persist"]
        assert len(warnings) == 1 and "does not fit" in warnings[0] and "PostNeedingRank" in warnings[0]
        assert len(store.value) == 0 and not store.sync.from_disk
        assert any(isinstance(e, PersistError) and e.reason == "changed" for e in errors)
        async with root:
            await wait_for(lambda: received.snapshots == 1, what="a fresh snapshot")
    finally:
        await gateway.stop()


async def test_the_size_bound_stops_writing_with_one_warning_and_the_file_keeps_its_last_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``max_bytes`` below what the rows take: the write that passes it is told once (a WARNING and
    ``too_big`` on ``errors``), nothing more is written, ``persisted()`` raises it; the root goes on
    in memory, and the file keeps a consistent state (a restart resumes from it)."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(200), title="a rather long title to take some room " * 3)
        state = tmp_path / "state.db"
        posts = PostStore()
        root = root_on(port, Persist(state, max_bytes=32 << 10, batch_rows=1), posts)  # a write per frame
        errors: list[Exception] = []
        root.errors.subscribe(errors.append)
        with caplog.at_level(logging.WARNING, logger="rxstore.persist"):
            async with root:
                await root.live(timeout=10)
                await wait_for(lambda: root.persist is not None and root.persist.failed is not None)
                writes = root.persist.metrics.writes  # type: ignore[union-attr]
                await write_posts(gateway, range(200, 210))
                await wait_for(lambda: len(posts.value) == 210, what="the root going on in memory")
                with pytest.raises(PersistError, match="max_bytes") as raised:
                    await root.persisted()
                assert raised.value.reason == "too_big"
        assert root.persist.metrics.writes == writes  # type: ignore[union-attr]  # nor at teardown
        assert sum("max_bytes" in r.getMessage() for r in caplog.records if r.name == "rxstore.persist") == 1
        assert [e.reason for e in errors if isinstance(e, PersistError)] == ["too_big"]
        again = PostStore()
        assert await root_on(port, state, again).loaded() and len(again.value) == 200
    finally:
        await gateway.stop()


async def test_a_failed_write_stops_writing_and_is_raised_to_whoever_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails for good (a damaged file: the file's write raises): ``write_failed`` on
    ``errors`` and from ``persisted()`` and a mutation's ``stored``; the root keeps running."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        state = tmp_path / "state.db"
        posts = PostStore()
        root = root_on(port, state, posts)
        errors: list[Exception] = []
        root.errors.subscribe(errors.append)
        async with root:
            await root.live(timeout=10)
            await root.persisted()

            def damaged(self: StateFile, batch: Any) -> int:
                raise sqlite3.DatabaseError("database disk image is malformed")

            monkeypatch.setattr(StateFile, "write", damaged)
            await write_posts(gateway, range(3))
            # persisted() covers what the root has gathered: wait for the changes to reach it first
            await wait_for(lambda: len(posts.value) == 3, what="the 3 posts at the root")
            with pytest.raises(PersistError, match="malformed") as raised:
                await root.persisted()
            assert raised.value.reason == "write_failed"
            with pytest.raises(PersistError):
                await root.submit("save_post", {"id": "p7", "title": "x"}).stored
            await wait_for(lambda: len(posts.value) == 4, what="the root going on in memory")
        assert [e.reason for e in errors if isinstance(e, PersistError)] == ["write_failed"]
    finally:
        await gateway.stop()


async def test_a_full_disk_delays_the_writes_which_resume_by_themselves_after(
    tmp_path: Path,
) -> None:
    """The state file's disk full (an 8 MiB tmpfs filled to the last byte): ``write_delayed`` once on
    ``errors``, the root runs on in memory, ``persisted()`` waits; once the disk has room again the
    writes resume by themselves, and a restart from the file shows exactly the database's rows."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(20))
        with small_filesystem(tmp_path / "small", "8m") as disk:
            state = disk / "state.db"
            posts = PostStore()
            root = root_on(port, state, posts)
            errors: list[Exception] = []
            root.errors.subscribe(errors.append)
            async with root:
                await root.live(timeout=10)
                await root.persisted()
                filler = fill(disk)
                await write_posts(gateway, range(20, 400), title="while full ")
                await wait_for(lambda: len(posts.value) == 400, what="the root going on in memory")
                waiting = asyncio.ensure_future(root.persisted())
                persist = root.persist
                assert persist is not None
                await wait_for(lambda: persist.metrics.failures >= 1, what="the write refused")
                seen = persist.metrics.failures
                await wait_for(lambda: persist.metrics.failures > seen, what="the write refused again")
                refused = time.monotonic()  # a refusal seen as it came (the first may have come earlier)
                await wait_for(lambda: persist.metrics.failures > seen + 1, what="and again")
                paused = time.monotonic() - refused
                assert paused >= RETRY_FIRST / 2, f"tried again after {paused:.3f} s: no pause, a busy loop"
                assert not waiting.done()
                filler.unlink()
                await asyncio.wait_for(waiting, 30)
            assert [e.reason for e in errors if isinstance(e, PersistError)] == ["write_delayed"]
            again = PostStore()
            restarted = root_on(free_port(), state, again)  # no gateway there: the file alone
            assert await restarted.loaded()
            assert again.value.to_dict() == await all_posts(gateway.log)
            await restarted.teardown_realtime()
    finally:
        await gateway.stop()


async def test_a_cursor_past_the_logs_retention_falls_back_to_a_snapshot_and_replaces_the_disk_copy(
    tmp_path: Path,
) -> None:
    """While the client is down, changes are written and the log is trimmed past its cursor: the
    restarted root shows its disk copy, then gets a reset and one snapshot (not the missed changes,
    which are gone), equals the table, and its file holds the new rows and cursor."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(10))
        state = tmp_path / "state.db"
        await first_run(tmp_path, port, state, rows=10)
        await write_posts(gateway, range(10, 20), title="new")
        await delete_post(gateway.log, "p0")
        assert await gateway.log.trim(max_rows=3) > 0  # the cursor (10) is now older than the log keeps

        posts = PostStore()
        root = root_on(port, state, posts)
        received = Received(root)
        assert await root.loaded() and len(posts.value) == 10 and posts.sync.from_disk
        async with root:
            await root.live(timeout=10)
            assert received.snapshots == 1
            assert posts.value.to_dict() == await all_posts(gateway.log)
            await root.persisted()
            cursor = root.cursor

        again = PostStore()
        third = root_on(port, state, again)
        assert await third.loaded() and third.cursor == cursor
        assert again.value.to_dict() == await all_posts(gateway.log)
        await third.teardown_realtime()
    finally:
        await gateway.stop()
