"""WAL capture of the PostgreSQL change log (issue 14), against a real server (tests/services.py).

Each test states what it proves. WAL-only tests skip (with the reason) when the
server's ``wal_level`` is not ``logical`` (``RXSTORE_TEST_WAL_LEVEL=replica``,
the trigger pass of .ci/run).
"""

from __future__ import annotations

import asyncio
import random
import string
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from rxstore.gateway.log.postgres.changelog import PostgresChangeLog
from rxstore.protocol.events import Op
from tests.gateway.log.postgres.test_changelog import read_all
from tests.pg_capture import capture_pid, syncrep_hold, wait_blocked_by
from tests.services import PostgresServer
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

ITEMS = "CREATE TABLE items (id text PRIMARY KEY, title text, body text, n int NOT NULL DEFAULT 0)"


# -- helpers ----------------------------------------------------------------------


@pytest.fixture
def wal(postgres: PostgresServer) -> None:
    """Skip unless the server can capture from the WAL (``wal_level=logical``)."""
    level = postgres.psql("SHOW wal_level").strip()
    if level != "logical":
        pytest.skip(f"WAL capture needs wal_level=logical; this server runs wal_level={level}")


@pytest.fixture
def other_dsn(postgres: PostgresServer) -> Iterator[str]:
    """A second fresh database on the same server (e.g. for a trigger-mode log to compare with)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    dsn = postgres.create_database(name)
    yield dsn
    if postgres.running:
        postgres.drop_database(name)


@pytest.fixture
async def log(pg_dsn: str, wal: None) -> AsyncIterator[PostgresChangeLog]:
    """A WAL-mode log watching ``items`` (full old rows)."""
    log = PostgresChangeLog(pg_dsn, capture="wal")
    await log.open()
    await log.execute(ITEMS)
    await log.watch("items")
    yield log
    await log.close()


async def raw_log(dsn: str) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """The log as stored: ``(topic, op, record text, old text, mutation)`` in seq order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT topic, op, record::text, old::text, mutation FROM rxstore_changes ORDER BY seq"
        )
    finally:
        await conn.close()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def scalar(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


# -- mode choice ------------------------------------------------------------------


async def test_auto_captures_from_the_wal_when_the_server_has_wal_level_logical(
    pg_dsn: str, wal: None
) -> None:
    """capture="auto" (the default) on a wal_level=logical server gives a WAL log, and says why."""
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    try:
        assert log.capture == "wal"
        assert "wal_level=logical" in log.capture_reason
    finally:
        await log.close()


async def test_auto_falls_back_to_triggers_when_the_server_is_not_logical(
    pg_dsn: str, other_dsn: str, postgres: PostgresServer
) -> None:
    """capture="auto" on a server without wal_level=logical gives a trigger log and names the
    setting; a new log asked for capture="wal" there is refused, naming the setting too."""
    level = postgres.psql("SHOW wal_level").strip()
    if level == "logical":
        pytest.skip("this server has wal_level=logical (the replica pass of .ci/run runs this test)")
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    try:
        assert log.capture == "trigger"
        assert f"wal_level={level}" in log.capture_reason
    finally:
        await log.close()
    wal = PostgresChangeLog(other_dsn, capture="wal")
    with pytest.raises(ValueError, match=f"cannot capture from the WAL: .*wal_level={level}"):
        await wal.open()
    await wal.close()


async def test_trigger_mode_when_asked_installs_the_row_capture_trigger(pg_dsn: str) -> None:
    """capture="trigger" gives a trigger log on any server: watch() installs the rxstore_capture row
    trigger (and the TRUNCATE one), and a write is in the log when its transaction commits."""
    log = PostgresChangeLog(pg_dsn, capture="trigger")
    await log.open()
    try:
        assert log.capture == "trigger"
        await log.execute(ITEMS)
        await log.watch("items")
        triggers = await log.fetch(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal ORDER BY 1"
        )
        assert [t["tgname"] for t in triggers] == ["rxstore_capture", "rxstore_capture_truncate"]
        assert not log.capture_leader
        await scalar(pg_dsn, "INSERT INTO items (id) VALUES ('a') RETURNING 1")
        assert [(c.op, c.key("id")) for c in await log.read(0)] == [(Op.INSERT, "a")]
    finally:
        await log.close()


@pytest.mark.parametrize("made_with", ["wal", "trigger"])
async def test_a_log_keeps_its_mode_when_reopened_with_auto(pg_dsn: str, wal: None, made_with: str) -> None:
    """A log made with one mode is reopened (capture="auto") in that mode, whatever the server allows."""
    first = PostgresChangeLog(pg_dsn, capture=made_with)  # type: ignore[arg-type]
    await first.open()
    await first.close()
    again = PostgresChangeLog(pg_dsn)
    await again.open()
    try:
        assert again.capture == made_with
    finally:
        await again.close()


async def test_opening_a_trigger_log_with_wal_raises_saying_how_to_open_it(pg_dsn: str, wal: None) -> None:
    """capture="wal" on a log made with triggers is refused with a ValueError that names the way
    to open it (capture='auto' or 'trigger'), and the log still opens that way afterwards."""
    first = PostgresChangeLog(pg_dsn, capture="trigger")
    await first.open()
    await first.close()
    with pytest.raises(ValueError, match=r"triggers.*capture='auto' or 'trigger'"):
        await PostgresChangeLog(pg_dsn, capture="wal").open()
    again = PostgresChangeLog(pg_dsn, capture="trigger")
    await again.open()
    await again.close()


async def test_wal_watch_sets_replica_identity_full_and_installs_no_row_trigger(
    log: PostgresChangeLog,
) -> None:
    """In WAL mode a watched table has no row trigger (only the TRUNCATE statement trigger) and
    REPLICA IDENTITY FULL (old rows whole in the WAL); it is in the publication."""
    rows = await log.fetch(
        "SELECT tgname, (tgtype & 1) = 1 AS per_row FROM pg_trigger "
        "WHERE tgrelid = 'items'::regclass AND NOT tgisinternal"
    )
    assert rows == [{"tgname": "rxstore_capture_truncate", "per_row": False}]
    identity = await log.fetch("SELECT relreplident::text AS r FROM pg_class WHERE oid = 'items'::regclass")
    assert identity == [{"r": "f"}]
    published = await log.fetch("SELECT tablename FROM pg_publication_tables WHERE pubname = 'rxstore'")
    assert published == [{"tablename": "items"}]


# -- the write path ---------------------------------------------------------------


async def test_a_users_insert_writes_nothing_to_the_log_inside_its_transaction(
    pg_dsn: str, other_dsn: str, wal: None
) -> None:
    """A user's INSERT in WAL mode neither writes nor locks rxstore_changes inside its own
    transaction (no trigger on the write path); the change is captured after it commits. The
    same check on a trigger-mode log sees the row inside the transaction (the check can fail)."""
    seen: dict[str, tuple[int, int]] = {}
    for mode, dsn in (("wal", pg_dsn), ("trigger", other_dsn)):
        log = PostgresChangeLog(dsn, capture=mode)  # type: ignore[arg-type]
        await log.open()
        try:
            await log.execute(ITEMS)
            await log.watch("items")
            user = await asyncpg.connect(dsn)
            try:
                async with user.transaction():
                    await user.execute("INSERT INTO items (id, title) VALUES ('a', 'x')")
                    locks = await user.fetchval(  # before anything here reads rxstore_changes
                        "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                        "AND relation = 'rxstore_changes'::regclass"
                    )
                    in_tx = await user.fetchval("SELECT count(*) FROM rxstore_changes")
                    seen[mode] = (in_tx, locks)
            finally:
                await user.close()
            await log.wait_captured()
            assert [(c.op, c.key("id")) for c in await log.read(0)] == [(Op.INSERT, "a")]
        finally:
            await log.close()
    assert seen["wal"] == (0, 0)
    assert seen["trigger"][0] == 1 and seen["trigger"][1] >= 1


# -- leadership and takeover --------------------------------------------------------

WRITERS = 4
PER_WRITER = 500
ROWS_PER_WRITER = 5
COUNTERS = "CREATE TABLE counters (id text PRIMARY KEY, writer int NOT NULL, n int NOT NULL)"


class GatedWriters:
    """``WRITERS`` plain asyncpg connections, each writing ``PER_WRITER`` single-row upserts
    (row ``w<w>r<i % 5>``, ``n = i``), never past ``allowed`` transactions each."""

    def __init__(self, dsn: str, allowed: int) -> None:
        self.dsn = dsn
        self.allowed = allowed
        self.written = [0] * WRITERS

    @property
    def total(self) -> int:
        return sum(self.written)

    async def run(self) -> None:
        await asyncio.gather(*(self._one(w) for w in range(WRITERS)))

    async def _one(self, w: int) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            for i in range(PER_WRITER):
                while i >= self.allowed:
                    await asyncio.sleep(0.01)
                await conn.execute(
                    "INSERT INTO counters (id, writer, n) VALUES ($1, $2, $3) "
                    "ON CONFLICT (id) DO UPDATE SET n = excluded.n",
                    f"w{w}r{i % ROWS_PER_WRITER}",
                    w,
                    i,
                )
                self.written[w] += 1
        finally:
            await conn.close()


async def new_leader(conn: Any, nodes: list[PostgresChangeLog], killed: int) -> float:
    """Wait until a capture backend other than ``killed`` holds the lock and a node says it leads."""

    async def taken() -> bool:
        pid = await capture_pid(conn)
        return pid is not None and pid != killed and sum(n.capture_leader for n in nodes) == 1

    return await wait_for(taken, 10, "a new capture leader")


async def terminate(conn: Any, pid: int) -> None:
    name = await conn.fetchval("SELECT application_name FROM pg_stat_activity WHERE pid = $1", pid)
    assert name == "rxstore-capture"
    assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)


async def test_one_capture_leader_and_takeover_loses_and_doubles_nothing(
    pg_dsn: str, wal: None, postgres: PostgresServer
) -> None:
    """Two nodes on one database: exactly one is the capture leader. While 4 writers write 2,000
    single-row transactions through plain connections, the leader's capture backend is
    terminated three times: at a random instant, in the middle of an append (blocked on
    rxstore_capture before its commit), and after an append committed but before the slot was
    advanced (its commit held in a synchronous-replication wait). Each time a leader is back
    within seconds, and after wait_captured() the log holds each write exactly once, seqs
    1..2000 gapless, every row's writes in the order they were made."""
    a = PostgresChangeLog(pg_dsn, capture="wal")
    b = PostgresChangeLog(pg_dsn, capture="wal")
    await a.open()
    await b.open()
    nodes = [a, b]
    admin = await asyncpg.connect(pg_dsn)
    writers = GatedWriters(pg_dsn, allowed=PER_WRITER * 3 // 4)
    task: asyncio.Task[None] | None = None
    takeovers: list[float] = []
    try:
        await a.execute(COUNTERS)
        await a.watch("counters")
        await wait_for(lambda: sum(n.capture_leader for n in nodes) == 1, 10, "one capture leader")
        assert sum(n.capture_leader for n in nodes) == 1
        pid = await capture_pid(admin)
        assert pid is not None
        task = asyncio.create_task(writers.run())

        # 1: at a random instant of the stream.
        await wait_for(lambda: writers.total >= 200, 20, "writers under way")
        await asyncio.sleep(random.uniform(0, 0.05))
        await terminate(admin, pid)
        takeovers.append(await new_leader(admin, nodes, pid))
        assert writers.total < WRITERS * PER_WRITER

        # 2: in the middle of an append: the test holds rxstore_capture's row, the capture's
        # append waits on it after inserting its changes, and is killed there (rolled back).
        await wait_for(lambda: writers.total >= 600, 20, "writers under way")
        pid = await capture_pid(admin)
        assert pid is not None
        holder = await asyncpg.connect(pg_dsn)
        try:
            async with holder.transaction():
                await holder.execute("SELECT * FROM rxstore_capture FOR UPDATE")
                holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
                await wait_blocked_by(
                    admin, pid, holder_pid, "the capture's append waiting on rxstore_capture"
                )
                await terminate(admin, pid)
                await wait_for(
                    lambda: admin.fetchval("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid),
                    10,
                    "the killed capture backend gone",
                )
        finally:
            await holder.close()
        takeovers.append(await new_leader(admin, nodes, pid))
        assert writers.total < WRITERS * PER_WRITER

        # 3: after an append committed, before the slot advanced: commits wait for a synchronous
        # standby that never comes; the capture is killed in that wait (committed locally).
        await wait_for(lambda: writers.total >= 1000, 20, "writers under way")
        pid = await capture_pid(admin)
        assert pid is not None
        async with syncrep_hold(admin, pid):
            await terminate(admin, pid)
        takeovers.append(await new_leader(admin, nodes, pid))
        assert writers.total < WRITERS * PER_WRITER

        writers.allowed = PER_WRITER
        await asyncio.wait_for(task, 40)
        await a.wait_captured()
        await b.wait_captured()
        assert sum(n.capture_leader for n in nodes) == 1

        changes = await read_all(b)
        total = WRITERS * PER_WRITER
        assert [c.seq for c in changes] == list(range(1, total + 1)), (
            f"{len(changes)} changes for {total} writes; takeovers {takeovers}"
        )
        written = [((c.record or {})["writer"], (c.record or {})["n"]) for c in changes]
        assert sorted(written) == [(w, i) for w in range(WRITERS) for i in range(PER_WRITER)]
        last: dict[str, int] = {}
        for change in changes:
            key, n = change.key("id"), (change.record or {})["n"]
            assert change.op is (Op.UPDATE if key in last else Op.INSERT)
            assert n > last.get(key, -1), f"{key}: n={n} after {last.get(key)}"
            last[key] = n
        assert max(takeovers) < 5.0
    finally:
        writers.allowed = PER_WRITER
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await admin.close()
        await a.close()
        await b.close()


# -- schema changes, tables watched late, TRUNCATE, mutations --------------------------


async def test_a_column_added_while_capturing_is_in_the_next_record(log: PostgresChangeLog) -> None:
    """ALTER TABLE ADD COLUMN while the log captures: the next insert's record has the new column
    with its value; the rows written before keep their shape."""
    await log.execute("INSERT INTO items (id, title) VALUES ('a', 'before')")
    await log.execute("ALTER TABLE items ADD COLUMN tag text DEFAULT 'd'")
    await log.execute("INSERT INTO items (id, title, tag) VALUES ('b', 'after', 'new')")
    await log.execute("UPDATE items SET title = 'again' WHERE id = 'a'")
    changes = await read_all(log)
    assert [(c.op, c.key("id")) for c in changes] == [(Op.INSERT, "a"), (Op.INSERT, "b"), (Op.UPDATE, "a")]
    assert "tag" not in (changes[0].record or {})
    assert (changes[1].record or {})["tag"] == "new"
    assert (changes[2].record or {})["tag"] == "d" and (changes[2].old or {})["tag"] == "d"


async def test_a_table_watched_after_rows_exist_snapshots_them_then_captures(log: PostgresChangeLog) -> None:
    """A table with rows, watched later: a snapshot has the rows (no change for them in the log),
    and changes after watch() are captured."""
    await log.execute("CREATE TABLE late (id text PRIMARY KEY, v int)")
    await log.execute("INSERT INTO late SELECT 'r' || g, g FROM generate_series(1, 50) g")
    await log.watch("late")
    snap = await log.snapshot(["late"])
    assert sorted(r["v"] for r in snap.tables["late"]) == list(range(1, 51))
    assert [c for c in await read_all(log) if c.topic == "late"] == []
    user = await asyncpg.connect(log.url)
    try:
        await user.execute("UPDATE late SET v = -v WHERE id = 'r7'")
        await user.execute("DELETE FROM late WHERE id = 'r8'")
    finally:
        await user.close()
    await log.wait_captured()
    changes = [c for c in await read_all(log, snap.seq) if c.topic == "late"]
    assert [(c.op, c.key("id")) for c in changes] == [(Op.UPDATE, "r7"), (Op.DELETE, "r8")]
    assert changes[0].old == {"id": "r7", "v": 7} and changes[0].record == {"id": "r7", "v": -7}
    assert changes[1].old == {"id": "r8", "v": 8}


async def test_truncate_in_a_mutation_is_one_delete_per_row_in_transaction_order(
    log: PostgresChangeLog,
) -> None:
    """A mutation that inserts, TRUNCATEs and inserts again is logged in that order: the TRUNCATE
    as one DELETE per removed row with the whole old row (including the row the same
    transaction inserted), and every change of the mutation carries its id."""
    await log.execute("INSERT INTO items (id, title, n) VALUES ('a', 'A', 1), ('b', 'B', 2)")
    applied = await log.apply_mutation(
        "m-trunc",
        "alice",
        [
            ("INSERT INTO items (id, title, n) VALUES ('c', 'C', 3)", ()),
            ("TRUNCATE items", ()),
            ("INSERT INTO items (id, title, n) VALUES ('d', 'D', 4)", ()),
            ("UPDATE items SET n = 5 WHERE id = 'd'", ()),
        ],
    )
    assert applied
    changes = (await read_all(log))[2:]
    assert [(c.op, c.key("id")) for c in changes[:1]] == [(Op.INSERT, "c")]
    deletes = changes[1:4]
    assert all(c.op is Op.DELETE and c.record is None for c in deletes)
    assert sorted((c.old or {})["id"] for c in deletes) == ["a", "b", "c"]
    whole = {(c.old or {})["id"]: c.old for c in deletes}
    assert whole["a"] == {"id": "a", "title": "A", "body": None, "n": 1}
    assert whole["c"] == {"id": "c", "title": "C", "body": None, "n": 3}
    assert [(c.op, c.key("id")) for c in changes[4:]] == [(Op.INSERT, "d"), (Op.UPDATE, "d")]
    assert len(changes) == 6
    assert {c.mutation for c in changes} == {"m-trunc"}
    assert {c.mutation for c in (await read_all(log))[:2]} == {None}


# -- old="key" --------------------------------------------------------------------


async def test_old_key_leaves_the_default_identity_and_logs_the_key_alone(pg_dsn: str, wal: None) -> None:
    """watch(old="key") in WAL mode leaves REPLICA IDENTITY DEFAULT, and a DELETE's (and a
    key-changing UPDATE's) ``old`` is the key alone, while records stay whole."""
    log = PostgresChangeLog(pg_dsn, capture="wal")
    await log.open()
    try:
        await log.execute(ITEMS)
        await log.watch("items", old="key")
        identity = await log.fetch(
            "SELECT relreplident::text AS r FROM pg_class WHERE oid = 'items'::regclass"
        )
        assert identity == [{"r": "d"}]
        await log.execute("INSERT INTO items (id, title, n) VALUES ('a', 'A', 1)")
        await log.execute("UPDATE items SET id = 'b' WHERE id = 'a'")
        await log.execute("DELETE FROM items WHERE id = 'b'")
        changes = await read_all(log)
        assert [c.op for c in changes] == [Op.INSERT, Op.UPDATE, Op.DELETE]
        assert changes[1].record == {"id": "b", "title": "A", "body": None, "n": 1}
        assert changes[1].old == {"id": "a"}
        assert changes[2].old == {"id": "b"} and changes[2].record is None
    finally:
        await log.close()


def incompressible(size: int, seed: int) -> str:
    """Text PostgreSQL cannot compress below its TOAST threshold (stored out of line)."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


@pytest.mark.parametrize(
    "old",
    [
        "full",
        pytest.param(
            "key",
            marks=pytest.mark.xfail(
                strict=True,
                reason="bug: with REPLICA IDENTITY DEFAULT the WAL has no old tuple to fill an "
                "unchanged TOASTed column in (pgoutput sends 'u'): the record gets NULL for it",
            ),
        ),
    ],
)
async def test_an_update_keeps_an_unchanged_out_of_line_value_in_the_record(
    pg_dsn: str, wal: None, old: str
) -> None:
    """An UPDATE that leaves a large (TOASTed, out-of-line) column alone still logs the whole new
    row: the WAL does not carry the unchanged value, the capture must not turn it into NULL."""
    log = PostgresChangeLog(pg_dsn, capture="wal")
    await log.open()
    try:
        await log.execute(ITEMS)
        await log.watch("items", old=old)
        body = incompressible(20_000, seed=1)
        await log.execute("INSERT INTO items (id, title, body) VALUES ('a', 'A', $1)", body)
        await log.execute("UPDATE items SET title = 'B' WHERE id = 'a'")
        changes = await read_all(log)
        assert [c.op for c in changes] == [Op.INSERT, Op.UPDATE]
        record = changes[1].record or {}
        assert record["title"] == "B"
        assert record["body"] == body, f"body is {str(record['body'])[:40]!r}"
    finally:
        await log.close()


# -- value round trips: WAL mode writes what the trigger writes --------------------------

TYPES = """
CREATE TYPE pair AS (x int, y text);
CREATE TABLE vals (
    id text PRIMARY KEY,
    f8 double precision, f4 real, num numeric, big bigint, b boolean,
    j jsonb, js json, ts timestamptz, d date, iv interval, tags text[], nums int[],
    u uuid, raw bytea, p pair, t text
)"""

VALUE_ROWS = [
    "('inf', 'Infinity', '-Infinity', 'NaN', 9223372036854775807, true, "
    ' \'{"a": [1, 2.5, null], "b": {"c": "\\u00e9"}}\', \'{"k":  1, "k": 2}\', '
    " '2024-02-29 23:59:59.123456+00', '2024-02-29', '1 day 02:03:04.5', "
    " ARRAY['a', 'b c', NULL, '\"q\"', '{x}'], ARRAY[1, NULL, 3], "
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', ROW(1, 'a,b'), 'emoji 🦀 and \\ backslash')",
    "('nan', 'NaN', 1.5e-45, 12345678901234567890.123456789012345678901234567890, -1, false, "
    " '[]', 'null', '-infinity', 'infinity', '-1 mon', '{}', '{}', NULL, '\\x', ROW(NULL, NULL), '')",
    "('tiny', 5e-324, 3.4028235e38, '-0.000000000000000000001', 0, NULL, "
    " '1e400', '\"s\"', '1970-01-01 00:00:00+00', '0001-01-01', '0', ARRAY['NULL'], ARRAY[-2147483648], "
    " NULL, NULL, NULL, NULL)",
    "('nulls'" + ", NULL" * 16 + ")",
]


async def test_values_round_trip_exactly_as_the_trigger_writes_them(
    pg_dsn: str, other_dsn: str, wal: None
) -> None:
    """Non-finite floats, numeric, jsonb/json, timestamptz, arrays (text[] with NULLs and quotes),
    bytea, a composite column, ... written the same way into a WAL-mode log and a trigger-mode log
    (another database) give byte-identical records and old rows (INSERT, UPDATE, DELETE)."""
    await check_same_as_trigger(pg_dsn, other_dsn, VALUE_ROWS)


async def test_jsonb_numbers_keep_every_digit_as_the_trigger_writes_them(
    pg_dsn: str, other_dsn: str, wal: None
) -> None:
    """jsonb/json numbers (numeric in PostgreSQL: any precision, trailing zeros kept) are logged by
    WAL capture exactly as the trigger logs them."""
    nulls = ", NULL" * 10  # js .. t
    rows = [
        f"('prec', NULL, NULL, NULL, NULL, NULL, '{{\"n\": 12345678901234567890.123456789}}'{nulls})",
        f"('scale', NULL, NULL, NULL, NULL, NULL, '[2.50, 1.0, 0.1]'{nulls})",
    ]
    await check_same_as_trigger(pg_dsn, other_dsn, rows)


async def check_same_as_trigger(wal_dsn: str, trigger_dsn: str, value_rows: list[str]) -> None:
    """Write ``value_rows`` into ``vals`` (insert, update, delete) under a WAL-mode log and a
    trigger-mode log; assert both logs hold the same text."""
    logs: list[PostgresChangeLog] = []
    try:
        for mode, dsn in (("wal", wal_dsn), ("trigger", trigger_dsn)):
            log = PostgresChangeLog(dsn, capture=mode)  # type: ignore[arg-type]
            await log.open()
            logs.append(log)
            assert log.capture == mode
            user = await asyncpg.connect(dsn)
            try:
                await user.execute(TYPES)
                await log.watch("vals")
                await user.execute(f"INSERT INTO vals VALUES {', '.join(value_rows)}")
                await user.execute("UPDATE vals SET t = coalesce(t, '') || '!', nums = nums || 7")
                await user.execute("DELETE FROM vals WHERE id IN ('inf', 'nulls')")
            finally:
                await user.close()
            await log.wait_captured()
        wal_rows, trigger_rows = await raw_log(wal_dsn), await raw_log(trigger_dsn)
        assert trigger_rows, "nothing logged"
        for got, want in zip(wal_rows, trigger_rows, strict=True):
            assert got == want
    finally:
        for log in logs:
            await log.close()


# -- schema changes while no capture ran ----------------------------------------------


async def test_a_column_type_change_before_capture_does_not_wedge_the_capture(pg_dsn: str, wal: None) -> None:
    """Rows written while no gateway ran, then a column's type changed (text -> int USING 0):
    opening the log captures those rows (as the trigger logged them, or at least without
    stopping), and later changes are captured."""
    log = PostgresChangeLog(pg_dsn, capture="wal")
    await log.open()
    await log.execute(ITEMS)
    await log.watch("items")
    await log.close()
    user = await asyncpg.connect(pg_dsn)
    try:
        await user.execute("INSERT INTO items (id, title) VALUES ('a', 'not a number')")
        await user.execute("ALTER TABLE items ALTER COLUMN title TYPE int USING 0")
        await user.execute("INSERT INTO items (id, title) VALUES ('b', 2)")
    finally:
        await user.close()
    log = PostgresChangeLog(pg_dsn)
    try:
        await asyncio.wait_for(log.open(), 6)
        await asyncio.wait_for(log.wait_captured(timeout=5), 6)
        assert [c.key("id") for c in await read_all(log)] == ["a", "b"]
    finally:
        await log.close()
