"""Shared snapshot reads: a storm of first connects reads the database a few times, not once per client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rxstore import RootStore
from rxstore.gateway.access.auth import User
from rxstore.gateway.delivery.queues import Delivery
from rxstore.gateway.demo import Post, all_posts, save_post
from rxstore.gateway.log.postgres.reads import PostgresSnapshotReader
from rxstore.gateway.log.sqlite.reads import SQLiteSnapshotReader
from rxstore.gateway.server import RealtimeGateway
from tests.faults.harness import StalledClient
from tests.gateway.harness import AUTH, PostStore, root_for, start_gateway
from tests.gateway.overload import ROWS as BIG_ROWS
from tests.gateway.overload import write_big_table
from tests.waiting import wait_for

CLIENTS = 50
ROWS = 300
AUTHORS = 5
"""Users u0..u4 own private rows: each of them sees a table of its own, the others all see the same."""


def authorize(user: User, topic: str, row: dict[str, Any]) -> bool:
    return not row["private"] or row["author"] == user.id


def visible(rows: dict[str, Post], user: str) -> dict[str, Post]:
    return {key: row for key, row in rows.items() if not row.private or row.author == user}


def reads(gateway: RealtimeGateway) -> float:
    return gateway.metrics.registry.get_sample_value("rxstore_snapshot_reads_total") or 0.0


def snapshots(gateway: RealtimeGateway) -> float:
    return gateway.metrics.registry.get_sample_value("rxstore_snapshots_total") or 0.0


async def test_a_storm_of_first_connects_shares_few_reads_and_every_client_gets_its_own_view(
    database_url: str,
) -> None:
    """50 clients connecting at once while a writer writes: each ends with exactly the rows it may see,
    and the database was read far fewer times than there were snapshots."""
    gateway = await start_gateway(database_url, authorize=authorize)
    try:
        log = gateway.log
        for i in range(ROWS):
            author = f"u{i % (AUTHORS * 2)}"  # half of the rows by u5..u9, never private
            private = i % (AUTHORS * 2) < AUTHORS and i % 3 == 0
            await save_post(log, Post(id=f"p{i:04d}", title=f"t{i}", author=author, private=private))
        writing = True

        async def writer() -> None:
            n = 0
            while writing:
                await save_post(
                    log, Post(id=f"w{n % 40}", title=f"w{n}", author=f"u{n % AUTHORS}", private=n % 2 == 0)
                )
                n += 1
                await asyncio.sleep(0)

        write_task = asyncio.create_task(writer())
        clients = [root_for(gateway, f"u{i}") for i in range(CLIENTS)]
        await asyncio.gather(*(root.setup_realtime() for root, _ in clients))
        await wait_for(
            lambda: all(posts.seq is not None for _, posts in clients), timeout=30, what="all live"
        )
        writing = False
        await write_task
        await save_post(log, Post(id="last", title="last", author="u9"))
        table = await all_posts(log)
        for i, (_, posts) in enumerate(clients):
            want = visible(table, f"u{i}")
            await wait_for(lambda p=posts, w=want: p.value.to_dict() == w, timeout=20, what=f"u{i}'s table")
        # The gateway counts a snapshot once its last frame is written: the clients may have it first.
        await wait_for(lambda: snapshots(gateway) == CLIENTS, what="every snapshot counted")
        assert reads(gateway) <= CLIENTS // 5, f"{reads(gateway)} reads for {CLIENTS} snapshots"
        await asyncio.gather(*(root.teardown_realtime() for root, _ in clients))
    finally:
        await gateway.stop()


async def test_one_users_many_connections_share_reads_too(tmp_path: Path) -> None:
    """Devices that all use one service token: 30 connects of one user at once, a few reads."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        for i in range(100):
            await save_post(gateway.log, Post(id=f"p{i:03d}", title=f"t{i}"))
        clients = [root_for(gateway, "device") for _ in range(30)]
        await asyncio.gather(*(root.setup_realtime() for root, _ in clients))
        await wait_for(lambda: all(len(posts.value) == 100 for _, posts in clients), what="every table")
        await wait_for(lambda: snapshots(gateway) == 30, what="every snapshot counted")
        assert reads(gateway) <= 6, f"{reads(gateway)} reads for 30 snapshots of one user"
        await asyncio.gather(*(root.teardown_realtime() for root, _ in clients))
    finally:
        await gateway.stop()


async def test_a_member_that_stalls_is_dropped_and_the_others_of_its_read_get_every_row(
    tmp_path: Path,
) -> None:
    """Eve's stalled read holds the one slot while mallory (never reads) and alice join the next read."""
    gateway = await start_gateway(
        f"sqlite:///{tmp_path}/app.db", snapshot_concurrency=1, client_send_timeout=1.0
    )
    eve, mallory = (
        StalledClient(gateway.port, AUTH.issue("eve")),
        StalledClient(gateway.port, AUTH.issue("mallory")),
    )
    try:
        await asyncio.to_thread(write_big_table, tmp_path / "app.db")
        await asyncio.to_thread(eve.connect)
        await wait_for(lambda: reads(gateway) == 1, what="eve's read under way")
        await asyncio.to_thread(mallory.connect)
        root, posts = root_for(gateway, "alice")
        await root.setup_realtime()
        await wait_for(lambda: len(posts.value) == BIG_ROWS, timeout=20, what="alice's whole table")
        assert reads(gateway) == 2, "mallory and alice shared the second read"
        assert gateway.metrics.registry.get_sample_value("rxstore_stalled_clients_dropped_total") == 2
        await root.teardown_realtime()
    finally:
        eve.close()
        mallory.close()
        await gateway.stop()


def write_rows(path: Path, count: int) -> None:
    """``count`` posts of 20 KB each, in one transaction."""
    rows = [(f"r{i:05d}", f"r {i}", os.urandom(10_000).hex()) for i in range(count)]
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO posts (id, title, body) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")


async def test_a_client_that_never_reads_gets_no_more_read_than_its_sockets_hold_and_a_page(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A page is read once the last one is taken: a stalled reader keeps the gateway's memory bounded.

    ~32 MB of rows, a client that never reads: until it is dropped, the rows read from
    the table are what its sockets hold (4 MiB at most on Linux) plus a page, not the table
    (reading on without waiting read all 1,600 rows here).
    """
    read: list[int] = []
    fetch = SQLiteSnapshotReader.fetch_sync

    def counted(self: SQLiteSnapshotReader, *args: Any, **kwargs: Any) -> Any:
        rows, more = fetch(self, *args, **kwargs)
        read.append(len(rows))
        return rows, more

    monkeypatch.setattr(SQLiteSnapshotReader, "fetch_sync", counted)
    gateway = await start_gateway(
        f"sqlite:///{tmp_path}/app.db", client_send_timeout=1.0, frame_bytes=64 << 10
    )
    stalled = StalledClient(gateway.port, AUTH.issue("mallory"))
    try:
        await asyncio.to_thread(write_rows, tmp_path / "app.db", 1_600)
        await asyncio.to_thread(stalled.connect)
        await wait_for(
            lambda: gateway.metrics.registry.get_sample_value("rxstore_stalled_clients_dropped_total") == 1,
            timeout=20,
            what="the stalled client dropped",
        )
        assert sum(read) * 20_000 < 8 << 20, f"{sum(read)} of 1,600 rows read for a client that never read"
    finally:
        stalled.close()
        await gateway.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("row_filter", [None, authorize], ids=["texts", "row filter: dicts"])
async def test_postgres_rows_go_as_their_json_texts_unless_a_row_filter_reads_them(
    pg_dsn: str, monkeypatch: Any, row_filter: Any
) -> None:
    """Without ``authorize`` a snapshot's rows go as PostgreSQL wrote them (never decoded); the client
    holds the same rows either way."""
    calls: list[str] = []
    fetch, fetch_text = PostgresSnapshotReader.fetch, PostgresSnapshotReader.fetch_text

    async def counted(self: Any, *args: Any) -> Any:
        calls.append("fetch")
        return await fetch(self, *args)

    async def counted_text(self: Any, *args: Any) -> Any:
        calls.append("fetch_text")
        return await fetch_text(self, *args)

    monkeypatch.setattr(PostgresSnapshotReader, "fetch", counted)
    monkeypatch.setattr(PostgresSnapshotReader, "fetch_text", counted_text)
    gateway = await start_gateway(pg_dsn, authorize=row_filter, frame_bytes=4096)
    try:
        for i in range(ROWS):
            await save_post(gateway.log, Post(id=f"p{i:03d}", title=f"t {i}", body='é "q" ' * i))
        root, posts = root_for(gateway, "carol")
        await root.setup_realtime()
        await root.live(timeout=20)
        assert posts.value.to_dict() == await all_posts(gateway.log)
        assert set(calls) == ({"fetch_text"} if row_filter is None else {"fetch"}), calls
        assert len(calls) > 3, "several pages"
        await root.teardown_realtime()
    finally:
        await gateway.stop()


@pytest.mark.postgres
async def test_postgres_rows_as_texts_are_read_no_further_than_a_client_that_never_reads_takes(
    pg_dsn: str, monkeypatch: Any
) -> None:
    """A page is read once the last but one is taken: ~32 MB of rows, what is read stays bounded.

    Until the client is dropped, the rows read are what its sockets hold (4 MiB at most on
    Linux) plus two pages (one read ahead), not the table.
    """
    read = pages_read(monkeypatch, PostgresSnapshotReader, "fetch_text")
    gateway = await start_gateway(pg_dsn, client_send_timeout=1.0, frame_bytes=64 << 10)
    stalled = StalledClient(gateway.port, AUTH.issue("mallory"))
    try:
        await gateway.log.execute(
            "INSERT INTO posts (id, title, body) "
            "SELECT 'r' || x, 'r ' || x, repeat(md5(x::text), 625) FROM generate_series(1, 1600) x"
        )
        await asyncio.to_thread(stalled.connect)
        await wait_for(
            lambda: gateway.metrics.registry.get_sample_value("rxstore_stalled_clients_dropped_total") == 1,
            timeout=20,
            what="the stalled client dropped",
        )
        assert read and sum(read) * 20_000 < 8 << 20, (
            f"{sum(read)} of 1,600 rows read for a client that never read"
        )
    finally:
        stalled.close()
        await gateway.stop()


async def test_the_next_page_is_read_while_a_page_is_sent_one_page_ahead_at_most(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Page N+1 is asked for as soon as page N is read, before its frames are sent; never two at
    once; the client holds exactly the table."""
    events: list[str] = []
    in_flight = [0, 0]  # now, most
    fetch = SQLiteSnapshotReader.fetch

    async def traced(self: Any, *args: Any) -> Any:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        events.append("read")
        try:
            return await fetch(self, *args)
        finally:
            in_flight[0] -= 1
            events.append("read done")

    send = Delivery.send

    async def sent(self: Any, client: Any, frame: Any) -> None:
        events.append("send")
        await send(self, client, frame)

    monkeypatch.setattr(SQLiteSnapshotReader, "fetch", traced)
    monkeypatch.setattr(Delivery, "send", sent)
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", frame_bytes=4096)
    try:
        for i in range(ROWS):
            await save_post(gateway.log, Post(id=f"p{i:03d}", title=f"t {i}", body="b" * 50))
        root, posts = root_for(gateway, "carol")
        await root.setup_realtime()
        await root.live(timeout=20)
        assert posts.value.to_dict() == await all_posts(gateway.log)
        await root.teardown_realtime()
    finally:
        await gateway.stop()
    reads = events.count("read")
    assert reads > 3, "several pages"
    ahead = sum(1 for a, b in itertools.pairwise(events) if (a, b) == ("read done", "read"))
    assert ahead == reads - 1, events  # every next page asked for before the last one's frames
    assert in_flight[1] == 1


async def test_a_window_snapshot_reads_no_page_ahead(tmp_path: Path, monkeypatch: Any) -> None:
    """A window's snapshot reads no page past the one that fills it: its cost follows its rows."""
    read = pages_read(monkeypatch, SQLiteSnapshotReader, "fetch")
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", frame_bytes=4096)
    try:
        for i in range(ROWS):
            await save_post(gateway.log, Post(id=f"p{i:03d}", title=f"t {i}", likes=i))
        newest = PostStore(order_by=[("likes", "desc")], limit=5)
        root = RootStore(gateway.url, stores=[newest], token=AUTH.issue("carol"))
        async with root:
            await newest.live()
            assert [r.id for r in newest.value.ordered()] == [
                f"p{i:03d}" for i in range(ROWS - 1, ROWS - 6, -1)
            ]
    finally:
        await gateway.stop()
    assert read == [16], read  # the first page (16 rows) fills the window of 5: nothing read after it


def pages_read(monkeypatch: Any, reader_class: type, method: str) -> list[int]:
    """The rows of each page ``reader_class.method`` gives, recorded as the gateway reads them."""
    read: list[int] = []
    original = getattr(reader_class, method)

    async def counted(self: Any, *args: Any) -> Any:
        rows, more = await original(self, *args)
        read.append(len(rows))
        return rows, more

    monkeypatch.setattr(reader_class, method, counted)
    return read
