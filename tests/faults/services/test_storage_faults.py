"""The database refusing writes for a while: a lock held by another writer, a full disk.

A real gateway on a SQLite file; the fault is real: another process's connection holding
the write lock, or the file's filesystem (a tmpfs the test mounts) filled to the last byte.
While it lasts, reads and broadcasts go on, a mutation is answered ``unavailable`` and resent
by the client with the same id, ``/healthz`` says since when and why the writes fail, and
``rxstore_write_faults_total`` counts them. When the cause goes away, the mutation is applied
exactly once, by itself, and the client's state equals the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from rxstore.gateway.api import Retention
from rxstore.gateway.demo import all_posts, create_demo_schema, register_demo_mutations
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.gateway.server import RealtimeGateway
from tests.disks import fill, small_filesystem
from tests.gateway.harness import AUTH, SeqCounter, root_for, start_gateway
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)


async def healthz(gateway: RealtimeGateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/healthz") as response:
        body: dict[str, Any] = await response.json()
        body["http_status"] = response.status
        return body


async def serve(path: Path) -> RealtimeGateway:
    log = SQLiteChangeLog(f"sqlite:///{path}", busy_timeout=0.2)
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH)
    register_demo_mutations(gateway)
    await gateway.start(port=0)
    return gateway


def write_faults(gateway: RealtimeGateway) -> float:
    return gateway.metrics.registry.get_sample_value("rxstore_write_faults_total") or 0.0


async def mutate_through_the_fault(gateway: RealtimeGateway, fault_holds: Any, end_fault: Any) -> None:
    """A client mutates while ``fault_holds``; once /healthz shows it, ``end_fault()``; then check."""
    root, posts = root_for(gateway, "ann", call_timeout=60)
    seqs = SeqCounter(root)
    async with root:
        await root.live(timeout=10)
        await gateway.log.execute("INSERT INTO posts (id, title) VALUES ('before', 'before the fault')")
        await wait_for(lambda: "before" in posts.value.rows, what="a change before the fault")
        async with fault_holds():
            mutation = asyncio.ensure_future(root.mutate("save_post", {"id": "m1", "title": "through"}))
            await wait_for(lambda: write_faults(gateway) >= 2, what="the mutation refused and resent")
            body = await healthz(gateway)
            assert body["http_status"] == 200 and body["log"] == "up", body  # reads go on
            assert body["writes"] != "ok" and body["writes"]["failures"] >= 2, body
            assert any("takes no writes" in w for w in body["warnings"]), body
            assert not mutation.done()
            end_fault()
        assert await asyncio.wait_for(mutation, 30) == {"id": "m1"}
        await wait_for(lambda: "m1" in posts.value.rows, what="the mutation's change")
        assert (await healthz(gateway))["writes"] == "ok"
        rows = await all_posts(gateway.log)
        assert {k: v for k, v in posts.value.rows.items()} == rows
        assert len(seqs.seen) == len(set(seqs.seen)), "a change delivered twice"
        m1 = [row for row in seqs.rows if row.get("id") == "m1"]
        assert len(m1) == 1, f"the mutation applied {len(m1)} times"


async def test_a_write_lock_held_elsewhere_delays_a_mutation_which_then_applies_once(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    gateway = await serve(path)
    try:
        outside = sqlite3.connect(path, isolation_level=None)

        @contextlib.asynccontextmanager
        async def locked() -> Any:
            outside.execute("BEGIN IMMEDIATE")  # another writer holds the write lock for seconds
            yield

        try:
            await mutate_through_the_fault(gateway, locked, lambda: outside.execute("COMMIT"))
        finally:
            outside.close()
    finally:
        await gateway.stop()


async def test_a_full_disk_delays_a_mutation_which_then_applies_once(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", "8m") as disk:
        gateway = await serve(disk / "app.db")
        try:
            filler: list[Path] = []

            @contextlib.asynccontextmanager
            async def full() -> Any:
                filler.append(fill(disk))
                yield

            await mutate_through_the_fault(gateway, full, lambda: filler[0].unlink())
        finally:
            await gateway.stop()


async def test_a_trim_on_a_full_disk_is_on_healthz_and_the_next_one_trims_by_itself(tmp_path: Path) -> None:
    """Retention's trim refused by a full disk: /healthz says so (a warning, 200), it is counted, the
    log keeps every change; with room again the next trim removes them and /healthz is ok."""
    with small_filesystem(tmp_path / "small", "8m") as disk:
        log = SQLiteChangeLog(f"sqlite:///{disk / 'app.db'}", busy_timeout=0.2)
        await log.open()
        await create_demo_schema(log)
        gateway = RealtimeGateway(
            log, topics=["posts"], auth=AUTH, retention=Retention(max_rows=5, interval=3600)
        )
        await gateway.start(port=0)
        try:
            for i in range(40):
                await log.execute("INSERT INTO posts (id, title) VALUES (?, ?)", f"p{i}", "x" * 2000)
            kept = await log.fetch("SELECT count(*) AS n FROM rxstore_changes")
            filler = fill(disk)
            assert await gateway.trimmer.trim() == 0
            body = await healthz(gateway)
            assert body["http_status"] == 200 and body["writes"] != "ok", body
            assert "trimming the change log" in body["writes"]["error"], body
            assert any("takes no writes" in w for w in body["warnings"]), body
            assert write_faults(gateway) == 1
            assert await log.fetch("SELECT count(*) AS n FROM rxstore_changes") == kept  # nothing lost
            filler.unlink()
            assert await gateway.trimmer.trim() > 0
            assert (await healthz(gateway))["writes"] == "ok"
            assert (await log.fetch("SELECT count(*) AS n FROM rxstore_changes"))[0]["n"] <= 5
        finally:
            await gateway.stop()


@pytest.mark.postgres
async def test_a_read_only_postgresql_delays_a_mutation_which_then_applies_once(pg_dsn: str) -> None:
    """PostgreSQL refusing writes (the database made read-only and every session of it started
    anew): the log's own writes (capture, numbering) wait with the mutation; all resume after."""
    gateway = await start_gateway(pg_dsn)
    register_demo_mutations(gateway)
    database = pg_dsn.rsplit("/", 1)[1].split("?")[0]
    admin_dsn = pg_dsn.rsplit("/", 1)[0] + "/postgres"

    async def set_read_only(on: bool) -> None:
        admin = await asyncpg.connect(admin_dsn)
        try:
            value = "on" if on else "off"
            await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = {value}')
            await admin.execute(  # its sessions start anew, and read the setting
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await admin.close()

    @contextlib.asynccontextmanager
    async def read_only() -> Any:
        await set_read_only(True)
        yield

    ended: list[asyncio.Task[None]] = []
    try:
        await mutate_through_the_fault(
            gateway, read_only, lambda: ended.append(asyncio.ensure_future(set_read_only(False)))
        )
    finally:
        for task in ended:
            await task
        await gateway.stop()


@pytest.mark.postgres
async def test_the_log_table_locked_by_another_session_for_seconds_delays_changes_and_loses_none(
    pg_dsn: str,
) -> None:
    """Another session holds ``LOCK TABLE rxstore_changes IN ACCESS EXCLUSIVE MODE`` for 3 s while
    the application writes: the log's appends, numbering and reads wait; once the lock goes every
    change arrives once, in order, and the client equals the database (WAL and trigger capture)."""
    gateway = await start_gateway(pg_dsn)
    root, posts = root_for(gateway, "ann")
    seqs = SeqCounter(root)
    try:
        async with root:
            await root.live(timeout=10)
            await gateway.log.execute("INSERT INTO posts (id, title) VALUES ('before', 'x')")
            await wait_for(lambda: "before" in posts.value.rows, what="a change before the lock")
            locker = await asyncpg.connect(pg_dsn)
            writer = await asyncpg.connect(pg_dsn)
            try:
                lock = locker.transaction()
                await lock.start()
                await locker.execute("LOCK TABLE rxstore_changes IN ACCESS EXCLUSIVE MODE")
                # the application writes while it is held: with trigger capture its writes wait for
                # the lock; with WAL capture they commit and the capture's append waits
                writes = asyncio.ensure_future(
                    writer.execute(
                        "INSERT INTO posts (id, title) SELECT 'w' || i, 'during' FROM generate_series(0, 9) i"
                    )
                )
                await asyncio.sleep(3)  # the fault lasts 3 s (not a wait for a condition)
                await lock.commit()
                await asyncio.wait_for(writes, 10)
                for i in range(10, 20):
                    await writer.execute(f"INSERT INTO posts (id, title) VALUES ('w{i}', 'after')")
            finally:
                await locker.close()
                await writer.close()
            await wait_for(lambda: len(posts.value.rows) == 21, what="every change after the lock")
            assert {k: v for k, v in posts.value.rows.items()} == await all_posts(gateway.log)
            assert len(seqs.seen) == len(set(seqs.seen)) and seqs.seen == sorted(seqs.seen)
    finally:
        await gateway.stop()
