"""RealtimeGateway end to end: real change log, real Socket.IO server and RootStore clients."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from rxstore import ConnectionRefused, EventKind, RootStore
from rxstore.client.transport import FrameHandler, LostHandler, SocketIOTransport
from rxstore.gateway.demo import Post, all_posts, create_demo_schema, delete_post, save_post
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.server import RealtimeGateway, Topic
from rxstore.protocol.frames import CheckedBatch
from tests.gateway.harness import AUTH, SeqCounter, root_for, start_gateway
from tests.gateway.placeholders import placeholders
from tests.waiting import wait_for


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(database_url)
    yield gateway
    await gateway.stop()


async def write_posts(gateway: RealtimeGateway, start: int, count: int, **fields) -> None:
    for i in range(start, start + count):
        await save_post(gateway.log, Post(id=f"p{i}", title=f"title {i}", **fields))


async def test_first_connect_gets_snapshot_then_live_changes(gateway: RealtimeGateway) -> None:
    await write_posts(gateway, 0, 5)
    root, posts = root_for(gateway)
    async with root:
        await wait_for(lambda: len(posts.value) == 5, what="snapshot")
        await save_post(gateway.log, Post(id="p1", title="edited"))
        await delete_post(gateway.log, "p2")
        await write_posts(gateway, 10, 3)
        await wait_for(lambda: len(posts.value) == 7 and posts.value["p1"].title == "edited")
        assert posts.value.to_dict() == await all_posts(gateway.log)
        assert root.metrics.duplicates == 0


async def test_resume_after_1000_missed_changes_delivers_each_once(gateway: RealtimeGateway) -> None:
    root, posts = root_for(gateway)
    counter = SeqCounter(root)
    async with root:
        await write_posts(gateway, 0, 10)
        await wait_for(lambda: len(posts.value) == 10)
    cursor = root.cursor
    for start in range(10, 1010, 100):  # 1,000 changes in 10 commits
        await write_posts_in_one_transaction(gateway, start, 100)
    before = len(counter.seen)
    async with root:
        await wait_for(lambda: len(posts.value) == 1010, what="replay of 1000 changes")
        await wait_for(lambda: root.connection_state.connected)
    replayed = counter.seen[before:]
    assert len(replayed) == 1000 and len(set(replayed)) == 1000
    assert cursor is not None and replayed == sorted(replayed) and replayed[0] > cursor
    assert root.metrics.duplicates == 0
    assert posts.value.to_dict() == await all_posts(gateway.log)


async def test_cursor_older_than_retention_gets_reset_and_snapshot(gateway: RealtimeGateway) -> None:
    root, posts = root_for(gateway)
    resets = []
    root.events.subscribe(lambda e: resets.append(e) if e.name == "rxstore:reset" else None)
    async with root:
        await write_posts(gateway, 0, 20)
        await wait_for(lambda: len(posts.value) == 20)
    await write_posts(gateway, 20, 30)
    await delete_post(gateway.log, "p3")
    assert await gateway.log.trim(max_rows=5) > 0
    assert await gateway.log.horizon() > (root.cursor or 0)
    async with root:
        await wait_for(lambda: len(posts.value) == 49, what="reset + snapshot")
        assert posts.value.to_dict() == await all_posts(gateway.log)
        assert "p3" not in posts.value


class RowRecorder(SocketIOTransport):
    """The real python-socketio transport, also keeping every row of every frame it receives.

    Rows are collected from the raw frames before the root parses or filters them: ``record``
    and ``old`` of every change, every snapshot record, every batch entry, at any depth.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    def bind(self, on_frame: FrameHandler, on_lost: LostHandler) -> None:
        def recording(name: str, data: Any) -> None:
            self._collect(data)
            on_frame(name, data)

        super().bind(recording, on_lost)

    def _collect(self, value: Any) -> None:
        if isinstance(value, dict):
            if "id" in value and "author" in value:
                self.rows.append(dict(value))
            for item in value.values():
                self._collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                self._collect(item)
        elif isinstance(value, CheckedBatch):  # a batch as the transport decodes it (rxstore.protocol.frames)
            self._collect(value.events)


async def test_authorize_hides_other_users_private_rows_in_snapshot_replay_and_live(
    database_url: str,
) -> None:
    """No frame alice receives holds bob's private row, in ``record`` or ``old``, on any path."""

    def authorize(user, topic, row) -> bool:
        return not row["private"] or row["author"] == user.id

    gateway = await start_gateway(database_url, authorize=authorize)
    try:
        log = gateway.log
        await save_post(log, Post(id="b-secret-1", title="B only", author="bob", private=True))
        await save_post(log, Post(id="public-1", title="all", author="bob"))
        received = RowRecorder()
        alice, alice_posts = root_for(gateway, "alice", transport=received)
        bob, bob_posts = root_for(gateway, "bob")
        async with alice, bob:
            await wait_for(lambda: len(bob_posts.value) == 2)
            await wait_for(lambda: len(alice_posts.value) == 1)
            await save_post(log, Post(id="b-secret-2", title="B only", author="bob", private=True))
            await save_post(log, Post(id="public-2", title="all", author="bob"))
            await wait_for(lambda: len(alice_posts.value) == 2 and len(bob_posts.value) == 4)
        # Replay: alice is away while bob writes more private rows, and a public row goes private.
        await save_post(log, Post(id="b-secret-3", title="B only", author="bob", private=True))
        await save_post(log, Post(id="public-1", title="now hidden", author="bob", private=True))
        await save_post(log, Post(id="public-3", title="all", author="bob"))
        async with alice:
            await wait_for(lambda: "public-3" in alice_posts.value, what="alice replay")
            assert set(alice_posts.value.to_dict()) == {"public-2", "public-3"}
            # Live: a hidden row made public appears as an INSERT.
            await save_post(log, Post(id="b-secret-1", title="revealed", author="bob"))
            await wait_for(lambda: "b-secret-1" in alice_posts.value, what="revealed row")
        seen = {(r["id"], r["title"]) for r in received.rows}
        # The recorder saw the snapshot, the replay and the live frame (the check below is not vacuous).
        assert {("public-1", "all"), ("public-3", "all"), ("b-secret-1", "revealed")} <= seen
        leaked = [r for r in received.rows if r["private"] and r["author"] == "bob"]
        assert leaked == []
    finally:
        await gateway.stop()


async def test_change_written_by_another_process_reaches_the_client(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    gateway = await start_gateway(url)
    try:
        root, posts = root_for(gateway)
        async with root:
            script = textwrap.dedent(f"""
                import sqlite3
                db = sqlite3.connect({str(tmp_path / "app.db")!r})
                with db:
                    db.execute("INSERT INTO posts (id, title) VALUES ('ext', 'from the sqlite3 shell')")
                db.close()
            """)
            subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
            await wait_for(lambda: "ext" in posts.value, what="external write")
        assert posts.value["ext"].title == "from the sqlite3 shell"
    finally:
        await gateway.stop()


# -- refusals and bad input ----------------------------------------------------


@pytest.fixture
async def sqlite_gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", max_frame_bytes=64 * 1024)
    yield gateway
    await gateway.stop()


@pytest.mark.parametrize(
    ("token", "topics", "reason"),
    [
        ("not-a-jwt", None, "invalid_token"),
        (None, None, "invalid_token"),
        (AUTH.issue("alice", ttl=-10), None, "token_expired"),
        ("forged", None, "invalid_token"),
        (AUTH.issue("alice"), ["secrets"], "forbidden_topic"),
    ],
)
async def test_bad_connections_are_refused_with_a_reason(sqlite_gateway, token, topics, reason) -> None:
    if token == "forged":
        from rxstore.gateway.access.auth import TokenAuth

        token = TokenAuth(secret="another-secret-that-is-long-enough!!").issue("alice")
    root = RootStore(sqlite_gateway.url, token=token, topics=topics or ["posts"])
    with pytest.raises(ConnectionRefused) as refused:
        await root.setup_realtime()
    await root.teardown_realtime()
    assert refused.value.reason == reason


async def test_gateway_answers_garbage_with_errors_and_other_clients_are_unaffected(sqlite_gateway) -> None:
    gateway = sqlite_gateway
    root, posts = root_for(gateway, "good")
    async with root:
        raw = socketio.AsyncClient(reconnection=False)
        await raw.connect(gateway.url, auth={"token": AUTH.issue("mallory")}, transports=["websocket"])
        assert (await raw.call("no_such_event", {"x": 1}, timeout=5))["error"] == "unknown_event"
        assert (await raw.call("rxstore:batch", "garbage", timeout=5))["error"] == "unknown_event"
        # An oversize frame closes only the offender's connection.
        await raw.emit("post_update", "x" * (128 * 1024))
        await wait_for(lambda: not raw.connected, what="offender disconnected")
        await raw.disconnect()
        # Refused auth payloads of the wrong shape.
        for auth in (
            {"token": AUTH.issue("m"), "topics": "posts"},
            {"token": AUTH.issue("m"), "cursor": "7"},
            "tok",
        ):
            bad = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await bad.connect(gateway.url, auth=auth, transports=["websocket"])
            await bad.disconnect()
        await write_posts(gateway, 0, 3)
        await wait_for(lambda: len(posts.value) == 3, what="good client still served")
        assert root.connection_state.connected and root.metrics.errors == 0


async def test_flood_of_bad_connects_is_refused_and_service_continues(sqlite_gateway) -> None:
    gateway = sqlite_gateway

    async def bad_connect() -> str:
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(gateway.url, auth={"token": "bad"}, transports=["websocket"])
            return "connected"
        except socketio.exceptions.ConnectionError:
            return "refused"
        finally:
            await client.disconnect()

    results = await asyncio.gather(*(bad_connect() for _ in range(50)))
    assert results == ["refused"] * 50
    root, posts = root_for(gateway)
    async with root:
        await write_posts(gateway, 0, 2)
        await wait_for(lambda: len(posts.value) == 2)


async def test_health_and_metrics_endpoints(sqlite_gateway) -> None:
    gateway = sqlite_gateway
    root, posts = root_for(gateway)
    async with root, aiohttp.ClientSession() as http:
        await write_posts(gateway, 0, 4)
        await wait_for(lambda: len(posts.value) == 4)
        async with http.get(f"{gateway.url}/healthz") as response:
            assert response.status == 200
            health = json.loads(await response.text())
        assert health["status"] == "ok" and health["clients"] == 1 and health["head"] == 4
        async with http.get(f"{gateway.url}/metrics") as response:
            text = await response.text()
        assert "rxstore_connected_clients 1.0" in text
        assert "rxstore_changes_total 4.0" in text
        assert "rxstore_lag_seconds" in text


async def test_external_sqlite_shell_style_write_uses_the_same_file(tmp_path: Path) -> None:
    """The log file is a plain SQLite database others can open."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        await save_post(gateway.log, Post(id="p", title="t"))
        with sqlite3.connect(tmp_path / "app.db") as db:
            (count,) = db.execute("SELECT count(*) FROM rxstore_changes").fetchone()
        assert count == 1
    finally:
        await gateway.stop()


async def test_msgpack_serializer_end_to_end(tmp_path: Path) -> None:
    from rxstore import SocketIOTransport

    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", serializer="msgpack")
    try:
        root, posts = root_for(gateway, transport=SocketIOTransport(serializer="msgpack"))
        async with root:
            await write_posts(gateway, 0, 50)
            await delete_post(gateway.log, "p7")
            want = await all_posts(gateway.log)
            assert len(want) == 49 and "p7" not in want
            await wait_for(lambda: posts.value.to_dict() == want, what="msgpack changes")
    finally:
        await gateway.stop()


async def test_concurrent_writers_reach_every_client_exactly_once_in_row_order(database_url: str) -> None:
    """20 writers x 60 rows each, concurrently, with 3 clients connected: all changes, once, in order."""
    gateway = await start_gateway(database_url)
    writers, per_writer = 20, 60
    try:
        clients = [root_for(gateway, f"user{i}") for i in range(3)]
        counters = [SeqCounter(root) for root, _ in clients]
        for root, posts in clients:
            await root.setup_realtime()
            await wait_for(lambda p=posts: p.seq is not None, what="snapshot before the writers start")

        async def writer(w: int) -> None:
            for n in range(per_writer):
                # each writer updates its own 3 rows round-robin; likes is the row's version
                await save_post(gateway.log, Post(id=f"w{w}-{n % 3}", title=f"{w}/{n}", likes=n))

        await asyncio.gather(*(writer(w) for w in range(writers)))
        total = writers * per_writer
        for (_root, posts), counter in zip(clients, counters, strict=True):
            await wait_for(lambda c=counter: len(c.seen) >= total, timeout=60, what="all changes")
            assert len(counter.seen) == total and len(set(counter.seen)) == total
            assert counter.seen == sorted(counter.seen)
            versions: dict[str, int] = {}
            for row in counter.rows:
                assert row["likes"] > versions.get(row["id"], -1), "per-row order broken"
                versions[row["id"]] = row["likes"]
            assert posts.value.to_dict() == await all_posts(gateway.log)
        for root, _ in clients:
            await root.teardown_realtime()
    finally:
        await gateway.stop()


async def test_cursor_ahead_of_the_log_gets_reset_and_snapshot(gateway: RealtimeGateway) -> None:
    """A cursor from another (restored, recreated) database must not silence the client."""
    await write_posts(gateway, 0, 3)
    root, posts = root_for(gateway)
    root.cursor = 1_000_000
    resets = []
    root.events.subscribe(lambda e: resets.append(e.data) if e.name == "rxstore:reset" else None)
    async with root:
        await wait_for(lambda: len(posts.value) == 3, what="snapshot after reset")
        await write_posts(gateway, 3, 2)
        await wait_for(lambda: len(posts.value) == 5, what="live after reset")
    assert resets and resets[0]["reason"] == "cursor_ahead"
    assert posts.value.to_dict() == await all_posts(gateway.log)


async def test_a_trim_racing_the_horizon_check_falls_back_to_a_snapshot(tmp_path: Path) -> None:
    """The log is trimmed after the gateway checked the client's cursor against the horizon
    and before it read the replay: the gap is noticed and the client gets reset + snapshot."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        root, posts = root_for(gateway)
        async with root:
            await write_posts(gateway, 0, 5)
            await wait_for(lambda: len(posts.value) == 5)
        await write_posts(gateway, 5, 30)
        log = gateway.log
        real_horizon = log.horizon
        calls = 0

        async def horizon_trimmed_after_the_first_look() -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                seen = await real_horizon()
                await log.trim(max_rows=3)  # lands right after the gateway's check
                return seen
            return await real_horizon()

        log.horizon = horizon_trimmed_after_the_first_look  # type: ignore[method-assign]
        async with root:
            await wait_for(lambda: len(posts.value) == 35, what="snapshot after the racing trim")
            assert posts.value.to_dict() == await all_posts(log)
        assert calls >= 2
    finally:
        await gateway.stop()


async def test_coalesce_sends_changes_of_one_window_in_one_frame(tmp_path: Path) -> None:
    """With ``coalesce``, changes committed within the window after a broadcast go out together;
    a backlog bigger than ``batch_size`` is read on at once, not one page per window."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", coalesce=3.0, batch_size=10)
    try:
        root, posts = root_for(gateway)
        async with root:
            await wait_for(lambda: root.connection_state.connected and posts.value is not None)
            await write_posts(gateway, 0, 1)  # broadcast at once: nothing was sent for 3 s
            await wait_for(lambda: len(posts.value) == 1, what="the first change")
            sizes: list[int] = []
            posts.state.subscribe(lambda state: sizes.append(len(state)))
            for i in range(1, 6):  # 5 transactions 50 ms apart: all within the window
                await write_posts(gateway, i, 1)
                await asyncio.sleep(0.05)
            await wait_for(lambda: len(posts.value) == 6, timeout=10, what="the window's changes")
            assert sizes == [1, 6], "the 5 changes of one window came in one frame, one state update"
            # 100 changes in one transaction: 10 pages of 10, sent without waiting 3 s between pages.
            await asyncio.sleep(3.0)  # the point: the last broadcast's 3 s window runs out first
            await write_posts_in_one_transaction(gateway, 100, 100)
            await wait_for(lambda: len(posts.value) == 106, timeout=2.5, what="a 10-page backlog")
            assert posts.value.to_dict() == await all_posts(gateway.log)
    finally:
        await gateway.stop()


async def write_posts_in_one_transaction(gateway: RealtimeGateway, start: int, count: int) -> None:
    """Posts ``p<start>`` ... in one statement: ``count`` changes, one commit (SQLite or PostgreSQL)."""
    sql = (
        "WITH RECURSIVE n(i) AS (SELECT CAST(? AS INTEGER) UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO posts (id, title) SELECT 'p' || i, 'title ' || i FROM n"
    )
    postgres = not gateway.log.url.startswith("sqlite")
    await gateway.log.execute(placeholders(sql, postgres=postgres), start, start + count - 1)


async def test_an_update_of_the_primary_key_moves_the_row_on_every_client(gateway: RealtimeGateway) -> None:
    await write_posts(gateway, 0, 3)
    root, posts = root_for(gateway)
    async with root:
        await wait_for(lambda: len(posts.value) == 3, what="snapshot")
        placeholder = "?" if gateway.log.url.startswith("sqlite") else "$1"
        await gateway.log.execute(f"UPDATE posts SET id = 'p9' WHERE id = {placeholder}", "p1")
        await wait_for(lambda: "p9" in posts.value, what="the renamed row")
        assert posts.value.to_dict() == await all_posts(gateway.log)
        assert sorted(posts.value.to_dict()) == ["p0", "p2", "p9"]


async def test_topics_with_key_only_old_rows_send_the_key_and_clients_still_mirror_the_table(
    database_url: str,
) -> None:
    """``Topic(old="key")``: UPDATE/DELETE envelopes carry ``{"id": ...}`` as ``old`` (authorize still
    sees the whole row), and a TableStore mirrors the table through updates, deletes and a key change."""
    log = open_change_log(database_url)
    await log.open()
    await create_demo_schema(log)
    seen_by_authorize: list[Any] = []

    def authorize(user: Any, topic: str, row: Any) -> bool:
        seen_by_authorize.append(row)
        return not row.get("private")

    gateway = RealtimeGateway(log, topics=[Topic(name="posts", old="key")], auth=AUTH, authorize=authorize)
    await gateway.start(port=0)
    try:
        await write_posts(gateway, 0, 3)
        root, posts = root_for(gateway)
        olds: list[Any] = []
        root.events.subscribe(lambda e: olds.append(e.data["old"]) if e.kind is EventKind.CHANGE else None)
        async with root:
            await wait_for(lambda: len(posts.value) == 3, what="snapshot")
            await save_post(gateway.log, Post(id="p0", title="edited"))
            await delete_post(gateway.log, "p1")
            param = "?" if database_url.startswith("sqlite") else "$1"
            await gateway.log.execute(f"UPDATE posts SET id = 'p9' WHERE id = {param}", "p2")
            await wait_for(lambda: "p9" in posts.value and "p1" not in posts.value, what="all three changes")
            assert posts.value.to_dict() == await all_posts(gateway.log)
        assert olds == [{"id": "p0"}, {"id": "p1"}, {"id": "p2"}]
        assert any(row.get("title") == "title 1" and "body" in row for row in seen_by_authorize)
    finally:
        await gateway.stop()


async def test_emptying_the_table_empties_every_client(gateway: RealtimeGateway) -> None:
    """``TRUNCATE`` on PostgreSQL (logged as one DELETE per row), ``DELETE FROM`` on SQLite."""
    await write_posts(gateway, 0, 5)
    root, posts = root_for(gateway)
    async with root:
        await wait_for(lambda: len(posts.value) == 5, what="snapshot")
        sqlite = gateway.log.url.startswith("sqlite")
        await gateway.log.execute("DELETE FROM posts" if sqlite else "TRUNCATE posts")
        await wait_for(lambda: len(posts.value) == 0, what="an empty table")
        await write_posts(gateway, 10, 2)
        await wait_for(lambda: len(posts.value) == 2, what="rows written after")
        assert posts.value.to_dict() == await all_posts(gateway.log)
