"""Relations (a subquery term) on a real gateway, seen by a plain python-socketio client.

``messages WHERE channel_id IN (SELECT channel_id FROM memberships WHERE user_id = <sub>)``
on both change logs (SQLite; PostgreSQL with WAL capture, and with trigger capture when
``RXSTORE_TEST_WAL_LEVEL=replica``): a join moves the channel's messages in (one read at
one seq, later messages following), a leave moves them out; under random concurrent
membership and message writes the client's rows equal, after every snapshot and envelope,
the SQL result at that seq (tables rebuilt from the change log), no change is applied
twice; claims, ``can_subscribe`` on the related table, ``or`` groups, a resume, the bound
and bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway import User
from rxstore.gateway.delivery import shared_reads
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.queries import relations
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import SNAPSHOT, SUBSCRIBE
from tests.gateway.harness import AUTH
from tests.gateway.live_queries.test_subsets import WireClient
from tests.gateway.placeholders import placeholders
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

MINE = {"select": "channel_id", "from": "memberships", "where": [["user_id", "=", {"claim": "sub"}]]}
RELATION = {"id": "mine", "topic": "messages", "where": [["channel_id", "in", MINE]]}
RELATION_SQL = (
    "SELECT * FROM messages WHERE body <> 'hidden' AND channel_id IN "
    "(SELECT channel_id FROM memberships WHERE user_id = 'alice')"
)
NOT_RELATION_SQL = (
    "SELECT * FROM messages WHERE body <> 'hidden' AND NOT (channel_id IN "
    "(SELECT channel_id FROM memberships WHERE user_id = 'alice' AND channel_id IS NOT NULL))"
)

Row = dict[str, Any]
Tables = dict[str, dict[int, Row]]


def authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """Messages whose body is ``hidden`` are seen by nobody (memberships are never sent)."""
    return row.get("body") != "hidden"


def can_subscribe(user: User, topic: str) -> bool:
    """Mallory may not read memberships, so not through a subquery either."""
    return not (user.id == "mallory" and topic == "memberships")


def expected(tables: Tables, user: str = "alice") -> set[int]:
    """The relation computed here, independently of the gateway and of SQL."""
    channels = {m["channel_id"] for m in tables["memberships"].values() if m["user_id"] == user}
    return {
        key
        for key, row in tables["messages"].items()
        if row["channel_id"] in channels and row["body"] != "hidden"
    }


def expected_not(tables: Tables, user: str = "alice") -> set[int]:
    """``NOT (channel_id IN (SELECT ...))`` here: a NULL channel is in it only while the set is empty."""
    channels = {m["channel_id"] for m in tables["memberships"].values() if m["user_id"] == user}
    return {
        key
        for key, row in tables["messages"].items()
        if (row["channel_id"] not in channels if row["channel_id"] is not None else not channels)
        and row["body"] != "hidden"
    }


class Chat:
    """A gateway serving ``messages`` and ``memberships``."""

    def __init__(self, gateway: RealtimeGateway) -> None:
        self.gateway = gateway
        self.log: ChangeLog = gateway.log
        self.postgres = "postgres" in type(gateway.log).__name__.lower()

    def sql(self, text: str) -> str:
        return placeholders(text, postgres=self.postgres)

    async def post(self, key: int, channel: str | None, body: str = "x") -> None:
        await self.log.execute(
            self.sql("INSERT INTO messages (id, channel_id, body) VALUES (?, ?, ?)"), key, channel, body
        )

    async def join(self, key: int, user: str, channel: str) -> None:
        await self.log.execute(
            self.sql("INSERT INTO memberships (id, user_id, channel_id) VALUES (?, ?, ?)"), key, user, channel
        )

    async def leave(self, key: int) -> None:
        await self.log.execute(self.sql("DELETE FROM memberships WHERE id = ?"), key)

    async def tables(self) -> Tables:
        return {
            name: {r["id"]: dict(r) for r in await self.log.fetch(f"SELECT * FROM {name}")}
            for name in ("messages", "memberships")
        }

    async def relation_sql(self) -> set[int]:
        return {r["id"] for r in await self.log.fetch(RELATION_SQL)}

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
    await log.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, channel_id TEXT, body TEXT)")
    await log.execute("CREATE TABLE memberships (id INTEGER PRIMARY KEY, user_id TEXT, channel_id TEXT)")
    await log.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, channel_id TEXT)")
    gateway = RealtimeGateway(
        log,
        topics=["messages", "memberships"],
        auth=AUTH,
        authorize=authorize,
        can_subscribe=can_subscribe,
    )
    served = Chat(gateway)
    await gateway.start(port=0)
    try:
        yield served
    finally:
        await gateway.stop()


class RelationClient(WireClient):
    """A wire client that applies one subscription's snapshots (replacing) and envelopes."""

    def steps(self, sub_id: str = "mine") -> list[tuple[str, int, set[int]]]:
        """``(kind, seq, ids)`` after each whole snapshot or envelope of ``sub_id``."""
        steps: list[tuple[str, int, set[int]]] = []
        rows: set[int] = set()
        chunks: list[Row] = []
        for name, data in self.frames:
            if name == SNAPSHOT and data["event"] == sub_id:
                chunks.extend(data["records"])
                if not data.get("more"):
                    rows, chunks = {r["id"] for r in chunks}, []
                    steps.append(("snapshot", data["seq"], set(rows)))
            elif name == sub_id:
                if data["op"] == "DELETE":
                    rows.discard(data["old"]["id"])
                else:
                    rows.add(data["record"]["id"])
                steps.append(("change", data["seq"], set(rows)))
        return steps

    def ids(self, sub_id: str = "mine") -> set[int]:
        steps = self.steps(sub_id)
        return steps[-1][2] if steps else set()


@pytest.fixture
async def clients() -> AsyncIterator[list[RelationClient]]:
    made: list[RelationClient] = []
    try:
        yield made
    finally:
        for client in made:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()


async def follow(
    chat: Chat, clients: list[RelationClient], user: str = "alice", subscription: Any = None, **auth: Any
) -> RelationClient:
    client = RelationClient()
    clients.append(client)
    subscriptions = [subscription or RELATION]
    payload = {
        "token": AUTH.issue(user),
        "cursor": None,
        "topics": [],
        "subscriptions": subscriptions,
        **auth,
    }
    await client.sio.connect(chat.gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)
    await wait_for(lambda: client.live >= 1, 10, "live")
    return client


async def random_writes(chat: Chat, rng: random.Random, rounds: int, channels: Sequence[str | None]) -> None:
    """Rounds of 1-4 concurrent joins, leaves and message posts, moves and deletes (a key once a round)."""
    tables = await chat.tables()
    members = {key: (row["user_id"], row["channel_id"]) for key, row in tables["memberships"].items()}
    present = set(tables["messages"])
    joinable = [channel for channel in channels if channel is not None]
    for _ in range(rounds):
        writes = []
        touched: set[tuple[str, int]] = set()  # a key once per batch: its writes run concurrently
        for _ in range(rng.randint(1, 4)):
            what = rng.random()
            if what < 0.3:
                key = rng.randint(2, 30)
                if ("memberships", key) in touched:
                    continue
                touched.add(("memberships", key))
                if key in members:
                    members.pop(key)
                    writes.append(chat.leave(key))
                else:
                    members[key] = (rng.choice(["alice", "alice", "bob"]), rng.choice(joinable))
                    writes.append(chat.join(key, *members[key]))
            else:
                key = rng.randint(1, 40)
                if ("messages", key) in touched:
                    continue
                touched.add(("messages", key))
                if key in present and rng.random() < 0.3:
                    present.discard(key)
                    writes.append(chat.log.execute(chat.sql("DELETE FROM messages WHERE id = ?"), key))
                elif key in present:
                    sql = chat.sql("UPDATE messages SET channel_id = ? WHERE id = ?")
                    writes.append(chat.log.execute(sql, rng.choice(channels), key))
                else:
                    present.add(key)
                    writes.append(chat.post(key, rng.choice(channels), rng.choice(["x", "x", "hidden"])))
        await asyncio.gather(*writes)


def check_steps(
    steps: list[tuple[str, int, set[int]]],
    tables: dict[int, Tables],
    expected: Callable[[Tables], set[int]] = expected,
) -> None:
    """Each step equals the relation at its seq; no change is applied at or below a snapshot's seq."""
    seqs = sorted(tables)
    floor = -1
    for index, (kind, seq, got) in enumerate(steps):
        if kind == "change":
            assert seq > floor, f"step {index}: change {seq} is in the snapshot at {floor}: applied twice"
            assert got == expected(tables[seq]), f"step {index}: after change {seq}"
            continue
        floor = seq
        # a snapshot at P holds the changes of its skip too (PostgreSQL): any seq up to the next step
        bound = steps[index + 1][1] if index + 1 < len(steps) else seqs[-1] + 1
        candidates = [s for s in seqs if seq <= s < bound] or [seq]
        assert got in [expected(tables[s]) for s in candidates], f"step {index}: the snapshot at seq {seq}"


async def test_a_join_moves_the_channels_messages_in_once_at_one_seq_and_a_leave_moves_them_out(
    chat: Chat, clients: list[RelationClient]
) -> None:
    """A membership INSERT brings exactly that channel's visible messages at one seq; DELETE takes them."""
    await chat.join(1, "alice", "general")
    await chat.join(2, "bob", "random")
    for key, channel, body in [(1, "general", "x"), (2, "general", "x"), (3, "random", "x")]:
        await chat.post(key, channel, body)
    await chat.post(4, "random", "hidden")
    await chat.post(5, "random", "x")
    client = await follow(chat, clients)
    assert client.ids() == {1, 2}
    await chat.join(3, "alice", "random")
    joined = await chat.log.head()
    await wait_for(lambda: client.ids() == {1, 2, 3, 5}, 10, "random's messages move in")
    kind, seq, _ = client.steps()[-1]
    assert kind == "snapshot" and seq >= joined, "they came in one read at one seq, at or after the join"
    moved = [data for name, data in client.frames if name == "mine"]
    assert moved == [], "no envelope besides the read: each row came once"
    await chat.post(6, "random", "later")
    await wait_for(lambda: 6 in client.ids(), 10, "a later message follows")
    assert [d["op"] for n, d in client.frames if n == "mine"] == ["INSERT"]
    await chat.join(4, "alice", "general")  # a second row of a value it has: nothing moves
    await chat.post(7, "general", "x")
    await wait_for(lambda: 7 in client.ids(), 10, "7 follows")
    snapshots = [d for n, d in client.frames if n == SNAPSHOT and not d.get("more")]
    assert len(snapshots) == 2, "a membership that adds no channel reads nothing"
    await chat.leave(3)
    await wait_for(lambda: client.ids() == {1, 2, 7}, 10, "random's messages move out")
    await chat.post(8, "random", "x")
    await chat.post(9, "general", "x")
    await wait_for(lambda: 9 in client.ids(), 10, "general goes on")
    assert 8 not in client.ids()
    assert client.ids() == await chat.relation_sql()
    assert chat.gateway.metrics.relation_moves._value.get() == 2


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_rows_equal_the_subquery_sql_after_every_step_under_concurrent_writes(
    chat: Chat, clients: list[RelationClient], seed: int
) -> None:
    """Random concurrent joins, leaves and message writes: each step is SQL's IN (SELECT ...) at its seq."""
    rng = random.Random(seed)
    channels = ["a", "b", "c", "d"]
    for key in range(1, 13):
        await chat.post(key, rng.choice(channels), rng.choice(["x", "x", "hidden"]))
    await chat.join(1, "alice", "a")
    base, head = await chat.tables(), await chat.log.head()
    client = await follow(chat, clients)
    await random_writes(chat, rng, 50, channels)
    want = await chat.relation_sql()
    await wait_for(lambda: client.ids() == want, 20, "the client settles on SQL's rows")
    tables = await chat.tables_by_seq(base, head)
    assert want == expected(tables[max(tables)])  # SQL = the model
    steps = client.steps()
    check_steps(steps, tables)
    assert [kind for kind, _, _ in steps].count("snapshot") >= 2, "some join or leave moved rows"


@pytest.mark.parametrize("seed", [3])
async def test_not_over_a_relation_equals_sql_after_every_step_null_channels_included(
    chat: Chat, clients: list[RelationClient], seed: int
) -> None:
    """``{"not": relation}`` under random writes, NULL channels too: each step is SQL's NOT (x IN (...)).

    SQL's ``x IN (an empty subquery)`` is false even for a NULL ``x``, so a message
    without a channel is in "not my channels" exactly while alice has no channel.
    """
    rng = random.Random(seed)
    channels: list[str | None] = ["a", "b", "c", None]
    for key in range(1, 13):
        await chat.post(key, rng.choice(channels), rng.choice(["x", "x", "hidden"]))
    base, head = await chat.tables(), await chat.log.head()
    others = {"id": "mine", "topic": "messages", "where": [{"not": ["channel_id", "in", MINE]}]}
    client = await follow(chat, clients, subscription=others)
    assert client.ids() == expected_not(base), "no channel yet: every visible message, NULL channels too"
    await chat.post(41, None)  # live, while alice has no channel: it comes in
    await wait_for(lambda: 41 in client.ids(), 10, "a NULL channel's message, no channel held")
    await chat.join(1, "alice", "a")
    await random_writes(chat, rng, 40, channels)
    for key, row in (await chat.tables())["memberships"].items():
        if row["user_id"] == "alice":
            await chat.leave(key)  # her set empty again: NULL channels move back in
    await chat.post(42, None)
    want = {r["id"] for r in await chat.log.fetch(NOT_RELATION_SQL)}
    assert 41 in want and 42 in want
    await wait_for(lambda: client.ids() == want, 20, "the client settles on SQL's rows")
    tables = await chat.tables_by_seq(base, head)
    assert want == expected_not(tables[max(tables)])  # SQL = the model
    steps = client.steps()
    check_steps(steps, tables, expected_not)
    assert [kind for kind, _, _ in steps].count("snapshot") >= 3, "joins and leaves moved rows"


async def test_claims_choose_the_subquery_rows_and_or_groups_compose(
    chat: Chat, clients: list[RelationClient]
) -> None:
    """Each user's token fills the subquery's claim; a relation inside an or moves like a term."""
    await chat.join(1, "alice", "a")
    await chat.join(2, "bob", "b")
    for key, channel in [(1, "a"), (2, "b"), (3, "news")]:
        await chat.post(key, channel)
    either = {
        "id": "mine",
        "topic": "messages",
        "where": [{"or": [["channel_id", "in", MINE], ["channel_id", "=", "news"]]}],
    }
    alice = await follow(chat, clients, subscription=either)
    bob = await follow(chat, clients, "bob")
    assert alice.ids() == {1, 3} and bob.ids() == {2}
    await chat.join(3, "bob", "a")
    await wait_for(lambda: bob.ids() == {1, 2}, 10, "bob's join moves a's messages to bob")
    await chat.join(4, "alice", "b")
    await wait_for(lambda: alice.ids() == {1, 2, 3}, 10, "alice's join, within an or")
    await chat.post(4, "news")
    await wait_for(lambda: 4 in alice.ids(), 10, "the or's other branch goes on")
    assert 4 not in bob.ids()


async def test_a_resume_after_joins_and_leaves_gets_the_relation_fresh(
    chat: Chat, clients: list[RelationClient]
) -> None:
    """A client that reconnects with its cursor after membership changes holds exactly the new rows."""
    await chat.join(1, "alice", "a")
    for key, channel in [(1, "a"), (2, "b"), (3, "c")]:
        await chat.post(key, channel)
    client = await follow(chat, clients)
    assert client.ids() == {1}
    cursor = await chat.log.head()
    await client.sio.disconnect()
    await chat.leave(1)
    await chat.join(2, "alice", "b")
    await chat.post(4, "c")
    await chat.join(3, "alice", "c")
    back = await follow(chat, clients, cursor=cursor)
    await wait_for(lambda: back.ids() == {2, 3, 4}, 10, "fresh rows after the resume")
    await chat.post(5, "b")
    await wait_for(lambda: 5 in back.ids(), 10, "and live after it")
    assert back.ids() == await chat.relation_sql()


async def test_a_relation_over_its_bound_is_refused_at_subscribe_and_ends_when_it_grows_past_it(
    chat: Chat, clients: list[RelationClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than MAX_RELATION_VALUES rows: invalid_subscription; grown past it later: empty, then nothing."""
    monkeypatch.setattr(relations, "MAX_RELATION_VALUES", 2)
    monkeypatch.setattr(shared_reads, "MAX_RELATION_VALUES", 2)
    await chat.join(1, "alice", "a")
    await chat.join(2, "alice", "b")
    await chat.join(3, "carol", "a")
    await chat.join(4, "carol", "b")
    await chat.join(5, "carol", "c")
    await chat.post(1, "a")
    client = await follow(chat, clients)
    carol = RelationClient()
    clients.append(carol)
    await carol.connect(chat.gateway, token=AUTH.issue("carol"), topics=["messages"])
    await wait_for(lambda: carol.live >= 1, 10, "live")
    ack = await carol.call(SUBSCRIBE, RELATION)
    assert ack["ok"] is False and ack["error"] == "invalid_subscription", ack
    assert "selects more than 2 rows" in ack["message"] and "MAX_RELATION_VALUES" in ack["message"]
    assert not [d for n, d in carol.frames if n == SNAPSHOT and d["event"] == "mine"], "nothing of it sent"
    assert client.ids() == {1}
    await chat.join(6, "alice", "c")  # a third value: over the bound, it ends
    await wait_for(lambda: client.ids() == set() and len(client.steps()) == 2, 10, "an empty snapshot")
    ended = chat.gateway.metrics.relations_ended
    await wait_for(lambda: ended._value.get() == 1, 10, "rxstore_relations_ended counts it")
    await chat.post(2, "a")
    await chat.post(3, "a")
    await chat.join(7, "alice", "d")
    seen = lambda: any(n == "message_update" and d["record"]["id"] == 3 for n, d in carol.frames)  # noqa: E731
    await wait_for(seen, 10, "carol sees the writes")
    assert client.ids() == set() and len(client.steps()) == 2, "an ended relation follows nothing"


async def test_a_switch_to_a_relation_over_its_bound_is_refused_and_the_id_keeps_its_old_subset(
    chat: Chat, clients: list[RelationClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused while its snapshot is read (the bound is found there): the old subset stays followed."""
    monkeypatch.setattr(relations, "MAX_RELATION_VALUES", 2)
    monkeypatch.setattr(shared_reads, "MAX_RELATION_VALUES", 2)
    for key, channel in enumerate("abc", start=1):
        await chat.join(key, "carol", channel)
    carol = RelationClient()
    clients.append(carol)
    await carol.connect(chat.gateway, token=AUTH.issue("carol"), topics=[])
    await wait_for(lambda: carol.live >= 1, 10, "live")
    plain = {"id": "mine", "topic": "messages", "where": [["channel_id", "=", "a"]]}
    assert (await carol.call(SUBSCRIBE, plain))["ok"] is True
    ack = await carol.call(SUBSCRIBE, RELATION)
    assert ack["ok"] is False and "MAX_RELATION_VALUES" in ack["message"], ack
    await chat.post(1, "a")
    await wait_for(lambda: 1 in carol.ids(), 10, "the old subset's row, still followed")
    assert carol.ids() == {1}
    assert chat.gateway.live_queries.index.count == 1


@pytest.mark.parametrize(
    ("user", "relation", "code", "message"),
    [
        ("alice", {**MINE, "from": "audit"}, "forbidden_topic", "the subquery's table 'audit' is not served"),
        ("alice", {**MINE, "from": "nope"}, "forbidden_topic", "the subquery's table 'nope' is not served"),
        ("alice", {**MINE, "from": "messages"}, "forbidden_topic", "is the subset's own table"),
        (
            "mallory",
            MINE,
            "forbidden_topic",
            "'mallory' may not subscribe to 'memberships', which the subquery",
        ),
        (
            "alice",
            {**MINE, "select": "nope"},
            "invalid_subscription",
            "select: 'memberships' has no column 'nope'",
        ),
        (
            "alice",
            {**MINE, "where": [["nope", "=", 1]]},
            "invalid_subscription",
            "'memberships' has no column 'nope'",
        ),
        ("alice", {**MINE, "select": "id"}, "invalid_subscription", "they must be of one kind"),
        (
            "alice",
            {**MINE, "where": [["channel_id", "in", MINE]]},
            "invalid_subscription",
            "a subquery cannot hold another (relations are one level deep)",
        ),
        (
            "alice",
            {**MINE, "where": [["user_id", "=", {"claim": "team"}]]},
            "invalid_subscription",
            "term 1: in its subquery: term 1: the token has no claim 'team'",
        ),
        (
            "alice",
            {**MINE, "join": "x"},
            "invalid_subscription",
            "got keys ['from', 'join', 'select', 'where']",
        ),
        ("alice", {**MINE, "where": "user_id = 'alice' OR 1=1"}, "invalid_subscription", "must be a list"),
    ],
)
async def test_a_bad_subquery_is_refused_naming_the_problem_and_nothing_else_changes(
    chat: Chat, clients: list[RelationClient], user: str, relation: Any, code: str, message: str
) -> None:
    """Tables not served or not allowed, unknown columns, nesting, missing claims: refused, nothing else."""
    await chat.join(1, "alice", "a")
    await chat.post(1, "a")
    client = await follow(chat, clients)
    other = RelationClient()
    clients.append(other)
    await other.connect(chat.gateway, token=AUTH.issue(user), topics=["messages"])
    await wait_for(lambda: other.live >= 1, 10, "live")
    ack = await other.call(SUBSCRIBE, {**RELATION, "where": [["channel_id", "in", relation]]})
    assert ack["ok"] is False and ack["error"] == code, ack
    assert message in ack["message"], ack["message"]
    await chat.post(2, "a")
    await wait_for(lambda: 2 in client.ids(), 10, "the other client's relation goes on")
    await wait_for(
        lambda: any(n == "message_update" and d["record"]["id"] == 2 for n, d in other.frames),
        10,
        "and this client's table",
    )
    assert len((await chat.tables())["memberships"]) == 1


@pytest.mark.parametrize(
    ("where", "extra", "message"),
    [
        ([["channel_id", "in", MINE], ["body", "in", MINE]], {}, "a subset holds at most one subquery term"),
        (
            [["channel_id", "in", MINE], ["body", "in", MINE]],
            {"order_by": [["id", "desc"]], "limit": 5},
            "a subset holds at most one subquery term",
        ),
    ],
)
async def test_two_relations_are_refused_in_a_window_too(
    chat: Chat, clients: list[RelationClient], where: Any, extra: dict[str, Any], message: str
) -> None:
    """Two subqueries in one subset are refused, naming the term (a window or not)."""
    client = RelationClient()
    clients.append(client)
    await client.connect(chat.gateway, topics=["messages"])
    ack = await client.call(SUBSCRIBE, {**RELATION, "where": where, **extra})
    assert ack["ok"] is False and ack["error"] == "invalid_subscription", ack
    assert message in ack["message"], ack["message"]


async def test_a_relation_over_its_bound_on_connect_ends_with_an_empty_snapshot(
    chat: Chat, clients: list[RelationClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the auth payload, more than MAX_RELATION_VALUES rows: connected, an empty snapshot, ended."""
    monkeypatch.setattr(relations, "MAX_RELATION_VALUES", 2)
    monkeypatch.setattr(shared_reads, "MAX_RELATION_VALUES", 2)
    for key, channel in [(1, "a"), (2, "b"), (3, "c")]:
        await chat.join(key, "carol", channel)
        await chat.post(key, channel)
    carol = await follow(chat, clients, "carol")
    assert carol.steps() and carol.steps()[-1][0] == "snapshot" and carol.ids() == set()
    assert chat.gateway.metrics.relations_ended._value.get() == 1
    await chat.post(4, "a")
    head = await chat.log.head()
    await wait_for(lambda: chat.gateway.tailer.head >= head, 10, "the post sent on")
    assert carol.ids() == set() and not [d for n, d in carol.frames if n == "mine"], "it follows nothing"
