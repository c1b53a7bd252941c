"""Paging a window (``rxstore:more``) on a real gateway, SQLite and PostgreSQL (WAL and trigger capture).

A plain python-socketio client: ``more`` sends only the rows after the last one the
client holds (an ``rxstore:page``), and the window then keeps ``limit + n`` rows; under
random concurrent writes, after every snapshot, page and envelope the client applied, its
window is the model's ``ORDER BY ... LIMIT`` at that seq with the limit of that moment;
past the end of the table it adds what is left; a bad ``n`` is a ``bad_request`` that
changes nothing. A ``TableStore`` loads more and keeps the widened window across a
gateway restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rxstore import RootStore, TableStore
from rxstore.client.connection import Backoff
from rxstore.gateway import User
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import MORE, PAGE, SNAPSHOT, SUBSCRIBE
from rxstore.protocol.subsets import SubsetError
from tests.gateway.harness import AUTH
from tests.gateway.live_queries.test_subsets import WireClient
from tests.gateway.placeholders import placeholders
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

LIMIT = 3
WINDOW = {
    "id": "chat",
    "topic": "messages",
    "where": [["channel", "=", "general"]],
    "order_by": [["ts", "desc"]],
    "limit": LIMIT,
}
ALL = {"id": "all", "topic": "messages", "where": [["channel", "=", "x"]]}
"""A subscription that is no window."""

Row = dict[str, Any]
Step = tuple[str, int, list[int], frozenset[int]]


def authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """Rows whose body is ``hidden`` are seen by nobody."""
    return row.get("body") != "hidden"


def newest(table: Mapping[int, Row], limit: int) -> list[int]:
    """The window computed here, independently of the gateway: newest first, NULL ts first, id last."""
    rows = [r for r in table.values() if r["channel"] == "general" and r["body"] != "hidden"]
    rows.sort(key=lambda r: (r["ts"] is not None, -(r["ts"] or 0), r["id"]))
    return [r["id"] for r in rows[:limit]]


class Messages:
    """A gateway serving ``messages (id, channel, ts, body)`` with a row filter."""

    def __init__(self, gateway: RealtimeGateway) -> None:
        self.gateway = gateway
        self.log: ChangeLog = gateway.log
        self.postgres = "postgres" in type(gateway.log).__name__.lower()

    def sql(self, text: str) -> str:
        return placeholders(text, postgres=self.postgres)

    async def insert(self, key: int, channel: str, ts: int | None, body: str = "x") -> None:
        sql = "INSERT INTO messages (id, channel, ts, body) VALUES (?, ?, ?, ?)"
        await self.log.execute(self.sql(sql), key, channel, ts, body)

    async def set(self, key: int, column: str, value: Any) -> None:
        await self.log.execute(self.sql(f"UPDATE messages SET {column} = ? WHERE id = ?"), value, key)

    async def delete(self, key: int) -> None:
        await self.log.execute(self.sql("DELETE FROM messages WHERE id = ?"), key)

    async def table(self) -> dict[int, Row]:
        return {r["id"]: dict(r) for r in await self.log.fetch("SELECT * FROM messages")}

    async def newest_sql(self, limit: int) -> list[int]:
        """The window as the database orders it."""
        sql = (
            "SELECT id FROM messages WHERE channel = 'general' AND body <> 'hidden' "
            f"ORDER BY ts DESC NULLS FIRST, id ASC LIMIT {limit}"
        )
        return [r["id"] for r in await self.log.fetch(sql)]

    async def tables_by_seq(self, base: dict[int, Row], after: int) -> dict[int, dict[int, Row]]:
        """The table after each seq from ``after`` on, rebuilt from the change log."""
        tables, table, cursor = {after: dict(base)}, dict(base), after
        while changes := await self.log.read(cursor, limit=1000):
            for change in changes:
                if change.record is None:
                    table.pop((change.old or {})["id"], None)
                else:
                    table[change.record["id"]] = dict(change.record)
                tables[change.seq] = dict(table)
                cursor = change.seq
        return tables


def url_of(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def messages(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Messages]:
    log = open_change_log(url_of(request, tmp_path))
    await log.open()
    await log.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, ts INTEGER, body TEXT)"
    )
    served = Messages(RealtimeGateway(log, topics=["messages"], auth=AUTH, authorize=authorize))
    await served.gateway.start(port=0)
    try:
        yield served
    finally:
        await served.gateway.stop()


class PageClient(WireClient):
    """A wire client that follows one window: snapshots replace, pages add, envelopes move."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = LIMIT

    async def more(self, n: int, sub_id: str = "chat") -> Any:
        """``rxstore:more``; the limits it may have meanwhile are noted in the frames."""
        self.frames.append(("test:more", self.limit + n))
        ack = await self.call(MORE, {"id": sub_id, "n": n})
        if ack.get("ok"):
            self.limit = ack["limit"]
        self.frames.append(("test:acked", self.limit))
        return ack

    def steps(self, sub_id: str = "chat") -> list[Step]:
        """``(kind, seq, ids in order, limits it may have)`` after each snapshot, page or envelope."""
        steps: list[Step] = []
        rows: dict[int, Row] = {}
        chunks: list[Row] = []
        limits = frozenset({LIMIT})
        for name, data in self.frames:
            if name == "test:more":
                limits = limits | {data}
            elif name == "test:acked":
                limits = frozenset({data})
            elif name == SNAPSHOT and data["event"] == sub_id:
                chunks.extend(data["records"])
                if not data.get("more"):
                    rows, chunks = {r["id"]: r for r in chunks}, []
                    steps.append(("snapshot", data["seq"], _ordered(rows), limits))
            elif name == PAGE and data["event"] == sub_id:
                for record in data["records"]:
                    assert record["id"] not in rows, f"page at {data['seq']} sends {record['id']} again"
                    rows[record["id"]] = record
                steps.append(("page", data["seq"], _ordered(rows), limits))
            elif name == sub_id:
                if data["op"] == "DELETE":
                    rows.pop(data["old"]["id"])
                else:
                    rows[data["record"]["id"]] = data["record"]
                for out in data.get("out", ()):
                    rows.pop(out["id"])
                steps.append(("change", data["seq"], _ordered(rows), limits))
            assert len(rows) <= max(limits), f"more rows than the limit after {name}"
        return steps

    def ids(self, sub_id: str = "chat") -> list[int]:
        steps = self.steps(sub_id)
        return steps[-1][2] if steps else []


def _ordered(rows: Mapping[int, Row]) -> list[int]:
    ordered = sorted(rows.values(), key=lambda r: (r["ts"] is not None, -(r["ts"] or 0), r["id"]))
    return [r["id"] for r in ordered]


@pytest.fixture
async def clients() -> AsyncIterator[list[PageClient]]:
    made: list[PageClient] = []
    try:
        yield made
    finally:
        for client in made:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()


async def follow(messages: Messages, clients: list[PageClient]) -> PageClient:
    client = PageClient()
    clients.append(client)
    payload = {"token": AUTH.issue("alice"), "cursor": None, "topics": [], "subscriptions": [WINDOW]}
    await client.sio.connect(messages.gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)
    await wait_for(lambda: client.live >= 1, 10, "live")
    return client


def check_steps(steps: list[Step], tables: dict[int, dict[int, Row]]) -> None:
    """Each envelope's or page's step is the window at its seq (with a limit it may have then)."""
    seqs = sorted(tables)
    for index, (kind, seq, got, limits) in enumerate(steps):
        if kind != "snapshot":
            wants = [newest(tables[seq], limit) for limit in limits]
            assert got in wants, f"step {index}: after the {kind} of seq {seq}"
            continue
        # a snapshot at P holds the changes of its skip too (PostgreSQL): any seq up to the next step
        bound = steps[index + 1][1] if index + 1 < len(steps) else seqs[-1] + 1
        candidates = [s for s in seqs if seq <= s < bound] or [seq]
        wants = [newest(tables[s], limit) for s in candidates for limit in limits]
        assert got in wants, f"step {index}: the snapshot at seq {seq}"


async def test_more_sends_only_the_rows_after_the_last_and_the_window_keeps_the_new_limit(
    messages: Messages, clients: list[PageClient]
) -> None:
    """A page of the next visible rows at the client's position; then a newer row moves the 6th out."""
    for key in range(1, 11):
        await messages.insert(key, "general", key, "hidden" if key == 6 else "x")
    await messages.insert(11, "random", 99)
    client = await follow(messages, clients)
    assert client.ids() == [10, 9, 8]
    head = await messages.log.head()
    ack = await client.more(3)
    assert ack == {"ok": True, "seq": head, "added": 3, "limit": 6}, ack
    pages = [data for name, data in client.frames if name == PAGE]
    assert [[r["id"] for r in page["records"]] for page in pages] == [[7, 5, 4]], "only the rows after 8"
    assert client.ids() == [10, 9, 8, 7, 5, 4] == await messages.newest_sql(6)
    assert len([name for name, _ in client.frames if name == SNAPSHOT]) == 1, "nothing read again"
    metrics = messages.gateway.metrics
    assert metrics.window_pages._value.get() == 1 and metrics.window_refills._value.get() == 0
    await messages.insert(12, "general", 50)
    await wait_for(lambda: client.ids() == [12, 10, 9, 8, 7, 5], 10, "a newer row enters the window of 6")
    assert client.changes("chat")[-1]["out"] == [{"id": 4}], "the sixth row moves out, not the third"


async def test_more_past_the_end_adds_what_is_left_then_nothing(
    messages: Messages, clients: list[PageClient]
) -> None:
    """5 rows, a window of 3: more(10) adds 2 (limit 13); more(1) adds none; a new row enters without out."""
    for key in range(1, 6):
        await messages.insert(key, "general", key)
    client = await follow(messages, clients)
    ack = await client.more(10)
    assert ack["ok"] is True and ack["added"] == 2 and ack["limit"] == 13, ack
    assert client.ids() == [5, 4, 3, 2, 1]
    frames = len(client.frames)
    ack = await client.more(1)
    assert ack["ok"] is True and ack["added"] == 0 and ack["limit"] == 14, ack
    assert not [n for n, _ in client.frames[frames:] if n in (PAGE, SNAPSHOT)], "nothing to send"
    await messages.insert(6, "general", 0)
    await wait_for(lambda: client.ids() == [5, 4, 3, 2, 1, 6], 10, "the oldest row comes in")
    assert "out" not in client.changes("chat")[-1], "a window that is not full moves nothing out"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "chat", "n": 0}, "'n' must be a positive integer, got 0"),
        ({"id": "chat", "n": -2}, "'n' must be a positive integer, got -2"),
        ({"id": "chat", "n": "3"}, "'n' must be a positive integer, got '3'"),
        ({"id": "chat", "n": 2.5}, "'n' must be a positive integer"),
        ({"id": "chat", "n": 998}, "the limit would be 1001, over 1000 (MAX_LIMIT)"),
        ({"id": "nope", "n": 1}, "no subscription 'nope' on this connection"),
        ({"id": "all", "n": 1}, "only a window with a limit can be widened"),
        ({"n": 1}, "'id' must be a subscription id string"),
        ([1, 2], "rxstore:more takes {'id'"),
    ],
)
async def test_a_bad_more_is_a_bad_request_naming_the_problem_and_nothing_else_changes(
    messages: Messages, clients: list[PageClient], data: Any, message: str
) -> None:
    """n not a positive integer, over MAX_LIMIT, an unknown id or one that is no window: bad_request."""
    for key in range(1, 6):
        await messages.insert(key, "general", key)
    client = await follow(messages, clients)
    ack = await client.call(SUBSCRIBE, ALL)
    assert ack["ok"] is True, ack
    ack = await client.call(MORE, data)
    assert ack["ok"] is False and ack["error"] == "bad_request", ack
    assert message in ack["message"], ack["message"]
    await messages.insert(6, "general", 9)
    await wait_for(lambda: client.ids() == [6, 5, 4], 10, "the window goes on, still of 3")
    assert messages.gateway.metrics.window_pages._value.get() == 0


@pytest.mark.parametrize("seed", [1, 2])
async def test_more_under_concurrent_writes_keeps_the_window_equal_to_order_by_limit(
    messages: Messages, clients: list[PageClient], seed: int
) -> None:
    """Pages asked for while rows are written: every step is the model's ORDER BY ... LIMIT at its seq."""
    rng = random.Random(seed)
    for key in range(1, 16):
        await messages.insert(
            key, rng.choice(["general", "general", "random"]), rng.choice([None, *range(9)])
        )
    base, head = await messages.table(), await messages.log.head()
    client = await follow(messages, clients)
    present = set(base)
    for _ in range(6):
        writes, touched = [], set()
        for _ in range(rng.randint(2, 6)):
            key = rng.randint(1, 40)
            ts = rng.choice([None, *range(12)])
            if key in touched:  # one write per key a round: concurrent ones run in any order
                continue
            touched.add(key)
            if key not in present:
                present.add(key)
                body = rng.choice(["x", "x", "hidden"])  # a third of them authorize hides
                writes.append(messages.insert(key, rng.choice(["general", "random"]), ts, body))
            elif rng.random() < 0.3:
                present.discard(key)
                writes.append(messages.delete(key))
            elif rng.random() < 0.7:
                writes.append(messages.set(key, "ts", ts))
            else:
                writes.append(messages.set(key, "channel", rng.choice(["general", "random"])))
        acks = await asyncio.gather(client.more(rng.randint(1, 3)), *writes)
        assert acks[0]["ok"] is True, acks[0]
    for key in range(101, 131):  # older rows, some hidden: the window is full, rows lie beyond it
        await messages.insert(key, "general", -key, "hidden" if key % 3 == 0 else "x")
    written = await messages.log.head()
    await wait_for(lambda: messages.gateway.tailer.head == written, 20, "every write broadcast")
    ack = await client.more(2)  # nothing written meanwhile: a page
    assert ack["ok"] is True and ack["added"] == 2, ack
    await messages.insert(200, "general", 100)  # the newest row: an INSERT, the last moves out
    want = await messages.newest_sql(client.limit)
    await wait_for(lambda: client.ids() == want, 20, "the window settles on SQL's")
    check_steps(client.steps(), await messages.tables_by_seq(base, head))
    kinds = {kind for kind, *_ in client.steps()}
    assert {"change", "page", "snapshot"} <= kinds, kinds


class Chat(TableStore[dict[str, Any]]):
    table = "messages"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_of(request, tmp_path)


async def test_a_store_loads_more_and_keeps_the_widened_window_across_a_gateway_restart(url: str) -> None:
    """store.more(2) returns 2 with the rows in the store; after a restart with writes it holds 5 again."""
    log = open_change_log(url)
    await log.open()
    await log.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, ts INTEGER)")
    params = "(?, ?, ?)" if "sqlite" in url else "($1, $2, $3)"
    for key in range(1, 9):
        await log.execute(f"INSERT INTO messages (id, channel, ts) VALUES {params}", key, "general", key)
    gateway = RealtimeGateway(log, topics=["messages"], auth=AUTH)
    await gateway.start(port=0)
    port = gateway.port
    chat = Chat(where={"channel": "general"}, order_by=[("ts", "desc")], limit=3, event="chat")
    root = RootStore(
        gateway.url, stores=[chat], token=AUTH.issue("alice"), backoff=Backoff(initial=0.05, maximum=0.2)
    )
    try:
        async with root:
            await chat.live()
            assert [r["id"] for r in chat.value.ordered()] == [8, 7, 6]
            assert await chat.more(2) == 2
            assert [r["id"] for r in chat.value.ordered()] == [8, 7, 6, 5, 4]
            assert chat.subset.limit == 5
            with pytest.raises(SubsetError) as bad:
                await chat.more(0)
            assert bad.value.code == "bad_request" and chat.subset.limit == 5
            await gateway.stop()
            await wait_for(lambda: not root.connection_state.connected, what="offline")
            log = open_change_log(url)
            await log.open()
            await log.execute("DELETE FROM messages WHERE id = " + ("?" if "sqlite" in url else "$1"), 7)
            gateway = RealtimeGateway(log, topics=["messages"], auth=AUTH)
            await gateway.start(port=port)
            await wait_for(
                lambda: [r["id"] for r in chat.value.ordered()] == [8, 6, 5, 4, 3],
                10,
                "5 rows after the restart",
            )
    finally:
        await gateway.stop()


async def test_a_page_still_comes_when_only_another_table_was_written_since_the_clients_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log ahead of the client by an audit row: a page at the log's seq; by a message: read whole.

    Writes from another connection reach the tailer only on the gateway's own next write here
    (its wait is held), so the log is ahead of the client when ``more`` is asked.
    """
    db = tmp_path / "app.db"
    log = SQLiteChangeLog(f"sqlite:///{db}", poll_interval=3600)
    await log.open()
    await log.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, ts INTEGER, body TEXT)"
    )
    await log.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT)")
    wait = log.wait
    monkeypatch.setattr(log, "wait", lambda timeout: wait(3600))  # woken by the gateway's writes only
    served = Messages(RealtimeGateway(log, topics=["messages", "audit"], auth=AUTH, authorize=authorize))
    await served.gateway.start(port=0)
    clients: list[PageClient] = []
    try:
        for key in range(1, 9):
            await served.insert(key, "general", key)
        client = await follow(served, clients)
        assert client.ids() == [8, 7, 6]
        with sqlite3.connect(db) as outside:  # captured by the triggers, not yet sent
            outside.execute("INSERT INTO audit (id, what) VALUES (1, 'login')")
        ahead = await log.head()
        assert served.gateway.tailer.head < ahead
        ack = await client.more(3)
        assert ack == {"ok": True, "seq": ahead, "added": 3, "limit": 6}, ack
        metrics = served.gateway.metrics
        assert metrics.window_pages._value.get() == 1 and metrics.window_refills._value.get() == 0
        assert client.ids() == [8, 7, 6, 5, 4, 3]
        with sqlite3.connect(db) as outside:  # the window's own table: the page cannot be put together
            outside.execute("INSERT INTO messages (id, channel, ts, body) VALUES (9, 'general', 50, 'x')")
        ack = await client.more(1)
        assert ack["ok"] is True and ack["seq"] == await log.head() and ack["limit"] == 7, ack
        assert metrics.window_pages._value.get() == 1 and metrics.window_refills._value.get() == 1
        assert client.ids() == [9, 8, 7, 6, 5, 4, 3] == await served.newest_sql(7), "read whole, with 9"
        await served.insert(10, "general", 0)  # the gateway's own write: the tailer goes on
        await wait_for(lambda: client.ids() == [9, 8, 7, 6, 5, 4, 3], 10, "nothing enters: 10 is oldest")
        await served.insert(11, "general", 60)
        await wait_for(lambda: client.ids() == [11, 9, 8, 7, 6, 5, 4], 10, "a newer row, 3 moves out")
    finally:
        for each in clients:
            with contextlib.suppress(Exception):
                await each.sio.disconnect()
        await served.gateway.stop()


async def test_more_after_a_last_row_whose_order_value_reads_as_infinity_reads_the_window_whole(
    messages: Messages, clients: list[PageClient]
) -> None:
    """A text order value "Infinity" (the log's form of a non-finite number) is no keyset: read whole."""
    for key, body in [(1, "Infinity"), (2, "b"), (3, "c")]:
        await messages.insert(key, "general", key, body)
    client = PageClient()
    clients.append(client)
    window = {**WINDOW, "order_by": [["body", "asc"]], "limit": 1}
    payload = {"token": AUTH.issue("alice"), "cursor": None, "topics": [], "subscriptions": [window]}
    await client.sio.connect(messages.gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)
    await wait_for(lambda: client.live >= 1, 10, "live")
    assert [r["id"] for r in client.rows("chat").values()] == [1]
    ack = await client.call(MORE, {"id": "chat", "n": 1})
    assert ack["ok"] is True and ack["added"] == 1 and ack["limit"] == 2, ack
    assert sorted(client.rows("chat")) == [1, 2]
    assert messages.gateway.metrics.window_refills._value.get() == 1, "read whole, not a page"
