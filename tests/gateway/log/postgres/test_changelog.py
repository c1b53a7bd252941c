"""PostgresChangeLog against a real PostgreSQL server (tests/services.py): what only it does.

What every change log does is in tests/gateway/log/test_contract.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
import pytest

from rxstore.gateway.log.contract import LogSnapshot
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.log.postgres.changelog import SEQUENCER_LOCK_KEY, PostgresChangeLog
from rxstore.protocol.errors import NotConnected
from rxstore.protocol.events import Change, Op
from tests.services import PostgresServer, require_or_skip

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

ITEMS = """CREATE TABLE items (
    id text PRIMARY KEY,
    writer int NOT NULL DEFAULT 0,
    version int NOT NULL DEFAULT 1,
    payload text,
    score double precision,
    flag boolean
)"""


@pytest.fixture
async def log(pg_dsn: str) -> AsyncIterator[PostgresChangeLog]:
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    await log.execute(ITEMS)
    await log.watch("items")
    yield log
    await log.close()


async def read_all(log: PostgresChangeLog, after: int = 0) -> list[Change]:
    out: list[Change] = []
    while batch := await log.read(after, limit=1000):
        out += batch
        after = batch[-1].seq
    return out


async def tail(log: PostgresChangeLog, total: int, out: list[Change]) -> None:
    """Read until ``total`` changes arrived, checking seqs are gapless and increasing."""
    after = 0
    while len(out) < total:
        batch = await log.read(after, limit=1000)
        if not batch:
            await log.wait(1.0)
            continue
        for change in batch:
            assert change.seq == after + 1, f"gap or repeat: {change.seq} after {after}"
            after = change.seq
        out += batch


async def read_soon(log: PostgresChangeLog, after: int, timeout: float = 5) -> list[Change]:
    """Read, waiting (up to ``timeout``) until something arrives."""
    async with asyncio.timeout(timeout):
        while not (changes := await log.read(after)):
            await log.wait(timeout)
    return changes


def replay(
    changes: list[Change], state: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Mapping[str, Any]]:
    rows = dict(state or {})
    for change in changes:
        if change.op is Op.DELETE:
            del rows[change.key("id")]
        else:
            assert change.record is not None
            rows[change.key("id")] = change.record
    return rows


async def table_rows(log: PostgresChangeLog) -> dict[str, Mapping[str, Any]]:
    rows = await log.fetch("SELECT to_jsonb(t) AS row FROM items t")
    return {r["row"]["id"]: r["row"] for r in rows}


async def run_writer(dsn: str, writer: int, changes: int, rows: int, *, late: float = 0.15) -> None:
    """Insert/update/delete this writer's own rows in small transactions.

    Each row's ``version`` goes up by one on every INSERT and UPDATE (a DELETE
    keeps it), so a tailer can check it saw each row's changes once and in order.
    Some transactions sleep before COMMIT so that they commit late.
    """
    rng = random.Random(writer)
    conn = await asyncpg.connect(dsn)
    versions: dict[str, int] = {}
    alive: set[str] = set()
    done = 0
    try:
        while done < changes:
            n = min(rng.randint(1, 5), changes - done)
            async with conn.transaction():
                for _ in range(n):
                    rid = f"w{writer:02d}r{rng.randrange(rows):03d}"
                    if rid not in alive:
                        version = versions.get(rid, 0) + 1
                        await conn.execute(
                            "INSERT INTO items (id, writer, version, payload) VALUES ($1, $2, $3, $4)",
                            rid,
                            writer,
                            version,
                            f"{rid}@{version}",
                        )
                        alive.add(rid)
                        versions[rid] = version
                    elif rng.random() < 0.1:
                        await conn.execute("DELETE FROM items WHERE id = $1", rid)
                        alive.discard(rid)
                    else:
                        version = versions[rid] + 1
                        await conn.execute(
                            "UPDATE items SET version = $2, payload = $3 WHERE id = $1",
                            rid,
                            version,
                            f"{rid}@{version}",
                        )
                        versions[rid] = version
                if rng.random() < late:
                    await asyncio.sleep(rng.uniform(0.01, 0.2))  # hold the transaction open
            done += n
            if rng.random() < 0.3:
                await asyncio.sleep(rng.uniform(0, 0.005))
    finally:
        await conn.close()


def check_per_row_order(changes: list[Change]) -> None:
    """Every row's changes arrive once each, in the order they were made."""
    version: dict[str, int] = {}
    alive: set[str] = set()
    for change in changes:
        rid = change.key("id")
        last = version.get(rid, 0)
        if change.op is Op.INSERT:
            assert rid not in alive and change.record is not None
            assert change.record["version"] == last + 1, (rid, change)
            alive.add(rid)
        elif change.op is Op.UPDATE:
            assert rid in alive and change.old is not None and change.record is not None
            assert change.old["version"] == last and change.record["version"] == last + 1, change
        else:
            assert rid in alive and change.old is not None
            assert change.old["version"] == last, change
            alive.discard(rid)
        if change.record is not None:
            version[rid] = change.record["version"]


# -- basics -------------------------------------------------------------------


async def test_open_is_idempotent_and_close_releases_every_connection_and_task(
    pg_dsn: str,
) -> None:
    tasks_before = asyncio.all_tasks()
    log = open_change_log(pg_dsn)
    assert isinstance(log, PostgresChangeLog)
    assert not log.healthy
    await log.open()
    await log.open()
    assert log.healthy
    assert await log.head() == 0
    assert await log.horizon() == 0
    assert await log.read(0) == []
    await log.close()
    await log.close()
    assert not log.healthy
    assert asyncio.all_tasks() <= tasks_before
    conn = await asyncpg.connect(pg_dsn)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'rxstore%'"
        )
    finally:
        await conn.close()
    assert left == 0
    with pytest.raises(NotConnected):
        await log.read(0)


async def test_open_of_an_unreachable_database_raises_not_connected() -> None:
    from tests.services import free_port

    log = PostgresChangeLog(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=2)
    with pytest.raises(NotConnected, match="cannot connect"):
        await log.open()
    assert not log.healthy


async def test_truncate_is_captured_as_one_delete_per_row(log: PostgresChangeLog) -> None:
    for rid in ("a", "b", "c"):
        await log.execute("INSERT INTO items (id) VALUES ($1)", rid)
    await log.execute("TRUNCATE items")
    changes = await log.read(3)
    assert sorted((c.op, c.key("id")) for c in changes) == [(Op.DELETE, r) for r in ("a", "b", "c")]
    assert all(c.topic == "items" and c.record is None for c in changes)
    await log.execute("INSERT INTO items (id) VALUES ('d')")  # the table stays watched
    assert [(c.op, c.key("id")) for c in await log.read(6)] == [(Op.INSERT, "d")]


async def test_fetch_returns_dicts_with_json_decoded(log: PostgresChangeLog) -> None:
    await log.execute("INSERT INTO items (id, payload) VALUES ('a', 'p')")
    rows = await log.fetch("SELECT id, payload, jsonb_build_object('k', 1) AS j FROM items")
    assert rows == [{"id": "a", "payload": "p", "j": {"k": 1}}]


async def test_rows_written_while_no_gateway_ran_are_sequenced_at_open(pg_dsn: str) -> None:
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    await log.execute(ITEMS)
    await log.watch("items")
    await log.close()
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("INSERT INTO items (id) SELECT 'r' || g FROM generate_series(1, 5) g")
    await conn.close()
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    try:
        log._dirty = False  # prove that open() itself sequenced them
        assert [c.seq for c in await log.read(0)] == [1, 2, 3, 4, 5]
    finally:
        await log.close()


async def test_a_write_by_another_connection_wakes_wait_via_notify(pg_dsn: str) -> None:
    log = PostgresChangeLog(pg_dsn, poll_interval=30)  # only NOTIFY can wake it in time
    await log.open()
    try:
        await log.execute(ITEMS)
        await log.watch("items")
        assert await log.read(0) == []
        waiter = asyncio.create_task(log.wait(10))
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute("INSERT INTO items (id) VALUES ('ext')")
        committed = time.monotonic()
        await conn.close()
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - committed < 3  # the poll is 30 s, the wait 10 s
        [change] = await log.read(0)
        assert change.record is not None and change.record["id"] == "ext"
    finally:
        await log.close()


async def test_a_late_committing_transaction_is_not_skipped(log: PostgresChangeLog) -> None:
    """A change inserted first but committed last gets the later seq, not a skipped one."""
    early = await asyncpg.connect(log.url)
    late = await asyncpg.connect(log.url)
    try:
        tx = late.transaction()
        await tx.start()
        await late.execute("INSERT INTO items (id) VALUES ('late')")  # takes the lower id
        await early.execute("INSERT INTO items (id) VALUES ('early')")
        seen = await read_soon(log, 0)
        assert [(c.seq, c.key("id")) for c in seen] == [(1, "early")]
        await tx.commit()
        assert [(c.seq, c.key("id")) for c in await read_soon(log, 1)] == [(2, "late")]
    finally:
        await early.close()
        await late.close()


async def test_a_write_through_execute_is_read_even_while_a_sequencer_run_is_in_flight(
    log: PostgresChangeLog,
) -> None:
    """read() waits for a background sequencer run that started before it (not yet committed)."""
    if log.capture == "wal":
        pytest.skip("trigger capture only: WAL capture numbers rows as it appends them")
    blocker = await asyncpg.connect(log.url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT * FROM rxstore_head FOR UPDATE")  # stalls the sequencer
        await log.execute("INSERT INTO items (id) VALUES ('a')")  # kicks the background run
        async with asyncio.timeout(5):
            while not log._seq_lock.locked():  # the run is in flight, stalled
                await asyncio.sleep(0.01)
        # The race window: before our write's own NOTIFY marks the log dirty again.
        log._dirty = False
        reader = asyncio.create_task(log.read(0))
        await asyncio.sleep(0.1)
        assert not reader.done()
        await tx.rollback()
        changes = await asyncio.wait_for(reader, 5)
    finally:
        await blocker.close()
    assert [(c.seq, c.key("id")) for c in changes] == [(1, "a")]


# -- the concurrency proof ------------------------------------------------------


async def test_concurrent_writers_are_tailed_exactly_once_gapless_and_in_row_order(
    pg_dsn: str,
) -> None:
    """20 writers x 500 changes, many committing late, tailed by two gateway nodes.

    Each node's tailer gets all 10 000 changes exactly once, with gapless,
    strictly increasing seqs; both nodes see the same log; every row's changes
    arrive in order; replaying the log gives the table.
    """
    writers, per_writer = 20, 500
    total = writers * per_writer
    node_a = PostgresChangeLog(pg_dsn)
    node_b = PostgresChangeLog(pg_dsn)
    await node_a.open()
    await node_b.open()
    try:
        await node_a.execute(ITEMS)
        await node_a.watch("items")
        seen_a: list[Change] = []
        seen_b: list[Change] = []
        async with asyncio.timeout(50):
            await asyncio.gather(
                tail(node_a, total, seen_a),
                tail(node_b, total, seen_b),
                *(run_writer(pg_dsn, w, per_writer, rows=25) for w in range(writers)),
            )
        assert len(seen_a) == total
        assert [c.seq for c in seen_a] == list(range(1, total + 1))
        assert seen_a == seen_b
        keys = {(c.key("id"), c.op, (c.record or c.old or {})["version"]) for c in seen_a}
        assert len(keys) == total  # no change delivered twice
        check_per_row_order(seen_a)
        assert replay(seen_a) == await table_rows(node_a)
        assert await node_a.read(total) == []
        if node_a.capture == "trigger":
            # Commits really happened out of insertion order (a naive id/serial tailer would skip);
            # WAL capture appends in commit order.
            reordered = await node_a.fetch(
                "SELECT count(*) AS n FROM (SELECT seq, max(seq) OVER (ORDER BY id) AS m "
                "FROM rxstore_changes) x WHERE seq < m"
            )
            assert reordered[0]["n"] > 0
    finally:
        await node_a.close()
        await node_b.close()


# -- snapshots ------------------------------------------------------------------


def check_snapshot(snap: LogSnapshot, changes: list[Change], final: Mapping[str, Any]) -> None:
    """The snapshot is the log up to seq plus skip; then seq+ minus skip gives ``final``."""
    assert all(s > snap.seq for s in snap.skip)
    rows = {r["id"]: r for r in snap.tables["items"]}
    reflected = [c for c in changes if c.seq <= snap.seq or c.seq in snap.skip]
    assert replay(reflected) == rows
    assert replay([c for c in changes if c.seq > snap.seq and c.seq not in snap.skip], rows) == final


async def test_snapshot_skips_changes_committed_before_it_but_sequenced_after(
    log: PostgresChangeLog,
) -> None:
    """Deterministic: the sequencer is blocked while the snapshot reads."""
    await log.execute("INSERT INTO items (id) VALUES ('before')")
    assert await log.head() == 1
    blocker = await asyncpg.connect(log.url)
    writer = await asyncpg.connect(log.url)
    try:
        await blocker.execute("SELECT pg_advisory_lock($1)", SEQUENCER_LOCK_KEY)
        await writer.execute("INSERT INTO items (id) VALUES ('x'), ('y')")
        await writer.execute("UPDATE items SET version = 2 WHERE id = 'before'")
        has_read = asyncio.Event()
        skip = log._skip

        async def spy(*args: Any) -> frozenset[int]:
            has_read.set()  # the snapshot's rows are read; now it waits for their changes' seqs
            return await skip(*args)

        setattr(log, "_skip", spy)  # noqa: B010  (an instance attribute over the method)
        snapshot = asyncio.create_task(log.snapshot(["items"]))
        await asyncio.wait_for(has_read.wait(), 5)
        await asyncio.sleep(0.1)
        # x, y and before@2 cannot get seqs while the lock is held (nor be captured: the WAL
        # capture numbers what it appends, under the same lock)
        assert not snapshot.done()
        await writer.execute("INSERT INTO items (id) VALUES ('after')")
        await blocker.execute("SELECT pg_advisory_unlock($1)", SEQUENCER_LOCK_KEY)
        snap = await asyncio.wait_for(snapshot, 5)
        await log.wait_captured()  # WAL capture: 'after' (written by another connection) is in the log
    finally:
        await blocker.close()
        await writer.close()
    # x, y and before@2 got seqs 2-4, right after the head the snapshot read (1): it is at 4.
    assert snap.seq == 4
    assert snap.skip == frozenset()
    assert sorted(r["id"] for r in snap.tables["items"]) == ["before", "x", "y"]
    changes = await read_all(log)
    assert [c.key("id") for c in changes] == ["before", "x", "y", "before", "after"]
    check_snapshot(snap, changes, await table_rows(log))


async def test_a_snapshot_reader_of_skipped_changes_is_at_the_last_of_them(log: PostgresChangeLog) -> None:
    """The last change reflected but sequenced after the read: the reader's seq (and its ``ts``,
    the resume token's half) is that change's, so a client starting from it is at the head."""
    await log.execute("INSERT INTO items (id) VALUES ('before')")
    blocker = await asyncpg.connect(log.url)
    try:
        await blocker.execute("SELECT pg_advisory_lock($1)", SEQUENCER_LOCK_KEY)
        await blocker.execute("INSERT INTO items (id) VALUES ('last')")
        read_skip = log._skip

        async def unblock_then_wait(*args: Any) -> frozenset[int]:  # rows read: let "last" be numbered
            await blocker.execute("SELECT pg_advisory_unlock($1)", SEQUENCER_LOCK_KEY)
            return await read_skip(*args)

        setattr(log, "_skip", unblock_then_wait)  # noqa: B010  (an instance attribute over the method)
        async with log.snapshot_reader(["items"]) as reader:
            seq, skip, ts = reader.seq, reader.skip, reader.ts
            rows, _ = await reader.fetch("items", 10)
    finally:
        await blocker.close()
    assert (seq, skip) == (2, frozenset()) and await log.head() == 2
    assert ts is not None and ts == await log.ts_at(2)
    assert sorted(r["id"] for r in rows) == ["before", "last"]


async def test_snapshot_plus_changes_after_it_minus_skip_reproduce_the_table_under_writes(
    log: PostgresChangeLog,
) -> None:
    writers, per_writer = 6, 300
    snaps: list[LogSnapshot] = []
    done = asyncio.Event()

    async def snapshotter() -> None:
        while not done.is_set():
            snaps.append(await log.snapshot(["items"]))
            await asyncio.sleep(0.02)

    async def write_all() -> None:
        await asyncio.gather(*(run_writer(log.url, w, per_writer, rows=15) for w in range(writers)))
        done.set()

    async with asyncio.timeout(40):
        await asyncio.gather(snapshotter(), write_all())
        changes: list[Change] = []
        await tail(log, writers * per_writer, changes)
    final = await table_rows(log)
    assert replay(changes) == final
    assert len(snaps) > 10
    for snap in snaps:
        check_snapshot(snap, changes, final)


# -- database restarts ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_database_restart_marks_unhealthy_then_reconnects_and_is_not_deaf(mode: str) -> None:
    reason = PostgresServer.missing()
    if reason:
        require_or_skip(reason)
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    try:
        dsn = await asyncio.to_thread(server.create_database, "restart")
        # A long poll: after the restart only NOTIFY can wake the tailer quickly.
        log = PostgresChangeLog(dsn, poll_interval=30, max_backoff=0.5)
        await log.open()
        try:
            await log.execute(ITEMS)
            await log.watch("items")
            await log.execute("INSERT INTO items (id) VALUES ('before')")
            assert [c.seq for c in await log.read(0)] == [1]

            health: list[bool] = [log.healthy]

            async def monitor() -> None:
                while True:
                    if log.healthy != health[-1]:
                        health.append(log.healthy)
                    await asyncio.sleep(0.005)

            watcher = asyncio.create_task(monitor())
            await asyncio.to_thread(server.restart, mode)  # type: ignore[arg-type]
            async with asyncio.timeout(20):
                while not (len(health) >= 3 and log.healthy):
                    await asyncio.sleep(0.01)
            watcher.cancel()
            assert health[:3] == [True, False, True]

            # Written by someone else after the restart: NOTIFY on the new connection wakes us.
            await log.read(1)
            conn = await asyncpg.connect(dsn)
            await conn.execute("INSERT INTO items (id) VALUES ('after')")
            await conn.close()
            committed = time.monotonic()
            changes: list[Change] = []
            while not changes and time.monotonic() - committed < 10:
                await log.wait(10)  # a wakeup of the reconnection may come first: read until it is there
                changes = await log.read(1)
            assert time.monotonic() - committed < 5  # the poll is 30 s, the wait 10 s
            assert [(c.seq, c.key("id")) for c in changes] == [(2, "after")]
            await log.execute("UPDATE items SET version = 2 WHERE id = 'after'")
            assert [c.seq for c in await log.read(2)] == [3]
        finally:
            await log.close()
    finally:
        await asyncio.to_thread(server.close)


# -- mutations --------------------------------------------------------------------


async def test_concurrent_duplicates_of_a_mutation_apply_it_exactly_once(log: PostgresChangeLog) -> None:
    statements = [("UPDATE items SET version = version + 1 WHERE id = 'a'", ())]
    await log.execute("INSERT INTO items (id) VALUES ('a')")
    results = await asyncio.gather(*(log.apply_mutation("m1", "alice", statements) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert (await log.fetch("SELECT version FROM items"))[0]["version"] == 2


async def test_unflushed_commits_are_captured_later_never_skipped(pg_dsn: str) -> None:
    """WAL capture reads up to the WAL *flushed*: with ``synchronous_commit = off`` commits return
    before their WAL is flushed, and a capture that recorded the written position as done skipped
    the transactions in between for good (a quarter of a benchmark's rows)."""
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    try:
        if log.capture != "wal":
            pytest.skip("WAL capture only (the server has no wal_level=logical)")
        await log.execute(ITEMS)
        await log.watch("items")

        async def writer(w: int) -> None:
            conn = await asyncpg.connect(pg_dsn)
            try:
                await conn.execute("SET synchronous_commit = off")
                for i in range(300):
                    await conn.execute("INSERT INTO items (id) VALUES ($1)", f"w{w}-{i}")
            finally:
                await conn.close()

        await asyncio.gather(*(writer(w) for w in range(4)))
        await log.wait_captured()
        changes = await read_all(log)
        assert len(changes) == 1200 and len({c.key("id") for c in changes}) == 1200
        assert [c.seq for c in changes] == list(range(1, 1201))
    finally:
        await log.close()
