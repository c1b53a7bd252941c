"""The resume token: a cursor and the commit time (``ts``) of the change at it, checked on resume.

Real gateways and real ``RootStore`` s on 127.0.0.1, on SQLite files and on
PostgreSQL databases. A log that holds another change at the client's cursor
(a backup restored with no ``rxstore log mark-restore``, whose seqs were then
given to other changes; another database) gets the client ``rxstore:reset``
(``cursor_unknown``) and snapshots, with or without the epoch, so the client
ends with exactly the database's rows. The check is one read by the log's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import socketio

from rxstore import RootStore
from rxstore.gateway.demo import all_posts
from rxstore.gateway.log.open_log import open_change_log
from tests.gateway.harness import AUTH, root_for
from tests.gateway.log.test_contract_epoch import (
    backend,  # noqa: F401  (the fixture)
    databases,  # noqa: F401  (the fixture)
    npm_example_through_a_restore,
    pg_tool,
    record_resets,
    serving,
    snapshots,
    sqlite_copy,
    synced,
    write_posts,
)
from tests.interop.test_node_client import ROOT, node  # noqa: F401  (the fixture)
from tests.services import PG_BIN_DIR, PostgresServer

pytestmark = pytest.mark.timeout(90)


def checkpoint(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def resume_after_restore(tmp_path: Path, *, epoch: bool, seen_live: bool) -> tuple[RootStore, Any]:
    """Backup at seq 5; 5 more changes (seqs 6-10) the client holds; the backup restored with no
    ``mark-restore`` and the gateway restarted on it; 8 other changes (seqs 6-13 again); the
    client returns. Returns the root and what it ended with (asserted equal to the database)."""
    db, backup = tmp_path / "app.db", tmp_path / "backup.db"
    url = f"sqlite:///{db}"
    async with serving(url) as gateway:
        await write_posts(gateway.log, "p", 5)
        checkpoint(db)
        await asyncio.to_thread(sqlite_copy, db, backup)
        root, posts = root_for(gateway)
        if seen_live:  # the client's cursor is the ts of a change it was sent
            async with root:
                await synced(root, posts, gateway)
                await write_posts(gateway.log, "lost", 5)
                await synced(root, posts, gateway)
        else:  # the client's cursor is a snapshot's seq: its ts came with the snapshot
            await write_posts(gateway.log, "lost", 5)
            async with root:
                await synced(root, posts, gateway)
    assert root.cursor == 10 and root.cursor_ts is not None and len(posts.value) == 10

    await asyncio.to_thread(sqlite_copy, backup, db)  # the restore: nobody marks it
    async with serving(url) as gateway:
        await write_posts(gateway.log, "new", 8)  # seqs 6-13 of the restored log
        assert await gateway.log.head() == 13
        if not epoch:
            root.epoch = None  # a client that does not keep the epoch (the check cannot help)
        resets = record_resets(root)
        root.urls = (gateway.url,)
        async with root:
            await synced(root, posts, gateway)
            rows = await all_posts(gateway.log)
            assert posts.value.to_dict() == rows
        assert [r["reason"] for r in resets] == ["cursor_unknown"]
        assert resets[0]["cursor"] == 10
    return root, rows


@pytest.mark.parametrize("seen_live", [True, False], ids=["cursor-of-a-change", "cursor-of-a-snapshot"])
@pytest.mark.parametrize("epoch", [True, False], ids=["with-epoch", "without-epoch"])
async def test_a_restored_sqlite_backup_that_nobody_marked_resets_returning_clients(
    tmp_path: Path, epoch: bool, seen_live: bool
) -> None:
    """Without ``rxstore log mark-restore`` (the epoch is the backup's, so it cannot tell), the
    returning client is reset (``cursor_unknown``) and ends with the database's 13 rows, not
    its 10 plus the 3 new changes after its cursor."""
    _, rows = await resume_after_restore(tmp_path, epoch=epoch, seen_live=seen_live)
    assert sorted(rows) == sorted([f"p{i}" for i in range(5)] + [f"new{i}" for i in range(8)])


async def test_a_cursor_of_another_database_sent_without_the_epoch_gets_a_reset(
    databases: tuple[str, str],  # noqa: F811  (the fixture)
) -> None:
    """A client at cursor 5 of database A, which sends no epoch, connecting to database B (head
    12): the change at seq 5 of B is not its change, so it is reset and ends with B's rows."""
    url_a, url_b = databases
    async with serving(url_a) as gateway_a:
        await write_posts(gateway_a.log, "a", 5)
        root, posts = root_for(gateway_a)
        async with root:
            await synced(root, posts, gateway_a)
    assert root.cursor == 5 and root.cursor_ts is not None

    async with serving(url_b) as gateway_b:
        await write_posts(gateway_b.log, "b", 12)
        root.epoch = None
        resets = record_resets(root)
        root.urls = (gateway_b.url,)
        async with root:
            await synced(root, posts, gateway_b)
            assert posts.value.to_dict() == await all_posts(gateway_b.log)
        assert [r["reason"] for r in resets] == ["cursor_unknown"]


async def test_the_same_log_resumes_with_the_token_without_a_reset(
    backend: str,  # noqa: F811  (the fixture)
    databases: tuple[str, str],  # noqa: F811  (the fixture)
) -> None:
    """A gateway restarted on the same database finds the client's change at its cursor:
    a replay of what it missed, no reset, no snapshot."""
    url = databases[0]
    async with serving(url) as gateway:
        await write_posts(gateway.log, "p", 3)
        root, posts = root_for(gateway)
        async with root:
            await synced(root, posts, gateway)
            await write_posts(gateway.log, "q", 2)
            await synced(root, posts, gateway)
        assert root.cursor_ts == await gateway.log.ts_at(5)
    async with serving(url) as gateway:
        await write_posts(gateway.log, "r", 2)
        resets = record_resets(root)
        root.urls = (gateway.url,)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert resets == [] and snapshots(gateway) == 0
        assert root.cursor_ts == await gateway.log.ts_at(7)


async def test_a_cursor_whose_change_was_trimmed_resumes_as_before(
    backend: str,  # noqa: F811  (the fixture)
    databases: tuple[str, str],  # noqa: F811  (the fixture)
) -> None:
    """Retention removed the change at the cursor (the cursor is the horizon): nothing to check
    it against, and the cursor still resumes with a replay (a cursor below the horizon is
    ``cursor_expired``, as before)."""
    url = databases[0]
    async with serving(url) as gateway:
        await write_posts(gateway.log, "p", 4)
        root, posts = root_for(gateway)
        async with root:
            await synced(root, posts, gateway)
        assert await gateway.log.trim(max_rows=0) == 4
        assert await gateway.log.horizon() == 4 and await gateway.log.ts_at(4) is None
        await write_posts(gateway.log, "q", 2)
        resets = record_resets(root)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert resets == [] and snapshots(gateway) == 1


async def test_a_restored_pg_dump_that_nobody_marked_resets_returning_clients(
    pg_dsn: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    """pg_dump at seq 5, 5 more changes the client holds, pg_restore into the same database with
    no ``mark-restore``, 8 other changes: the returning client is reset and ends with the
    database's rows. With trigger capture the epoch is the dump's, and the token tells
    (``cursor_unknown``); WAL capture gives the restored log a new epoch (``epoch_changed``)."""
    if not (PG_BIN_DIR / "pg_dump").is_file():
        pytest.skip(f"no pg_dump in {PG_BIN_DIR}")
    database, dump = pg_dsn.rsplit("/", 1)[1], tmp_path / "app.dump"
    async with serving(pg_dsn) as gateway:
        await write_posts(gateway.log, "p", 5)
        await asyncio.to_thread(pg_tool, postgres, "pg_dump", "-Fc", "-f", str(dump), database)
        root, posts = root_for(gateway)
        async with root:
            await write_posts(gateway.log, "lost", 5)
            await synced(root, posts, gateway)
        wal = getattr(gateway.log, "capture", "") == "wal"
    assert root.cursor == 10 and root.cursor_ts is not None

    await asyncio.to_thread(
        pg_tool, postgres, "pg_restore", "--clean", "--if-exists", "-d", database, str(dump)
    )
    async with serving(pg_dsn) as gateway:
        await write_posts(gateway.log, "new", 8)
        assert await gateway.log.head() == 13
        resets = record_resets(root)
        root.urls = (gateway.url,)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert [r["reason"] for r in resets] == ["epoch_changed" if wal else "cursor_unknown"]
        assert len(posts.value) == 13


@pytest.mark.node
async def test_the_npm_example_of_the_protocol_page_reloads_after_a_restore_nobody_marked(
    node: str,  # noqa: F811  (the fixture)
    tmp_path: Path,
) -> None:
    """The socket.io-client example of docs/protocol.md, run as written, keeps ``cursor_ts``
    with its cursor: after a SQLite backup restored with no ``mark-restore`` (same epoch) and
    8 other changes, it shows the database's 9 posts (a replay of seqs 11-13 would leave 13)."""
    await npm_example_through_a_restore(node, tmp_path, mark=False)


# -- the token on the wire ------------------------------------------------------------


@pytest.mark.parametrize("cursor_ts", ["1.5", True, [1.5], {"ts": 1.5}])
async def test_a_cursor_ts_that_is_not_a_number_is_refused_as_bad_request(
    tmp_path: Path, cursor_ts: Any
) -> None:
    async with serving(f"sqlite:///{tmp_path}/app.db") as gateway:
        client = socketio.AsyncClient(reconnection=False)
        refused: list[Any] = []
        client.on("connect_error", refused.append)
        auth = {"token": AUTH.issue("alice"), "topics": ["posts"], "cursor": 0, "cursor_ts": cursor_ts}
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(gateway.url, auth=auth, transports=["websocket"], wait_timeout=5)
        await client.disconnect()
        assert refused and refused[0]["message"] == "bad_request"
        assert "'cursor_ts'" in refused[0]["data"]["message"]


async def test_a_wrong_cursor_ts_gets_a_reset_and_a_missing_one_resumes(tmp_path: Path) -> None:
    """Any other number than the change's ``ts`` is another change; ``null`` (older clients,
    npm clients that do not keep it) resumes from the cursor as before."""
    async with serving(f"sqlite:///{tmp_path}/app.db") as gateway:
        await write_posts(gateway.log, "p", 4)
        root, posts = root_for(gateway)
        async with root:
            await synced(root, posts, gateway)
        ts = root.cursor_ts
        assert ts is not None and root.auth_payload("t")["cursor_ts"] == ts

        root.cursor = 2  # a cursor set by hand has no ts: resumed without the check
        assert root.cursor_ts is None
        resets = record_resets(root)
        async with root:
            await synced(root, posts, gateway)
        assert resets == []

        root.cursor_ts = ts + 0.001
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert [r["reason"] for r in resets] == ["cursor_unknown"]
        assert root.cursor_ts == ts  # the snapshot's seq is 4 again: its ts came with it


# -- the cost: one read by the key ----------------------------------------------------


async def test_the_check_is_one_read_by_the_logs_key(
    backend: str,  # noqa: F811  (the fixture)
    databases: tuple[str, str],  # noqa: F811  (the fixture)
) -> None:
    """``ts_at`` is a lookup by the seq's index whatever the log's size (O(1) per resume), on
    both backends: SQLite's INTEGER PRIMARY KEY, PostgreSQL's unique index on seq."""
    log = open_change_log(databases[0])
    await log.open()
    try:
        if backend == "sqlite":
            plan = await log.fetch("EXPLAIN QUERY PLAN SELECT ts FROM rxstore_changes WHERE seq = ?", 7)
            details = " ".join(str(row["detail"]) for row in plan)
            assert "USING INTEGER PRIMARY KEY" in details, details
        else:
            plan = await log.fetch("EXPLAIN SELECT ts FROM rxstore_changes WHERE seq = $1", 7)
            details = " ".join(str(next(iter(row.values()))) for row in plan)
            assert "Index Scan using rxstore_changes_seq_key" in details, details
        assert await log.ts_at(7) is None
    finally:
        await log.close()
