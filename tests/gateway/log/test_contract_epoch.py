"""The change log's identity (its epoch): a cursor is only resumed in the log it came from.

Real gateways and real ``RootStore`` s on 127.0.0.1, on SQLite files and on
PostgreSQL databases: a cursor of another database or of a log from before a
backup restore gets ``rxstore:reset`` (``epoch_changed``) and a snapshot, so the
client ends with exactly the database's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from rxstore import EventKind, RootStore, SyncState
from rxstore.gateway.demo import Post, all_posts, create_demo_schema, delete_post, save_post
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.log.postgres.changelog import PostgresChangeLog
from rxstore.gateway.server import RealtimeGateway
from rxstore.testing import change_frame, marbles
from tests.gateway.harness import AUTH, PostStore, root_for, start_gateway
from tests.interop.test_node_client import ROOT, node  # noqa: F401  (the fixture)
from tests.recorded import value_of
from tests.services import PG_BIN_DIR, PostgresServer
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

RXSTORE = [sys.executable, "-m", "rxstore.cli"]
EPOCH_LINE = re.compile(r"^rxstore: log epoch ([0-9a-f]{32}) -> ([0-9a-f]{32}) \(head seq (\d+)\): .+$")


# -- helpers -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def databases(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases of the backend under test: ``(A, B)``."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    first: str = request.getfixturevalue("pg_dsn")
    name = f"t_{uuid.uuid4().hex[:16]}"
    second = server.create_database(name)
    yield first, second
    if server.running:
        server.drop_database(name)


async def write_posts(log: Any, prefix: str, count: int) -> None:
    """Write ``count`` posts, then wait until the log has numbered them (PostgreSQL numbers
    commits asynchronously; a snapshot taken before would skip them, not list them)."""
    for i in range(count):
        await save_post(log, Post(id=f"{prefix}{i}", title=f"{prefix} {i}"))
    await log.head()


def record_resets(root: RootStore) -> list[Any]:
    resets: list[Any] = []
    root.events.subscribe(lambda e: resets.append(e.data) if e.kind is EventKind.RESET else None)
    return resets


async def synced(root: RootStore, posts: PostStore, gateway: RealtimeGateway) -> None:
    """Wait until ``root`` is live at the log's head (whatever its rows are)."""
    head = await gateway.log.head()
    await wait_for(
        lambda: posts.sync.state is SyncState.LIVE and root.cursor == head,
        timeout=8,
        what=f"root live at seq {head}",
    )


def snapshots(gateway: RealtimeGateway) -> float | None:
    return gateway.metrics.registry.get_sample_value("rxstore_snapshots_total")


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``rxstore ARGS`` as an operator would (a separate process)."""
    return await asyncio.to_thread(
        subprocess.run, [*RXSTORE, *args], capture_output=True, text=True, timeout=60, check=False
    )


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(url)
    try:
        yield gateway
    finally:
        await gateway.stop()


# -- another database ------------------------------------------------------------------


async def test_a_cursor_of_another_database_gets_a_reset_and_exactly_that_databases_rows(
    databases: tuple[str, str],
) -> None:
    """A client at cursor 5 of database A that connects to database B (head 12) is reset and
    ends with B's rows, not A's rows plus B's changes 6-12."""
    url_a, url_b = databases
    async with serving(url_a) as gateway_a:
        await write_posts(gateway_a.log, "a", 5)
        root, posts = root_for(gateway_a)
        async with root:
            await synced(root, posts, gateway_a)
        epoch_a = await gateway_a.log.epoch()
    assert root.cursor == 5 and root.epoch == epoch_a

    async with serving(url_b) as gateway_b:
        await write_posts(gateway_b.log, "b", 12)
        epoch_b = await gateway_b.log.epoch()
        assert epoch_b != epoch_a
        resets = record_resets(root)
        root.urls = (gateway_b.url,)
        async with root:
            await synced(root, posts, gateway_b)
            assert posts.value.to_dict() == await all_posts(gateway_b.log)
        assert [r["reason"] for r in resets] == ["epoch_changed"]
        assert resets[0]["cursor"] == 5 and resets[0]["epoch"] == epoch_b
        assert root.epoch == epoch_b


# -- a backup restore ------------------------------------------------------------------


def sqlite_copy(source: Path, target: Path) -> None:
    """Copy a SQLite database with the backup API (consistent, WAL included)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


async def test_a_restored_sqlite_backup_marked_with_the_cli_resets_returning_clients(tmp_path: Path) -> None:
    """Backup at seq 5, 5 more changes seen by a client, restore, ``rxstore log mark-restore``,
    8 new changes (seqs 6-13 again): the returning client ends with exactly the database's rows."""
    db, backup = tmp_path / "app.db", tmp_path / "backup.db"
    url = f"sqlite:///{db}"
    async with serving(url) as gateway:
        await write_posts(gateway.log, "p", 5)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await asyncio.to_thread(sqlite_copy, db, backup)
        root, posts = root_for(gateway)
        async with root:
            await write_posts(gateway.log, "lost", 5)  # seqs 6-10: not in the backup
            await synced(root, posts, gateway)
        old_epoch = await gateway.log.epoch()
    assert root.cursor == 10 and root.epoch == old_epoch

    await asyncio.to_thread(sqlite_copy, backup, db)  # the restore
    marked = await cli("log", "mark-restore", "--db", url)
    assert marked.returncode == 0, marked.stderr
    match = EPOCH_LINE.match(marked.stdout.strip())
    assert match is not None and marked.stdout.count("\n") == 1, marked.stdout
    assert match.group(1) == old_epoch and match.group(3) == "5"

    async with serving(url) as gateway:
        assert await gateway.log.epoch() == match.group(2)
        await write_posts(gateway.log, "new", 8)  # seqs 6-13 of the restored log
        resets = record_resets(root)
        root.urls = (gateway.url,)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert [r["reason"] for r in resets] == ["epoch_changed"]
        assert sorted(posts.value.to_dict()) == sorted(
            [f"p{i}" for i in range(5)] + [f"new{i}" for i in range(8)]
        )


def pg_tool(server: PostgresServer, tool: str, *args: str) -> None:
    subprocess.run(
        [str(PG_BIN_DIR / tool), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


async def test_a_restored_pg_dump_marked_with_the_cli_resets_returning_clients(
    pg_dsn: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    """pg_dump at seq 5, 5 more changes seen by a client, pg_restore into the same database
    (same cluster and database: the epoch cannot tell by itself), ``rxstore log mark-restore``,
    8 new changes: the returning client ends with exactly the database's rows."""
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
        old_epoch = await gateway.log.epoch()
    assert root.cursor == 10 and root.epoch == old_epoch

    await asyncio.to_thread(
        pg_tool, postgres, "pg_restore", "--clean", "--if-exists", "-d", database, str(dump)
    )
    log = open_change_log(pg_dsn)
    await log.open()
    try:
        restored, wal = await log.epoch(), getattr(log, "capture", "") == "wal"
        assert await log.head() == 5
        # With triggers the restored log is as it was; WAL capture sees the restore by itself
        # (its publication was made again: the slot cannot decode) and gives a new epoch.
        assert (restored != old_epoch) if wal else (restored == old_epoch)
    finally:
        await log.close()
    marked = await cli("log", "mark-restore", "--db", pg_dsn)
    assert marked.returncode == 0, marked.stderr
    match = EPOCH_LINE.match(marked.stdout.strip())
    assert match is not None and match.group(1) == restored, marked.stdout

    async with serving(pg_dsn) as gateway:
        await write_posts(gateway.log, "new", 8)
        resets = record_resets(root)
        root.urls = (gateway.url,)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert [r["reason"] for r in resets] == ["epoch_changed"]
        assert len(posts.value) == 13


async def test_a_copy_of_a_postgres_database_gets_a_new_epoch_by_itself(
    pg_dsn: str, postgres: PostgresServer
) -> None:
    """A database made from another (``CREATE DATABASE ... TEMPLATE``, as a pg_dump restored
    elsewhere) keeps the identity row, but opening its log gives it a new epoch; the
    original keeps its own."""
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    original = await log.epoch()
    await log.close()
    source, name = pg_dsn.rsplit("/", 1)[1], f"t_{uuid.uuid4().hex[:16]}"
    postgres.psql(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        copy = PostgresChangeLog(postgres.dsn_for(name))
        await copy.open()
        try:
            assert await copy.epoch() != original
        finally:
            await copy.close()
    finally:
        postgres.drop_database(name)
    await log.open()
    try:
        assert await log.epoch() == original
    finally:
        await log.close()


# -- what keeps the epoch, what changes it ----------------------------------------------


async def test_the_epoch_survives_a_gateway_restart_without_a_reset(
    backend: str, databases: tuple[str, str]
) -> None:
    """A gateway restarted on the same database has the same epoch: returning clients are
    replayed what they missed, with no reset and no snapshot."""
    url = databases[0]
    async with serving(url) as gateway:
        await write_posts(gateway.log, "p", 3)
        root, posts = root_for(gateway)
        async with root:
            await synced(root, posts, gateway)
        epoch = root.epoch
    assert epoch is not None
    async with serving(url) as gateway:
        await write_posts(gateway.log, "q", 2)
        resets = record_resets(root)
        root.urls = (gateway.url,)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert resets == [] and snapshots(gateway) == 0
        assert root.epoch == epoch == await gateway.log.epoch()


async def test_a_recreated_log_gets_a_new_epoch(backend: str, databases: tuple[str, str]) -> None:
    """Dropping the change log and opening it again makes a new log, with a new epoch, even
    though the identity table was left behind."""
    url = databases[0]
    log = open_change_log(url)
    await log.open()
    first = await log.epoch()
    await log.execute(
        "DROP TABLE rxstore_changes" if backend == "sqlite" else "DROP TABLE rxstore_changes CASCADE"
    )
    await log.close()
    await log.open()
    try:
        assert await log.epoch() != first
        second = await log.epoch()
    finally:
        await log.close()
    await log.open()  # and reopening keeps it
    try:
        assert await log.epoch() == second
    finally:
        await log.close()


async def test_gateway_nodes_opening_a_new_postgres_log_together_agree_on_its_epoch(pg_dsn: str) -> None:
    """Several nodes that create the log at once end with one epoch."""
    logs = [PostgresChangeLog(pg_dsn, pool_size=2) for _ in range(4)]
    await asyncio.gather(*(log.open() for log in logs))
    try:
        epochs = {await log.epoch() for log in logs}
        assert len(epochs) == 1
        marked = await logs[0].mark_restore()
        assert {await log.epoch() for log in logs} == {marked} and marked not in epochs
    finally:
        await asyncio.gather(*(log.close() for log in logs))


# -- clients without an epoch, bad epochs ----------------------------------------------


async def test_a_client_that_sends_no_epoch_resumes_from_its_cursor_as_before(tmp_path: Path) -> None:
    """Without an epoch (older clients, npm clients that do not keep it) the cursor is resumed
    with a replay, no reset; the epoch is learnt from ``rxstore:live``."""
    async with serving(f"sqlite:///{tmp_path}/app.db") as gateway:
        await write_posts(gateway.log, "p", 3)
        root, posts = root_for(gateway)
        async with root:
            await synced(root, posts, gateway)
        root.epoch = None
        await write_posts(gateway.log, "q", 2)
        resets = record_resets(root)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert resets == [] and snapshots(gateway) == 1
        assert root.epoch == await gateway.log.epoch()


@pytest.mark.parametrize("epoch", [5, ["e"], {"epoch": "e"}, True])
async def test_an_epoch_that_is_not_a_string_is_refused_as_bad_request(tmp_path: Path, epoch: Any) -> None:
    async with serving(f"sqlite:///{tmp_path}/app.db") as gateway:
        client = socketio.AsyncClient(reconnection=False)
        refused: list[Any] = []
        client.on("connect_error", refused.append)
        auth = {"token": AUTH.issue("alice"), "topics": ["posts"], "cursor": 0, "epoch": epoch}
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(gateway.url, auth=auth, transports=["websocket"], wait_timeout=5)
        await client.disconnect()
        assert refused and refused[0]["message"] == "bad_request"
        assert refused[0]["data"]["reason"] == "bad_request" and "'epoch'" in refused[0]["data"]["message"]
        assert (
            gateway.metrics.registry.get_sample_value("rxstore_refused_total", {"reason": "bad_request"}) == 1
        )


async def test_an_unknown_epoch_string_gets_a_reset_and_a_snapshot(tmp_path: Path) -> None:
    """Any epoch string but the log's (an empty one too) means another log."""
    async with serving(f"sqlite:///{tmp_path}/app.db") as gateway:
        await write_posts(gateway.log, "p", 4)
        root, posts = root_for(gateway)
        root.cursor, root.epoch = 2, ""
        resets = record_resets(root)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert [r["reason"] for r in resets] == ["epoch_changed"]


# -- the npm example of docs/protocol.md ----------------------------------------------


def protocol_page_example() -> str:
    page = (ROOT / "docs" / "protocol.md").read_text()
    match = re.search(r"## A JavaScript client\n.*?```js\n(.*?)```", page, re.S)
    assert match is not None, "docs/protocol.md has no JavaScript client example"
    return match.group(1)


async def read_until(stream: asyncio.StreamReader, line: str, timeout: float) -> list[str]:
    """Lines of ``stream`` up to and including ``line``; fails after ``timeout`` seconds."""
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1] != line:
            raw = await stream.readline()
            assert raw, f"the example exited before printing {line!r}: {seen}"
            seen.append(raw.decode().strip())
    return seen


async def npm_example_through_a_restore(node_binary: str, tmp_path: Path, *, mark: bool) -> None:
    """Run the socket.io-client example of docs/protocol.md, as written, through a SQLite backup
    restored (marked with the CLI or not) and 8 other changes: it must end showing the database's
    9 posts (a replay of seqs 11-13 would leave 13)."""
    (tmp_path / "example.mjs").write_text(protocol_page_example())
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    db, backup = tmp_path / "app.db", tmp_path / "backup.db"
    url = f"sqlite:///{db}"
    gateway = await start_gateway(url)
    port = gateway.port
    env = {**os.environ, "GATEWAY_URL": gateway.url, "RXSTORE_TOKEN": AUTH.issue("alice")}
    example = await asyncio.create_subprocess_exec(
        node_binary, str(tmp_path / "example.mjs"), stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert example.stdout is not None
        try:
            await write_posts(gateway.log, "p", 5)
            await asyncio.to_thread(sqlite_copy, db, backup)
            await write_posts(gateway.log, "lost", 5)
            await read_until(example.stdout, "live at seq 10: 10 posts", timeout=8)
        finally:
            await gateway.stop()
        await asyncio.to_thread(sqlite_copy, backup, db)
        if mark:
            marked = await cli("log", "mark-restore", "--db", url)
            assert marked.returncode == 0, marked.stderr
        log = open_change_log(url)
        await log.open()
        await create_demo_schema(log)
        await delete_post(log, "p0")
        await delete_post(log, "p1")
        await write_posts(log, "new", 6)  # seqs 6-13 again, 9 posts
        gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH)
        await gateway.start(port=port)
        try:
            await read_until(example.stdout, "live at seq 13: 9 posts", timeout=15)
        finally:
            await gateway.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            example.kill()
        await example.wait()


@pytest.mark.node
async def test_the_npm_example_of_the_protocol_page_reloads_after_a_marked_restore(
    node: str,  # noqa: F811  (the fixture)
    tmp_path: Path,
) -> None:
    """The socket.io-client example of docs/protocol.md, run as written: it keeps the epoch
    with its cursor, so after a restore marked with the CLI it shows the database's rows
    (a replay of seqs 11-13 would leave it 13 posts instead of 9)."""
    await npm_example_through_a_restore(node, tmp_path, mark=True)


# -- the virtual gateway -----------------------------------------------------------------


def test_the_virtual_gateway_resets_a_root_whose_epoch_it_no_longer_has() -> None:
    """``VirtualLink.epoch`` changed while the root was away (a restored database): on return
    the root gets ``rxstore:reset`` (``epoch_changed``), every change again, and the new epoch."""
    with marbles() as m:
        posts = PostStore()
        root = m.root(
            [posts],
            link="c--x--c",
            server="-a---b",
            values={
                "a": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "one"}),
                "b": change_frame("posts", 2, "INSERT", {"id": "p2", "title": "two"}),
            },
        )
        m.at(4, lambda: setattr(m.link, "epoch", "restored"))
        resets = m.record(root.events)
        m.run()
    kinds = [(r.time, value_of(r).kind, value_of(r).data) for r in resets]
    reset = [k for k in kinds if k[1] is EventKind.RESET]
    assert reset == [
        (6, EventKind.RESET, {"reason": "epoch_changed", "cursor": 1, "horizon": 0, "epoch": "restored"})
    ]
    assert root.epoch == "restored" and root.cursor == 2
    assert sorted(posts.value.to_dict()) == ["p1", "p2"]
