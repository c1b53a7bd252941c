"""The WAL capture's replication slot (issue 28, item 4), against real servers.

- It keeps advancing while only tables it does not watch write: the WAL it retains stays small.
- The WAL it retains is in ``/healthz`` (with a warning over ``slot_warning_bytes``) and ``/metrics``.
- A slot invalidated while no gateway ran (``max_slot_wal_keep_size``, a throwaway server) is
  noticed: a new slot, a new epoch, and a returning client is reset (``epoch_changed``) and
  reloads exactly the database's rows.

All of it is about the WAL capture: the tests skip on a server with ``wal_level=replica``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from rxstore import EventKind, RootStore, SyncState
from rxstore.gateway.demo import Post, all_posts, save_post
from rxstore.gateway.health import health_report, metrics_report
from rxstore.gateway.log.postgres.capture import CaptureLeader
from rxstore.gateway.log.postgres.changelog import PostgresChangeLog
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import PostStore, root_for, start_gateway
from tests.services import WAL_LEVEL, PostgresServer, require_or_skip
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

ITEMS = "CREATE TABLE items (id text PRIMARY KEY, title text)"
OTHER = "CREATE TABLE other (id bigserial PRIMARY KEY, body text)"
WRITE_OTHER = "INSERT INTO other (body) SELECT repeat('x', 1000) FROM generate_series(1, $1)"
MiB = 1024 * 1024
WAL_STATUS = "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1"
CONFIRMED_PAST = (
    "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $2"
)


@pytest.fixture
def wal(postgres: PostgresServer) -> None:
    """Skip unless the server can capture from the WAL (``wal_level=logical``)."""
    level = postgres.psql("SHOW wal_level").strip()
    if level != "logical":
        pytest.skip(f"WAL capture needs wal_level=logical; this server runs wal_level={level}")


async def slot_of(conn: Any) -> str:
    return str(await conn.fetchval("SELECT slot FROM rxstore_capture WHERE singleton"))


async def retained(conn: Any, slot: str) -> int:
    """WAL the slot retains (current position - restart_lsn), as the server says."""
    sql = (
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = $1"
    )
    return int(await conn.fetchval(sql, slot))


async def test_the_slot_advances_while_only_unwatched_tables_write(pg_dsn: str, wal: None) -> None:
    """About 25 MB of WAL written to a table the log does not watch: the slot's confirmed LSN
    passes the end of it and, after checkpoints, the WAL it retains is under 8 MiB again (and
    the capture's own measure says so); nothing is appended to the log."""
    log = PostgresChangeLog(pg_dsn, capture="wal")
    await log.open()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await log.execute(ITEMS)
        await log.watch("items")
        await conn.execute(OTHER)
        slot = await slot_of(conn)
        for _ in range(20):
            await conn.execute(WRITE_OTHER, 1000)
        end = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        await wait_for(
            lambda: conn.fetchval(CONFIRMED_PAST, end, slot),
            30,
            "the slot confirmed past the unwatched writes",
        )

        async def small() -> bool:
            await conn.execute("CHECKPOINT")  # a running-xacts record: decoding may restart after it
            return await retained(conn, slot) < 8 * MiB

        await wait_for(small, 30, "the slot's retained WAL under 8 MiB", interval=0.2)
        await wait_for(
            lambda: (log.capture_status["retained_bytes"] or 0) < 8 * MiB,
            10,
            "the capture's measure under 8 MiB",
        )
        assert await log.head() == 0
    finally:
        await conn.close()
        await log.close()


@contextlib.asynccontextmanager
async def stalled_capture(dsn: str) -> AsyncIterator[None]:
    """The capture leader's pass waits (rxstore_capture's row held, a watched change pending)."""
    holder = await asyncpg.connect(dsn)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT * FROM rxstore_capture FOR UPDATE")
        writer = await asyncpg.connect(dsn)
        try:
            await writer.execute("INSERT INTO items VALUES ('pending', 'to capture')")
        finally:
            await writer.close()
        yield
    finally:
        await holder.close()  # rolled back: the capture goes on


def gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def test_healthz_and_metrics_warn_while_the_slot_retains_more_than_the_threshold(
    pg_dsn: str, wal: None
) -> None:
    """Two nodes with ``slot_warning_bytes`` = 1 MiB; the leader's capture stalls while 4 MB of
    WAL are written: the standby measures the slot, ``/healthz`` keeps 200 and lists the warning,
    ``/metrics`` has the retained bytes and ``rxstore_capture_slot_warning`` 1. Once the capture
    goes on (and checkpoints let the slot's restart point move), the warning is gone."""
    a = PostgresChangeLog(pg_dsn, capture="wal", slot_warning_bytes=MiB)
    await a.open()
    await a.execute(ITEMS)
    await a.watch("items")
    await a.execute(OTHER)
    await wait_for(lambda: a.capture_leader, 10, "a leads")
    b = PostgresChangeLog(pg_dsn, capture="wal", slot_warning_bytes=MiB)
    await b.open()
    conn = await asyncpg.connect(pg_dsn)
    metrics = Metrics()
    try:
        assert not b.capture_leader
        async with stalled_capture(pg_dsn):
            await conn.execute(WRITE_OTHER, 4000)
            await wait_for(lambda: b.capture_status["warning"] is not None, 10, "the standby warns")
            status, body = health_report(b, None, True, 0, 0)
            assert status == 200 and body["status"] == "ok"
            assert body["warnings"] == [b.capture_status["warning"]]
            assert "retains" in body["warnings"][0] and "max_slot_wal_keep_size" in body["warnings"][0]
            assert body["capture"]["retained_bytes"] > MiB
            assert body["capture"]["retained_warning_bytes"] == MiB
            metrics_report(metrics, b)
            assert gauge(metrics, "rxstore_capture_slot_warning") == 1
            assert (gauge(metrics, "rxstore_capture_slot_retained_bytes") or 0) > MiB

        async def cleared() -> bool:
            await conn.execute("CHECKPOINT")
            return b.capture_status["warning"] is None

        await a.wait_captured()
        await wait_for(cleared, 30, "the warning gone", interval=0.3)
        status, body = health_report(b, None, True, 0, 0)
        assert "warnings" not in body
        metrics_report(metrics, b)
        assert gauge(metrics, "rxstore_capture_slot_warning") == 0
    finally:
        await conn.close()
        await b.close()
        await a.close()


def test_a_slot_about_to_be_lost_is_a_warning_whatever_it_retains() -> None:
    """``wal_status`` ``unreserved`` (past max_slot_wal_keep_size, not yet invalidated) or
    ``lost`` is a warning even under the threshold; ``reserved`` under it is none."""
    leader = CaptureLeader("rxstore_1", connect=None, appended=None, retained_warning=10**12)
    leader.retained_bytes = 1000
    for status in ("unreserved", "lost"):
        leader.wal_status = status
        assert status in (leader.warning() or "")
    leader.wal_status = "reserved"
    assert leader.warning() is None
    assert leader.status()["warning"] is None


# -- an invalidated slot -----------------------------------------------------------------


@pytest.fixture
def small_slot_server() -> Any:
    """A throwaway server whose slots may retain 16 MB of WAL at most (one segment)."""
    if WAL_LEVEL != "logical":
        pytest.skip(f"WAL capture needs wal_level=logical; RXSTORE_TEST_WAL_LEVEL={WAL_LEVEL}")
    reason = PostgresServer.missing()
    if reason:
        require_or_skip(reason)
    with PostgresServer(settings={"max_slot_wal_keep_size": "16MB"}) as server:
        yield server


async def fill_until_lost(dsn: str, slot: str) -> None:
    """Write WAL (a table no log watches), switch segments and checkpoint until the slot is lost."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS filler (body text)")

        async def lost() -> bool:
            await conn.execute("INSERT INTO filler SELECT repeat('f', 1000) FROM generate_series(1, 4000)")
            await conn.execute("SELECT pg_switch_wal()")
            await conn.execute("CHECKPOINT")
            return bool(await conn.fetchval(WAL_STATUS, slot) == "lost")

        await wait_for(lost, 60, f"slot {slot} invalidated", interval=0.05)
    finally:
        await conn.close()


def record_resets(root: RootStore) -> list[Any]:
    resets: list[Any] = []
    root.events.subscribe(lambda e: resets.append(e.data) if e.kind is EventKind.RESET else None)
    return resets


async def synced(root: RootStore, posts: PostStore, gateway: RealtimeGateway) -> None:
    head = await gateway.log.head()
    await wait_for(
        lambda: posts.sync.state is SyncState.LIVE and root.cursor == head, 10, f"root live at seq {head}"
    )


async def test_a_slot_lost_while_the_gateway_was_down_is_made_anew_and_clients_reset(
    small_slot_server: PostgresServer,
) -> None:
    """A gateway with a client at seq 3 stops; a post is written, then WAL of another table
    until the slot is invalidated (``max_slot_wal_keep_size`` = 16MB). The gateway, started
    again, notices (``slots_lost`` 1, why in ``last_lost``), captures from a new slot under a new
    epoch; the returning client gets ``rxstore:reset`` (``epoch_changed``) and ends with exactly
    the database's rows, the post whose change the lost slot took with it included."""
    dsn = small_slot_server.create_database()
    gateway = await start_gateway(dsn)
    try:
        log: Any = gateway.log
        assert log.capture_status["mode"] == "wal"
        for i in range(3):
            await save_post(gateway.log, Post(id=f"p{i}", title=f"post {i}"))
        root, posts = root_for(gateway)
        async with root:
            await synced(root, posts, gateway)
        epoch = await gateway.log.epoch()
    finally:
        await gateway.stop()
    assert root.cursor == 3 and root.epoch == epoch

    conn = await asyncpg.connect(dsn)
    try:
        slot = await slot_of(conn)
        await conn.execute(
            "INSERT INTO posts (id, title) VALUES ('gone', 'its change is lost with the slot')"
        )
    finally:
        await conn.close()
    await fill_until_lost(dsn, slot)

    gateway = await start_gateway(dsn)
    try:
        log = gateway.log
        status = log.capture_status
        assert status["slots_lost"] == 1, status
        assert "invalidated" in status["last_lost"], status
        assert await gateway.log.epoch() != epoch
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval(WAL_STATUS, slot) in ("reserved", "extended")
        finally:
            await conn.close()
        await save_post(gateway.log, Post(id="after", title="captured by the new slot"))
        resets = record_resets(root)
        root.urls = (gateway.url,)
        async with root:
            await synced(root, posts, gateway)
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert [r["reason"] for r in resets] == ["epoch_changed"]
        assert sorted(posts.value.to_dict()) == ["after", "gone", "p0", "p1", "p2"]
    finally:
        await gateway.stop()
