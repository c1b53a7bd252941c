"""A window over a relation on a real gateway: the newest messages of the channels I am a member of.

``messages WHERE channel_id IN (SELECT channel_id FROM memberships WHERE user_id = <sub>)
ORDER BY ts DESC LIMIT 4`` on both change logs (SQLite; PostgreSQL with WAL capture, and
with trigger capture when ``RXSTORE_TEST_WAL_LEVEL=replica``), composed with ``authorize``:
under random concurrent joins, leaves and message writes the client's window equals, after
every snapshot and envelope it applied, the model's ``ORDER BY ... LIMIT`` at that seq
(the tables rebuilt from the change log), and at the end the database's; a join moves a
channel's newer messages in (one read at one seq), a leave moves them out and older ones
of the other channels in; a resume after joins gets the window fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway import User
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import MORE, PAGE, SNAPSHOT
from tests.gateway.harness import AUTH
from tests.gateway.live_queries.test_subsets import WireClient
from tests.gateway.placeholders import placeholders
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

LIMIT = 4
MINE = {"select": "channel_id", "from": "memberships", "where": [["user_id", "=", {"claim": "sub"}]]}
NEWEST = {
    "id": "newest",
    "topic": "messages",
    "where": [["channel_id", "in", MINE]],
    "order_by": [["ts", "desc"]],
    "limit": LIMIT,
}
NEWEST_SQL = (
    "SELECT * FROM messages WHERE body <> 'hidden' AND channel_id IN "
    "(SELECT channel_id FROM memberships WHERE user_id = 'alice') "
    f"ORDER BY ts DESC NULLS FIRST, id ASC LIMIT {LIMIT}"
)

Row = dict[str, Any]
Tables = dict[str, dict[int, Row]]
Step = tuple[str, int, list[int]]


def authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """Messages whose body is ``hidden`` are seen by nobody."""
    return row.get("body") != "hidden"


def newest(tables: Tables, user: str = "alice") -> list[int]:
    """The window computed here, independently of the gateway and of SQL: ids, newest first."""
    channels = {m["channel_id"] for m in tables["memberships"].values() if m["user_id"] == user}
    rows = [r for r in tables["messages"].values() if r["channel_id"] in channels and r["body"] != "hidden"]
    rows.sort(key=lambda r: (r["ts"] is not None, -(r["ts"] or 0), r["id"]))
    return [r["id"] for r in rows[:LIMIT]]


class Chat:
    """A gateway serving ``messages (id, channel_id, ts, body)`` and ``memberships``."""

    def __init__(self, gateway: RealtimeGateway) -> None:
        self.gateway = gateway
        self.log: ChangeLog = gateway.log
        self.postgres = "postgres" in type(gateway.log).__name__.lower()

    def sql(self, text: str) -> str:
        return placeholders(text, postgres=self.postgres)

    async def post(self, key: int, channel: str, ts: int | None, body: str = "x") -> None:
        sql = "INSERT INTO messages (id, channel_id, ts, body) VALUES (?, ?, ?, ?)"
        await self.log.execute(self.sql(sql), key, channel, ts, body)

    async def set(self, key: int, column: str, value: Any) -> None:
        await self.log.execute(self.sql(f"UPDATE messages SET {column} = ? WHERE id = ?"), value, key)

    async def delete(self, key: int) -> None:
        await self.log.execute(self.sql("DELETE FROM messages WHERE id = ?"), key)

    async def join(self, key: int, user: str, channel: str) -> None:
        sql = "INSERT INTO memberships (id, user_id, channel_id) VALUES (?, ?, ?)"
        await self.log.execute(self.sql(sql), key, user, channel)

    async def leave(self, key: int) -> None:
        await self.log.execute(self.sql("DELETE FROM memberships WHERE id = ?"), key)

    async def tables(self) -> Tables:
        return {
            name: {r["id"]: dict(r) for r in await self.log.fetch(f"SELECT * FROM {name}")}
            for name in ("messages", "memberships")
        }

    async def newest_sql(self) -> list[int]:
        """The window as the database orders it."""
        return [r["id"] for r in await self.log.fetch(NEWEST_SQL)]

    async def tables_by_seq(self, base: Tables, after: int) -> dict[int, Tables]:
        """Both tables after each seq from ``after`` on, rebuilt from the change log."""
        tables = {name: dict(rows) for name, rows in base.items()}
        by_seq, cursor = {after: {n: dict(r) for n, r in tables.items()}}, after
        while changes := await self.log.read(cursor, limit=1000):
            for change in changes:
                table = tables[change.topic]
                if change.record is None:
                    table.pop((change.old or {})["id"], None)
                else:
                    table[change.record["id"]] = dict(change.record)
                by_seq[change.seq] = {n: dict(r) for n, r in tables.items()}
                cursor = change.seq
        return by_seq


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def chat(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Chat]:
    url = (
        f"sqlite:///{tmp_path / 'app.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    )
    log = open_change_log(url)
    await log.open()
    await log.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel_id TEXT NOT NULL, ts INTEGER, body TEXT)"
    )
    await log.execute("CREATE TABLE memberships (id INTEGER PRIMARY KEY, user_id TEXT, channel_id TEXT)")
    gateway = RealtimeGateway(log, topics=["messages", "memberships"], auth=AUTH, authorize=authorize)
    served = Chat(gateway)
    await gateway.start(port=0)
    try:
        yield served
    finally:
        await gateway.stop()


class WindowClient(WireClient):
    """A wire client that follows one window: snapshots replace, pages add, envelopes move."""

    limit = LIMIT

    def steps(self, sub_id: str = "newest") -> list[Step]:
        """``(kind, seq, ids in the window's order)`` after each whole snapshot or envelope."""
        steps: list[Step] = []
        rows: dict[int, Row] = {}
        chunks: list[Row] = []
        for name, data in self.frames:
            if name == SNAPSHOT and data["event"] == sub_id:
                chunks.extend(data["records"])
                if not data.get("more"):
                    rows, chunks = {r["id"]: r for r in chunks}, []
                    steps.append(("snapshot", data["seq"], _ordered(rows)))
            elif name == PAGE and data["event"] == sub_id:
                rows.update((r["id"], r) for r in data["records"])
                steps.append(("page", data["seq"], _ordered(rows)))
            elif name == sub_id:
                if data["op"] == "DELETE":
                    rows.pop(data["old"]["id"])
                else:
                    rows[data["record"]["id"]] = data["record"]
                for out in data.get("out", ()):
                    rows.pop(out["id"])
                assert len(rows) <= self.limit, f"more than the limit after seq {data['seq']}"
                steps.append(("change", data["seq"], _ordered(rows)))
        return steps

    def ids(self, sub_id: str = "newest") -> list[int]:
        steps = self.steps(sub_id)
        return steps[-1][2] if steps else []


def _ordered(rows: Mapping[int, Row]) -> list[int]:
    ordered = sorted(rows.values(), key=lambda r: (r["ts"] is not None, -(r["ts"] or 0), r["id"]))
    return [r["id"] for r in ordered]


@pytest.fixture
async def clients() -> AsyncIterator[list[WindowClient]]:
    made: list[WindowClient] = []
    try:
        yield made
    finally:
        for client in made:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()


async def follow(chat: Chat, clients: list[WindowClient], user: str = "alice", **auth: Any) -> WindowClient:
    client = WindowClient()
    clients.append(client)
    payload = {"token": AUTH.issue(user), "cursor": None, "topics": [], "subscriptions": [NEWEST], **auth}
    await client.sio.connect(chat.gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)
    await wait_for(lambda: client.live >= 1, 10, "live")
    return client


def check_steps(steps: list[Step], tables: dict[int, Tables]) -> None:
    """Each envelope's step is the window at its seq; a snapshot's, at a seq before the next step."""
    seqs = sorted(tables)
    floor = -1
    for index, (kind, seq, got) in enumerate(steps):
        if kind == "change":
            assert seq > floor, f"step {index}: change {seq} is in the snapshot at {floor}: applied twice"
            assert got == newest(tables[seq]), f"step {index}: after the envelope of seq {seq}"
            continue
        floor = seq
        # a snapshot at P holds the changes of its skip too (PostgreSQL): any seq up to the next step
        bound = steps[index + 1][1] if index + 1 < len(steps) else seqs[-1] + 1
        candidates = [s for s in seqs if seq <= s < bound] or [seq]
        assert got in [newest(tables[s]) for s in candidates], f"step {index}: the snapshot at seq {seq}"


async def random_writes(chat: Chat, rng: random.Random, rounds: int, members: dict[int, str]) -> None:
    """Rounds of 1-4 concurrent writes: joins and leaves of alice and bob, message writes."""
    channels = ["a", "b", "c", "d"]
    present = set((await chat.tables())["messages"])
    for _ in range(rounds):
        writes = []
        touched: set[tuple[str, int]] = set()
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.3:
                key = rng.randint(2, 16)
                if ("m", key) in touched:
                    continue
                touched.add(("m", key))
                if key in members:
                    members.pop(key)
                    writes.append(chat.leave(key))
                else:
                    members[key] = rng.choice(channels)
                    writes.append(chat.join(key, rng.choice(["alice", "alice", "bob"]), members[key]))
                continue
            key = rng.randint(1, 30)
            if ("r", key) in touched:
                continue
            touched.add(("r", key))
            ts = rng.choice([None, *range(1, 12)])
            if key not in present:
                present.add(key)
                body = rng.choice(["x", "x", "x", "hidden"])
                writes.append(chat.post(key, rng.choice(channels), ts, body))
                continue
            what = rng.random()
            if what < 0.2:
                present.discard(key)
                writes.append(chat.delete(key))
            elif what < 0.6:
                writes.append(chat.set(key, "ts", ts))
            elif what < 0.85:
                writes.append(chat.set(key, "channel_id", rng.choice(channels)))
            else:
                writes.append(chat.set(key, "body", rng.choice(["x", "y", "hidden"])))
        await asyncio.gather(*writes)


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_window_of_my_channels_equals_order_by_limit_after_every_step_under_concurrent_writes(
    chat: Chat, clients: list[WindowClient], seed: int
) -> None:
    """Random joins, leaves and message writes: each step is SQL's IN (SELECT ...) ORDER BY ... LIMIT."""
    rng = random.Random(seed)
    for key in range(1, 13):
        await chat.post(key, rng.choice("abcd"), rng.choice([None, *range(1, 8)]), rng.choice("xxh"))
    await chat.join(1, "alice", "a")
    base, head = await chat.tables(), await chat.log.head()
    client = await follow(chat, clients)
    await random_writes(chat, rng, 50, {1: "a"})
    # Live again first: a window read again under way (a join, a leave) takes the posts into its snapshot.
    written, gateway = await chat.log.head(), chat.gateway
    await wait_for(lambda: gateway.tailer.head == written and not gateway.sync.catch_ups.active, 20, "live")
    for key in range(101, 106):  # five newer rows of a channel of hers: the fifth moves one out
        await chat.post(key, "a", 40 + key)
    want = await chat.newest_sql()
    await wait_for(lambda: client.ids() == want, 20, "the window settles on SQL's")
    tables = await chat.tables_by_seq(base, head)
    assert want == newest(tables[max(tables)]), "SQL = the model"
    steps = client.steps()
    check_steps(steps, tables)
    assert [kind for kind, _, _ in steps].count("snapshot") >= 2, "some join, leave or row read it again"
    assert any("out" in data for name, data in client.frames if name == "newest"), "a row moved out"


async def test_a_join_moves_newer_messages_in_at_one_seq_and_a_leave_brings_older_ones_back(
    chat: Chat, clients: list[WindowClient]
) -> None:
    """A join refills the window at one seq (the channel's newer rows in, the oldest out); a leave too."""
    await chat.join(1, "alice", "a")
    for key, channel, ts in [(1, "a", 1), (2, "a", 2), (3, "a", 3), (4, "a", 4), (5, "a", 5)]:
        await chat.post(key, channel, ts)
    for key, channel, ts in [(6, "b", 6), (7, "b", 7), (8, "c", 8)]:
        await chat.post(key, channel, ts)
    client = await follow(chat, clients)
    assert client.ids() == [5, 4, 3, 2]
    await chat.join(2, "alice", "b")
    joined = await chat.log.head()
    await wait_for(lambda: client.ids() == [7, 6, 5, 4], 10, "b's newer messages move in")
    kind, seq, _ = client.steps()[-1]
    assert kind == "snapshot" and seq >= joined, "one read at one seq, at or after the join"
    assert not client.changes("newest"), "no envelope besides the read"
    await chat.post(9, "c", 9)  # not a channel of hers: nothing
    await chat.post(10, "b", 10)
    await wait_for(lambda: client.ids() == [10, 7, 6, 5], 10, "a newer message of b enters")
    assert client.changes("newest")[-1]["out"] == [{"id": 4}]
    await chat.join(3, "bob", "c")  # another user's join: nothing moves
    await chat.leave(2)
    await wait_for(lambda: client.ids() == [5, 4, 3, 2], 10, "b's messages move out, a's come back")
    assert client.ids() == await chat.newest_sql()
    metrics = chat.gateway.metrics
    assert metrics.relation_moves._value.get() == 2, "the join and the leave"
    assert metrics.window_refills._value.get() == 0, "no row left the window by itself"
    await chat.delete(5)
    await wait_for(lambda: client.ids() == [4, 3, 2, 1], 10, "a row leaving a full window brings the next")
    assert metrics.window_refills._value.get() == 1 and metrics.relation_moves._value.get() == 2


async def test_a_resume_after_joins_and_writes_gets_the_window_fresh(
    chat: Chat, clients: list[WindowClient]
) -> None:
    """A client that reconnects with its cursor after a join, a leave and posts holds the new window."""
    await chat.join(1, "alice", "a")
    for key, channel, ts in [(1, "a", 1), (2, "b", 2), (3, "c", 3)]:
        await chat.post(key, channel, ts)
    client = await follow(chat, clients)
    assert client.ids() == [1]
    cursor = await chat.log.head()
    await client.sio.disconnect()
    await chat.join(2, "alice", "b")
    await chat.join(3, "alice", "c")
    await chat.leave(1)
    await chat.post(4, "b", 4)
    await chat.post(5, "a", 5)
    back = await follow(chat, clients, cursor=cursor)
    await wait_for(lambda: back.ids() == [4, 3, 2], 10, "the window fresh after the resume")
    await chat.post(6, "c", 6)
    await wait_for(lambda: back.ids() == [6, 4, 3, 2], 10, "and live after it")
    assert back.ids() == await chat.newest_sql()


async def test_more_pages_the_window_of_my_channels_with_the_rows_after_its_last(
    chat: Chat, clients: list[WindowClient]
) -> None:
    """rxstore:more on a relation's window: a page of the next rows of her channels only, at her position."""
    await chat.join(1, "alice", "a")
    await chat.join(2, "alice", "b")
    for key in range(1, 11):
        await chat.post(key, "abc"[key % 3], key)  # c is not hers
    client = await follow(chat, clients)
    assert client.ids() == [10, 9, 7, 6]
    head = await chat.log.head()
    await wait_for(lambda: chat.gateway.tailer.head == head, 10, "every write broadcast")
    ack = await client.call(MORE, {"id": "newest", "n": 3})
    assert ack == {"ok": True, "seq": head, "added": 3, "limit": 7}, ack
    client.limit = 7
    pages = [[r["id"] for r in data["records"]] for name, data in client.frames if name == PAGE]
    assert pages == [[4, 3, 1]], "the rows after 6 of a and b, nothing sent again"
    await chat.leave(2)  # b goes: read again at the new limit
    await wait_for(lambda: client.ids() == [9, 6, 3], 10, "a's rows only, up to 7")
