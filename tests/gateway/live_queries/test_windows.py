"""Windows (``order_by`` + ``limit``) on a real gateway, seen by a plain python-socketio client.

Both change logs (SQLite; PostgreSQL with WAL capture, and with trigger capture when
``RXSTORE_TEST_WAL_LEVEL=replica``): under random concurrent inserts, updates and
deletes, a window composed with ``authorize`` is, after each envelope and snapshot the
client applied, exactly the first ``limit`` rows of the database at that envelope's
seq (the tables at each seq are rebuilt from the change log), and at the end exactly
what ``SELECT ... ORDER BY ... LIMIT`` gives. A full window takes a row in and moves
its last out in one envelope; a row leaving it brings the next one in; a resume after
writes gets the window fresh; bad windows are refused naming the problem.
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
from rxstore.protocol.events import SNAPSHOT, SUBSCRIBE
from rxstore.protocol.subsets import MAX_LIMIT
from tests.gateway.harness import AUTH
from tests.gateway.live_queries.test_subsets import WireClient
from tests.gateway.placeholders import placeholders
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

LIMIT = 4
WINDOW = {
    "id": "chat",
    "topic": "messages",
    "where": [["channel", "=", "general"]],
    "order_by": [["ts", "desc"]],
    "limit": LIMIT,
}
WINDOW_SQL = "channel = 'general' AND body <> 'hidden' ORDER BY ts DESC NULLS FIRST, id ASC"

Row = dict[str, Any]


def authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """Rows whose body is ``hidden`` are seen by nobody."""
    return row.get("body") != "hidden"


def window_of(table: Mapping[int, Row]) -> list[Row]:
    """The window computed here, independently of the gateway: newest first, NULL ts first, id last."""
    rows = [r for r in table.values() if r["channel"] == "general" and r["body"] != "hidden"]
    rows.sort(key=lambda r: (r["ts"] is not None, -(r["ts"] or 0), r["id"]))
    return rows[:LIMIT]


class Messages:
    """A gateway serving ``messages (id, channel, ts, body)`` with a row filter."""

    def __init__(self, gateway: RealtimeGateway) -> None:
        self.gateway = gateway
        self.log: ChangeLog = gateway.log
        self.postgres = "postgres" in type(gateway.log).__name__.lower()

    def sql(self, text: str) -> str:
        return placeholders(text, postgres=self.postgres)

    async def insert(self, key: int, channel: str, ts: int | None, body: str = "x") -> None:
        await self.log.execute(
            self.sql("INSERT INTO messages (id, channel, ts, body) VALUES (?, ?, ?, ?)"),
            key,
            channel,
            ts,
            body,
        )

    async def set(self, key: int, column: str, value: Any) -> None:
        await self.log.execute(self.sql(f"UPDATE messages SET {column} = ? WHERE id = ?"), value, key)

    async def delete(self, key: int) -> None:
        await self.log.execute(self.sql("DELETE FROM messages WHERE id = ?"), key)

    async def table(self) -> dict[int, Row]:
        return {r["id"]: dict(r) for r in await self.log.fetch("SELECT * FROM messages")}

    async def window_sql(self) -> list[Row]:
        """The window as the database orders it."""
        rows = await self.log.fetch(f"SELECT * FROM messages WHERE {WINDOW_SQL} LIMIT {LIMIT}")
        return [dict(r) for r in rows]

    async def tables_by_seq(self, base: dict[int, Row], after: int) -> dict[int, dict[int, Row]]:
        """The table after each seq from ``after`` on, rebuilt from the change log."""
        tables, table, cursor = {after: dict(base)}, dict(base), after
        while changes := await self.log.read(cursor, limit=1000):
            for change in changes:
                if change.topic == "messages":
                    if change.record is None:
                        table.pop((change.old or {})["id"], None)
                    else:
                        table[change.record["id"]] = dict(change.record)
                tables[change.seq] = dict(table)
                cursor = change.seq
        return tables


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def messages(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Messages]:
    url = (
        f"sqlite:///{tmp_path / 'app.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    )
    log = open_change_log(url)
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


class WindowClient(WireClient):
    """A wire client that follows one window as a client does: snapshots replace, envelopes move."""

    def applied(self, sub_id: str) -> list[tuple[str, int, dict[int, Row]]]:
        """Each step of the window: ``(kind, seq, rows)`` after each snapshot or envelope applied."""
        steps: list[tuple[str, int, dict[int, Row]]] = []
        rows: dict[int, Row] = {}
        chunks: list[Row] = []
        for name, data in self.frames:
            if name == SNAPSHOT and data["event"] == sub_id:
                chunks.extend(data["records"])
                if not data.get("more"):
                    rows, chunks = {r["id"]: r for r in chunks}, []
                    steps.append(("snapshot", data["seq"], dict(rows)))
            elif name == sub_id:
                if data["op"] == "DELETE":
                    rows.pop(data["old"]["id"])
                else:
                    rows[data["record"]["id"]] = data["record"]
                for out in data.get("out", ()):
                    rows.pop(out["id"])
                assert len(rows) <= LIMIT
                steps.append(("change", data["seq"], dict(rows)))
        return steps


async def follow(messages: Messages, clients: list[WindowClient], **auth: Any) -> WindowClient:
    client = WindowClient()
    clients.append(client)
    payload = {"token": AUTH.issue("alice"), "cursor": None, "topics": [], "subscriptions": [WINDOW], **auth}
    await client.sio.connect(messages.gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)
    await wait_for(lambda: client.live >= 1, 10, "live")
    return client


@pytest.fixture
async def clients() -> AsyncIterator[list[WindowClient]]:
    made: list[WindowClient] = []
    try:
        yield made
    finally:
        for client in made:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()


async def random_writes(messages: Messages, rng: random.Random, rounds: int, *, paced: bool = False) -> None:
    """Rounds of 1-4 concurrent writes: inserts, updates of ts / channel / body, deletes.

    Args:
        messages: The served table.
        rng: The seeded source of the writes.
        rounds: How many rounds.
        paced: Wait after each round until the log has numbered its changes (trigger capture
            numbers what committed in batches: unpaced, 60 rounds may reach a client as a few
            frames, too few steps to check).
    """
    present: set[int] = set((await messages.table()).keys())
    for _ in range(rounds):
        head = await messages.log.head()
        writes = []
        touched: set[int] = set()
        for _ in range(rng.randint(1, 4)):
            key = rng.randint(1, 24)
            if key in touched:
                continue
            touched.add(key)
            ts = rng.choice([None, *range(1, 9)])
            if key not in present:
                present.add(key)
                channel = rng.choice(["general", "general", "random"])
                writes.append(messages.insert(key, channel, ts, rng.choice(["x", "x", "x", "hidden"])))
            else:
                what = rng.random()
                if what < 0.25:
                    present.discard(key)
                    writes.append(messages.delete(key))
                elif what < 0.6:
                    writes.append(messages.set(key, "ts", ts))
                elif what < 0.8:
                    writes.append(messages.set(key, "channel", rng.choice(["general", "random"])))
                else:
                    writes.append(messages.set(key, "body", rng.choice(["x", "y", "hidden"])))
        await asyncio.gather(*writes)
        if paced:

            async def numbered(want: int = head + len(writes)) -> bool:
                return await messages.log.head() >= want

            await wait_for(numbered, 10, "the round's changes numbered")


def check_steps(steps: list[tuple[str, int, dict[int, Row]]], tables: dict[int, dict[int, Row]]) -> None:
    """Each envelope's step equals the window at its seq; a snapshot's, at a seq before the next step."""
    seqs = sorted(tables)
    for index, (kind, seq, rows) in enumerate(steps):
        got = sorted(rows.values(), key=lambda r: r["id"])
        if kind == "change":
            want = sorted(window_of(tables[seq]), key=lambda r: r["id"])
            assert got == want, f"step {index}: after the envelope of seq {seq}"
        else:  # a snapshot at P holds the changes of its skip too (PostgreSQL): any seq up to the next step
            bound = steps[index + 1][1] if index + 1 < len(steps) else seqs[-1] + 1
            candidates = [s for s in seqs if seq <= s < bound] or [seq]
            wants = [sorted(window_of(tables[s]), key=lambda r: r["id"]) for s in candidates]
            assert got in wants, f"step {index}: the snapshot at seq {seq}"


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_window_equals_order_by_limit_after_every_step_under_concurrent_writes(
    messages: Messages, clients: list[WindowClient], seed: int
) -> None:
    """After each envelope the client applied, its window is SQL's ORDER BY ... LIMIT at that seq."""
    rng = random.Random(seed)
    for key in range(1, 11):
        await messages.insert(key, rng.choice(["general", "random"]), rng.choice([None, 1, 2, 3, 4]))
    base, head = await messages.table(), await messages.log.head()
    client = await follow(messages, clients)
    await random_writes(messages, rng, 60)
    want = await messages.window_sql()

    def settled() -> bool:  # the rows' content too
        steps = client.applied("chat")
        return bool(steps) and steps[-1][2] == {r["id"]: r for r in want}

    await wait_for(settled, 20, "the window settles on SQL's")
    steps = client.applied("chat")
    assert [r["id"] for r in want] == [r["id"] for r in window_of(await messages.table())]  # SQL = model
    check_steps(steps, await messages.tables_by_seq(base, head))
    kinds = [kind for kind, _, _ in steps]
    assert kinds.count("snapshot") >= 2, "some row left the full window: it was read again"
    assert any("out" in data for name, data in client.frames if name == "chat")


async def test_a_full_window_takes_a_newer_row_and_moves_its_last_out_in_one_envelope(
    messages: Messages, clients: list[WindowClient]
) -> None:
    """An INSERT into a full window carries the key that moves out; a hidden row never enters."""
    for key, ts in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]:
        await messages.insert(key, "general", ts)
    client = await follow(messages, clients)
    assert sorted(client.applied("chat")[-1][2]) == [2, 3, 4, 5]
    await messages.insert(6, "general", 9, "hidden")  # would be first: authorize hides it
    await messages.insert(7, "general", 8)
    await wait_for(lambda: 7 in client.applied("chat")[-1][2], 10, "7 moves in")
    entering = [data for name, data in client.frames if name == "chat"]
    assert len(entering) == 1 and entering[0]["op"] == "INSERT" and entering[0]["out"] == [{"id": 2}]
    await messages.delete(7)  # leaves the full window: the next row beyond (2) comes back, 6 never
    await wait_for(lambda: sorted(client.applied("chat")[-1][2]) == [2, 3, 4, 5], 10, "2 moves back in")
    await messages.set(6, "body", "shown")  # authorization gained: it enters first, 2 moves out
    await wait_for(lambda: sorted(client.applied("chat")[-1][2]) == [3, 4, 5, 6], 10, "6 moves in")


async def test_a_resume_after_writes_gets_the_window_fresh(
    messages: Messages, clients: list[WindowClient]
) -> None:
    """A client that reconnects with its cursor after writes holds exactly the new window."""
    for key in range(1, 7):
        await messages.insert(key, "general", key)
    client = await follow(messages, clients)
    cursor = await messages.log.head()
    await client.sio.disconnect()
    await messages.delete(6)
    await messages.set(5, "channel", "random")
    await messages.insert(9, "general", 2)
    back = await follow(messages, clients, cursor=cursor)
    want = await messages.window_sql()
    await wait_for(lambda: sorted(back.applied("chat")[-1][2]) == sorted(r["id"] for r in want), 10, "fresh")
    assert [r["id"] for r in want] == [4, 3, 2, 9]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"order_by": [["nope", "asc"]]}, "order_by 1: 'messages' has no column 'nope'"),
        ({"order_by": [["ts", "up"]]}, "direction must be 'asc' or 'desc'"),
        ({"limit": MAX_LIMIT + 1}, f"limit is at most {MAX_LIMIT} (MAX_LIMIT)"),
        ({"limit": 0}, "limit must be a positive integer"),
        ({"limit": "5"}, "limit must be a positive integer"),
        ({"after": [1]}, "after holds 2 values"),
        ({"after": ["x", 1]}, "after value 1: column 'ts' is integer"),
        ({"order_by": "ts; DROP TABLE messages"}, "'order_by' must be a list"),
    ],
)
async def test_a_bad_window_is_refused_naming_the_problem_and_nothing_else_changes(
    messages: Messages, clients: list[WindowClient], change: dict[str, Any], message: str
) -> None:
    """Unknown columns, bad directions, limits and keysets: invalid_subscription; the window goes on."""
    await messages.insert(1, "general", 1)
    client = await follow(messages, clients)
    ack = await client.call(SUBSCRIBE, {**WINDOW, **change})
    assert ack["ok"] is False and ack["error"] == "invalid_subscription", ack
    assert message in ack["message"], ack["message"]
    await messages.insert(2, "general", 2)
    await wait_for(lambda: 2 in client.applied("chat")[-1][2], 10, "the window goes on")
    assert len(await messages.table()) == 2
