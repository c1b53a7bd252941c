"""One huge transaction through the PostgreSQL change log (issue 28, item 3), against a real server.

The WAL capture holds at most about its ``batch`` of decoded changes, whatever a
transaction's size: the rest waits, in parts, in the capture connection's spool table, and
the transaction reaches the log in one commit (clients never see a part of it before the
rest is in the log). Trigger capture writes the rows inside the user's transaction; the
tests that do not look at the WAL capture run in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from rxstore.gateway.log.postgres.changelog import PostgresChangeLog
from rxstore.protocol.events import Op
from tests.gateway.log.postgres.test_changelog import read_all
from tests.pg_capture import capture_pid, syncrep_hold, wait_blocked_by
from tests.services import PostgresServer
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

ITEMS = "CREATE TABLE items (id text PRIMARY KEY, title text, body text, n int NOT NULL DEFAULT 0)"
FILL = (
    "INSERT INTO items (id, title, body) "
    "SELECT 'i' || x, 'item ' || x, repeat('b', 100) FROM generate_series(1, $1) x"
)
BATCH = 100
ROWS = 3000
MiB = 1024 * 1024
APPENDS = """
CREATE TABLE test_appends (xact xid8, rows bigint);
CREATE FUNCTION test_appended() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO test_appends SELECT pg_current_xact_id(), count(*) FROM appended;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER test_appended AFTER INSERT ON rxstore_changes
    REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION test_appended();
"""
"""The test's record of the transactions that append to the log (a statement trigger)."""


@contextlib.asynccontextmanager
async def items_log(dsn: str, rows: int, **options: Any) -> AsyncIterator[PostgresChangeLog]:
    """A log (``batch`` = :data:`BATCH`) watching ``items``, which holds ``rows`` rows not in the log."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(ITEMS)
        await conn.execute(FILL, rows)
    finally:
        await conn.close()
    log = PostgresChangeLog(dsn, batch=BATCH, **options)
    await log.open()
    try:
        await log.execute(APPENDS)
        await log.watch("items")
        yield log
    finally:
        await log.close()


async def update_all(dsn: str) -> None:
    """One statement, one transaction: every row of ``items`` updated (``n`` = 1)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE items SET n = n + 1")
    finally:
        await conn.close()


async def assert_logged_once_in_one_commit(dsn: str, log: PostgresChangeLog, rows: int) -> None:
    """The log holds the update of every row exactly once, seqs 1..rows, written by one transaction."""
    changes = await read_all(log)
    assert [c.seq for c in changes] == list(range(1, rows + 1))
    assert all(c.op is Op.UPDATE and (c.record or {})["n"] == 1 for c in changes)
    assert sorted(c.key("id") for c in changes) == sorted(f"i{x}" for x in range(1, rows + 1))
    conn = await asyncpg.connect(dsn)
    try:
        writers = await conn.fetchval("SELECT count(DISTINCT xact) FROM test_appends WHERE rows > 0")
    finally:
        await conn.close()
    assert writers == 1, "the transaction reached the log in more than one commit"


async def test_a_transaction_of_many_times_the_batch_is_logged_whole_once_in_one_commit(pg_dsn: str) -> None:
    """A one-statement UPDATE of 3,000 rows (30 times the batch) is in the log exactly once, in
    seq order, all of its rows written by one commit of the log (so no reader ever sees a part).
    With WAL capture, the capture held at most the batch in memory and spooled the rest."""
    async with items_log(pg_dsn, ROWS) as log:
        await update_all(pg_dsn)
        await log.wait_captured(timeout=60)
        await assert_logged_once_in_one_commit(pg_dsn, log, ROWS)
        status = log.capture_status
        if status["mode"] == "wal":
            capturer: Any = log._capturer  # the leader's own figures (this node leads: the only one)
            assert capturer.held_peak <= BATCH, f"{capturer.held_peak} changes held in memory"
            assert status["spooled_parts"] >= ROWS // BATCH - 1


async def test_big_rows_are_held_by_their_bytes_not_only_by_the_batch(pg_dsn: str, wal: None) -> None:
    """300 rows of 60 KB updated in one statement (about 18 MB of messages), with a batch of 100
    (6 MB of such messages) and ``part_bytes`` of 1 MiB: the capture held at most twice 1 MiB of
    messages (plus one message), spooled the rest, and logged the transaction whole, once."""
    rows = 300
    async with items_log(pg_dsn, rows, capture="wal") as log:
        capturer: Any = log._capturer  # the bound under test, set small (1 MiB instead of 16 MiB)
        capturer.part_bytes = MiB
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE items SET n = n + 1, body = repeat('x', 60000)")
        finally:
            await conn.close()
        await log.wait_captured(timeout=60)
        await assert_logged_once_in_one_commit(pg_dsn, log, rows)
        assert capturer.held_bytes_peak <= 2 * MiB + 64_000, f"{capturer.held_bytes_peak} bytes held"
        assert log.capture_status["spooled_parts"] >= 8


async def test_a_truncate_of_a_big_table_is_logged_whole_once_in_one_commit(pg_dsn: str) -> None:
    """TRUNCATE of a 3,000-row table: one DELETE per row, each once, all in one commit of the log.
    With WAL capture the rows travel in messages of 1,000 (no single huge value) and the capture
    held at most the batch plus one message's rows."""
    async with items_log(pg_dsn, ROWS) as log:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("TRUNCATE items")
        finally:
            await conn.close()
        await log.wait_captured(timeout=60)
        changes = await read_all(log)
        assert [c.seq for c in changes] == list(range(1, ROWS + 1))
        assert all(c.op is Op.DELETE and c.record is None for c in changes)
        assert sorted(c.key("id") for c in changes) == sorted(f"i{x}" for x in range(1, ROWS + 1))
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT count(DISTINCT xact) FROM test_appends WHERE rows > 0") == 1
        finally:
            await conn.close()
        if log.capture_status["mode"] == "wal":
            capturer: Any = log._capturer
            assert capturer.held_peak <= BATCH + 1000, f"{capturer.held_peak} changes held in memory"


async def test_small_transactions_around_a_huge_one_keep_their_commit_order(pg_dsn: str) -> None:
    """Single-row transactions committed before and after the huge one are in the log before and
    after it, in commit order, each once."""
    async with items_log(pg_dsn, ROWS) as log:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE items SET title = 'before' WHERE id = 'i1'")
            await conn.execute("UPDATE items SET n = n + 1")
            await conn.execute("UPDATE items SET title = 'after' WHERE id = 'i2'")
        finally:
            await conn.close()
        await log.wait_captured(timeout=60)
        changes = await read_all(log)
        assert len(changes) == ROWS + 2
        assert (changes[0].record or {})["title"] == "before"
        assert (changes[-1].record or {})["title"] == "after"
        assert [c.seq for c in changes] == list(range(1, ROWS + 3))
        assert all((c.record or {})["n"] == 1 for c in changes[1:-1])


@pytest.fixture
def wal(postgres: PostgresServer) -> None:
    """Skip unless the server can capture from the WAL (``wal_level=logical``)."""
    level = postgres.psql("SHOW wal_level").strip()
    if level != "logical":
        pytest.skip(f"WAL capture needs wal_level=logical; this server runs wal_level={level}")


async def spooling(admin: Any, pid: int) -> bool:
    """Whether backend ``pid`` (the capture) is in a pass that has spooled and not begun appending.

    Its transaction holds a lock on its spool table once it wrote there, and one on
    ``rxstore_changes`` once it appends (locks last until the transaction ends).
    """
    locked = {
        row["relname"]
        for row in await admin.fetch(
            "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.pid = $1 AND l.mode = 'RowExclusiveLock'",
            pid,
        )
    }
    return "rxstore_capture_spool" in locked and "rxstore_changes" not in locked


async def has_leader(admin: Any) -> bool:
    return await capture_pid(admin) is not None


async def killed(admin: Any, pid: int, *, gone: bool = True) -> None:
    """Terminate backend ``pid`` (and wait until it is ``gone``)."""
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    if not gone:
        return
    await wait_for(
        lambda: admin.fetchval("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid),
        10,
        "the killed capture backend gone",
    )


@contextlib.asynccontextmanager
async def capture_row_held(dsn: str, admin: Any, pid: int) -> AsyncIterator[asyncpg.Connection[Any]]:
    """Hold rxstore_capture's row while the body runs: the capture's pass waits on it at its last step."""
    holder = await asyncpg.connect(dsn)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT * FROM rxstore_capture FOR UPDATE")
        yield holder
    finally:
        await holder.close()  # rolls back, if the body did not


async def kill_at(dsn: str, admin: Any, pid: int, at: str) -> None:
    """Update every row of ``items`` and kill the capture's backend ``pid`` at the instant ``at``."""
    if at == "spooling":
        await update_all(dsn)
        await wait_for(lambda: spooling(admin, pid), 60, "the capture spooling the transaction")
        await killed(admin, pid)
        return
    async with capture_row_held(dsn, admin, pid) as holder:
        holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
        await update_all(dsn)
        await wait_blocked_by(admin, pid, holder_pid, "the capture's pass at its last step", 60)
        if at == "before-commit":
            await killed(admin, pid)
            return
        # after-commit: commits wait for a synchronous standby that never comes; let the pass
        # commit (locally) into that wait, kill it there: the slot was not advanced.
        other = await asyncpg.connect(dsn)
        try:
            hold = syncrep_hold(other, pid, timeout=60)
            entered = asyncio.create_task(hold.__aenter__())
            await wait_for(
                lambda: admin.fetchval(
                    "SELECT setting <> '' FROM pg_settings WHERE name = 'synchronous_standby_names'"
                ),
                10,
                "synchronous_standby_names set",
            )
            await holder.execute("ROLLBACK")
            await entered
            try:
                await killed(admin, pid, gone=False)  # it ends once the wait is called off
            finally:
                await hold.__aexit__(None, None, None)
        finally:
            await other.close()


@pytest.mark.parametrize("at", ["spooling", "before-commit", "after-commit"])
async def test_a_capture_killed_in_a_huge_transaction_loses_and_doubles_nothing(
    pg_dsn: str, wal: None, at: str
) -> None:
    """The capture's backend is killed (as a gateway kill -9 kills it) while it spools a huge
    transaction, or with the whole of it appended but not committed (waiting on rxstore_capture's
    row), or after its commit and before the slot was advanced (a synchronous-replication wait):
    the next capture (another node) appends it exactly once, in one commit."""
    rows = 20_000 if at == "spooling" else ROWS  # long enough a pass to be seen spooling
    async with items_log(pg_dsn, rows, capture="wal") as a:
        b = PostgresChangeLog(pg_dsn, batch=BATCH, capture="wal")
        await b.open()
        admin = await asyncpg.connect(pg_dsn)
        try:
            pid = await capture_pid(admin)
            assert pid is not None
            await kill_at(pg_dsn, admin, pid, at)
            await wait_for(lambda: has_leader(admin), 20, "a capture leader again")
            await b.wait_captured(timeout=90)
            await a.wait_captured(timeout=90)
            await assert_logged_once_in_one_commit(pg_dsn, b, rows)
        finally:
            await admin.close()
            await b.close()


async def test_the_spool_is_the_capture_connections_own(pg_dsn: str, wal: None) -> None:
    """The spool is a temporary table of the capture's connection: other sessions see none."""
    async with items_log(pg_dsn, 10, capture="wal") as log:
        await log.wait_captured()
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT to_regclass('rxstore_capture_spool')") is None
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relname = 'rxstore_capture_spool' "
                "AND relpersistence = 't'"
            )
        finally:
            await conn.close()
