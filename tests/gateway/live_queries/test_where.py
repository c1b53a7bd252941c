"""Where trees and claims on a real gateway, seen by a plain python-socketio client (the wire).

Both change logs (SQLite and a throwaway PostgreSQL), a ``tickets`` table with
NULLs: a subscription whose where clause has ``or`` and ``not`` holds exactly
the rows a hand-written SQL query gives, after every move in and out; a
``{"claim": ...}`` value is the token's, on subscribe and again on a resume
with a new token; a token without the claim, and malformed trees, are refused
with a message naming the problem, and the connection goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from rxstore import RootStore, TableStore
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import SNAPSHOT, SUBSCRIBE
from rxstore.protocol.subsets import MAX_DEPTH, MAX_TERMS, Claim, WhereSpec
from tests.gateway.harness import AUTH
from tests.gateway.live_queries.test_subsets import WireClient
from tests.gateway.placeholders import placeholders
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# (status = 'open' OR assignee = 'alice') AND NOT (priority < 2): NULL priority is out (NOT NULL is NULL)
OPEN_OR_MINE = [{"or": [["status", "=", "open"], ["assignee", "=", "alice"]]}, {"not": ["priority", "<", 2]}]
OPEN_OR_MINE_SQL = "(status = 'open' OR assignee = 'alice') AND NOT (priority < 2)"
# NOT (assignee = 'alice' AND status = 'done'): a NULL assignee is out, unless status is not 'done'
NOT_MY_DONE = [{"not": [["assignee", "=", "alice"], ["status", "=", "done"]]}]
NOT_MY_DONE_SQL = "NOT (assignee = 'alice' AND status = 'done')"

TICKETS = [
    ("t1", "open", None, 5, "red"),
    ("t2", "open", "bob", 1, "red"),
    ("t3", "done", "alice", 3, "blue"),
    ("t4", "done", "bob", 9, "blue"),
    ("t5", "open", "alice", None, "red"),
    ("t6", "closed", None, None, "blue"),
]


class Tickets:
    """A gateway serving ``tickets (id, status, assignee, priority, team)`` on a real database."""

    def __init__(self, gateway: RealtimeGateway) -> None:
        self.gateway = gateway
        self.log: ChangeLog = gateway.log
        self.postgres = "postgres" in type(gateway.log).__name__.lower()

    def sql(self, text: str) -> str:
        """``?`` placeholders as the database wants them."""
        return placeholders(text, postgres=self.postgres)

    async def set(self, key: str, column: str, value: Any) -> None:
        await self.log.execute(self.sql(f"UPDATE tickets SET {column} = ? WHERE id = ?"), value, key)

    async def insert(self, key: str, status: str, assignee: str | None, priority: int | None) -> None:
        await self.log.execute(
            self.sql("INSERT INTO tickets (id, status, assignee, priority, team) VALUES (?, ?, ?, ?, ?)"),
            key,
            status,
            assignee,
            priority,
            "red",
        )

    async def rows(self, condition: str) -> dict[str, dict[str, Any]]:
        """The rows the database gives for a hand-written where clause."""
        found = await self.log.fetch(f"SELECT * FROM tickets WHERE {condition}")
        return {row["id"]: dict(row) for row in found}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def tickets(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Tickets]:
    url = (
        f"sqlite:///{tmp_path / 'app.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    )
    log = open_change_log(url)
    await log.open()
    await log.execute(
        "CREATE TABLE tickets (id TEXT PRIMARY KEY, status TEXT NOT NULL, assignee TEXT, "
        "priority INTEGER, team TEXT)"
    )
    served = Tickets(RealtimeGateway(log, topics=["tickets"], auth=AUTH))
    for row in TICKETS:
        await log.execute(
            served.sql("INSERT INTO tickets (id, status, assignee, priority, team) VALUES (?, ?, ?, ?, ?)"),
            *row,
        )
    await served.gateway.start(port=0)
    try:
        yield served
    finally:
        await served.gateway.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[WireClient]]:
    made: list[WireClient] = []
    try:
        yield made
    finally:
        for client in made:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()


async def connect(
    tickets: Tickets, clients: list[WireClient], user: str = "alice", claims: Any = None, **auth: Any
) -> WireClient:
    client = WireClient()
    clients.append(client)
    payload = {"token": AUTH.issue(user, **(claims or {})), "cursor": None, "topics": [], **auth}
    await client.sio.connect(tickets.gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)
    await wait_for(lambda: client.live >= 1, 10, "live")
    return client


async def refusal(tickets: Tickets, user: str, claims: Any, **auth: Any) -> Any:
    """What the gateway refuses a connection with (its ``connect_error`` data)."""
    sio = socketio.AsyncClient(reconnection=False)
    refused: list[Any] = []
    sio.on("connect_error", refused.append)
    payload = {"token": AUTH.issue(user, **(claims or {})), "cursor": None, "topics": [], **auth}
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(tickets.gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)
    await wait_for(lambda: bool(refused), 5, "the refusal")
    return refused[0]["data"]


async def converges(client: WireClient, sub_id: str, tickets: Tickets, condition: str) -> None:
    """Wait until the client's rows of ``sub_id`` are exactly the database's for ``condition``."""

    async def same() -> bool:
        return client.rows(sub_id) == await tickets.rows(condition)

    await wait_for(same, 10, f"{sub_id} = SELECT ... WHERE {condition}")


# -- or / not ----------------------------------------------------------------------


async def test_an_or_not_subset_holds_exactly_the_rows_sql_gives_through_moves_in_and_out(
    tickets: Tickets, clients: list[WireClient]
) -> None:
    """Snapshot and live changes agree with SQL's three-valued logic; a move out is a key-only DELETE."""
    sub = {"id": "board", "topic": "tickets", "where": OPEN_OR_MINE}
    client = await connect(tickets, clients, subscriptions=[sub])
    assert set(client.rows("board")) == {"t1", "t3"}  # not t5 (NULL priority), not t2 (priority 1)
    assert client.rows("board") == await tickets.rows(OPEN_OR_MINE_SQL)
    ack = await client.call(SUBSCRIBE, {"id": "rest", "topic": "tickets", "where": NOT_MY_DONE})
    assert ack["ok"] is True, ack
    assert set(client.rows("rest")) == {"t1", "t2", "t4", "t5", "t6"}  # t6: NULL assignee, not 'done'
    steps: list[tuple[str, str, Any]] = [
        ("t5", "priority", 4),  # NULL -> 4: moves into board
        ("t1", "priority", None),  # 5 -> NULL: NOT (NULL < 2) is NULL: moves out of board
        ("t3", "status", "open"),  # stays in board (now both branches), moves into rest
        ("t4", "assignee", "alice"),  # done, alice: out of rest; into board (priority 9)
        ("t6", "status", "done"),  # NULL assignee, done: NOT (NULL AND TRUE) is NULL: out of rest
        ("t2", "priority", 2),  # into board
        ("t4", "status", "done"),  # no change of value: nothing moves
        ("t4", "assignee", None),  # out of board; NOT (NULL AND TRUE) is NULL: stays out of rest
    ]
    for key, column, value in steps:
        await tickets.set(key, column, value)
    await tickets.insert("t7", "open", None, None)  # NULL priority: not into board; into rest
    await tickets.insert("t8", "open", "alice", 2)  # into both
    await converges(client, "board", tickets, OPEN_OR_MINE_SQL)
    await converges(client, "rest", tickets, NOT_MY_DONE_SQL)
    assert set(client.rows("board")) == {"t2", "t3", "t5", "t8"}
    assert set(client.rows("rest")) == {"t1", "t2", "t3", "t5", "t7", "t8"}
    board = [(c["op"], (c["record"] or c["old"])["id"]) for c in client.changes("board")]
    assert board[:2] == [("INSERT", "t5"), ("DELETE", "t1")]
    out = client.changes("board")[1]
    assert out["record"] is None and out["old"] == {"id": "t1"}  # the row's new content is not sent
    assert ("DELETE", "t4") in board and board.count(("INSERT", "t4")) == 1
    rest = [(c["op"], (c["record"] or c["old"])["id"]) for c in client.changes("rest")]
    assert ("DELETE", "t4") in rest and ("INSERT", "t4") not in rest[rest.index(("DELETE", "t4")) :]
    assert ("DELETE", "t6") in rest  # NOT of NULL is NULL: out, as in SQL


class TicketStore(TableStore[dict[str, Any]]):
    table = "tickets"


async def test_a_table_store_follows_an_or_not_where_with_a_claim_and_switches_it(tickets: Tickets) -> None:
    """The client's typed ``where=`` takes groups and claims; the store ends equal to the database's rows."""
    board: WhereSpec = [
        {"or": [("status", "=", "open"), ("assignee", "=", Claim("sub"))]},
        {"not": ("priority", "<", 2)},
    ]
    store = TicketStore(where=board)
    async with RootStore(tickets.gateway.url, stores=[store], token=AUTH.issue("alice")):
        await store.live()
        assert dict(store.value) == await tickets.rows(OPEN_OR_MINE_SQL)
        await tickets.set("t5", "priority", 4)  # moves in
        await tickets.set("t1", "priority", None)  # moves out
        await wait_for(lambda: set(store.value) == {"t3", "t5"}, 10, "t5 in, t1 out")
        assert dict(store.value) == await tickets.rows(OPEN_OR_MINE_SQL)
        await store.where([{"not": [("assignee", "=", {"claim": "sub"}), ("status", "=", "done")]}])
        assert dict(store.value) == await tickets.rows(NOT_MY_DONE_SQL)


# -- claims ------------------------------------------------------------------------


async def test_a_claim_is_filled_in_from_each_connections_token(
    tickets: Tickets, clients: list[WireClient]
) -> None:
    """One request, ``assignee = {"claim": "sub"}``: alice gets her rows, bob his, live too."""
    mine = {"id": "mine", "topic": "tickets", "where": [["assignee", "=", {"claim": "sub"}]]}
    alice = await connect(tickets, clients, "alice", subscriptions=[mine])
    bob = await connect(tickets, clients, "bob", subscriptions=[mine])
    assert set(alice.rows("mine")) == {"t3", "t5"} and set(bob.rows("mine")) == {"t2", "t4"}
    await tickets.set("t1", "assignee", "alice")
    await tickets.set("t2", "assignee", "alice")  # out of bob's, into alice's
    await converges(alice, "mine", tickets, "assignee = 'alice'")
    await converges(bob, "mine", tickets, "assignee = 'bob'")
    assert [(c["op"], c["old"]) for c in bob.changes("mine")] == [("DELETE", {"id": "t2"})]


async def test_a_token_without_the_claim_is_refused_and_the_connection_goes_on(
    tickets: Tickets, clients: list[WireClient]
) -> None:
    """Refused (connect: ``bad_request``, subscribe: ``invalid_subscription``); the rest goes on."""
    team = {"id": "team", "topic": "tickets", "where": [["team", "=", {"claim": "team"}]]}
    refused = await refusal(tickets, "bob", None, subscriptions=[team])
    assert refused["reason"] == "bad_request" and "the token has no claim 'team'" in refused["message"]
    everything = {"id": "all", "topic": "tickets", "where": [["priority", "is not null"]]}
    bob = await connect(tickets, clients, "bob", subscriptions=[everything])
    ack = await bob.call(SUBSCRIBE, team)
    assert ack == {
        "ok": False,
        "error": "invalid_subscription",
        "message": "term 1: the token has no claim 'team'",
    }
    await tickets.set("t6", "priority", 7)
    await converges(bob, "all", tickets, "priority IS NOT NULL")  # still live
    assert "team" not in {name for name, _ in bob.frames}
    red = await connect(tickets, clients, "carol", {"team": "red"}, subscriptions=[team])
    assert set(red.rows("team")) == {"t1", "t2", "t5"}


async def test_a_resumed_subscription_fills_its_claims_in_from_the_new_token(
    tickets: Tickets, clients: list[WireClient]
) -> None:
    """A reconnect with a cursor resolves ``{"claim": "team"}`` again: the new token's team, not the old."""
    team = {"id": "team", "topic": "tickets", "where": [["team", "=", {"claim": "team"}]]}
    first = await connect(tickets, clients, "alice", {"team": "red"}, subscriptions=[team])
    assert set(first.rows("team")) == {"t1", "t2", "t5"}
    await tickets.set("t1", "priority", 6)
    await wait_for(lambda: first.cursor is not None, 10, "a change of red")
    await first.sio.disconnect()
    cursor = first.cursor
    await tickets.set("t2", "priority", 8)  # red, missed
    await tickets.set("t4", "priority", 10)  # blue, missed
    refused = await refusal(tickets, "alice", None, subscriptions=[team], cursor=cursor)
    assert refused["reason"] == "bad_request" and "no claim 'team'" in refused["message"]
    again = await connect(tickets, clients, "alice", {"team": "blue"}, subscriptions=[team], cursor=cursor)
    assert not any(name == SNAPSHOT for name, _ in again.frames)  # resumed, not snapshotted
    assert [(c["op"], c["record"]["id"]) for c in again.changes("team")] == [("UPDATE", "t4")]


# -- bad trees -----------------------------------------------------------------------


def nested(depth: int) -> Any:
    condition: Any = ["priority", ">", 1]
    for _ in range(depth):
        condition = {"not": condition}
    return [condition]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (nested(MAX_DEPTH + 1), f"groups nest at most {MAX_DEPTH} deep"),
        ([{"or": [["priority", ">", n] for n in range(MAX_TERMS + 1)]}], f"at most {MAX_TERMS} terms"),
        (
            [["status", "=", "open"], {"or": [["priority", "=", 1]] * MAX_TERMS}],
            f"at most {MAX_TERMS} terms, counted in all its groups",
        ),
        ([{"or": [["status", "=", "open"], ["priority", "~", 1]]}], "term 2: unknown operator '~'"),
        ([{"xor": [["status", "=", "open"]]}], "group 1: unknown group 'xor'"),
        ([{"or": []}], "group 1: 'or' takes a list of 1 or more conditions"),
        ([{"or": "status = 'open'"}], "group 1: 'or' takes a list of 1 or more conditions"),
        ([{"or": [["status", "=", "open"]], "not": ["priority", ">", 1]}], "with one key"),
        ([{"not": None}], "group 1: 'not' takes one condition"),
        ([["assignee", "=", {"claim": 7}]], 'term 1: a claim is {"claim": "<name>"}'),
        ([["assignee", "=", {"claim": "sub", "or": 1}]], 'term 1: a claim is {"claim": "<name>"}'),
        ([["assignee", "=", {"sub": 1}]], "term 1: a value must be a string, number, boolean or"),
        ([{"or": [["status", "=", "open"], ["nope", "=", 1]]}], "term 2: 'tickets' has no column 'nope'"),
        ([{"not": ["priority", "=", "high"]}], "term 1: column 'priority' is integer"),
    ],
)
async def test_a_bad_where_tree_is_refused_naming_the_problem_and_the_connection_goes_on(
    tickets: Tickets, clients: list[WireClient], where: Any, message: str
) -> None:
    everything = {"id": "all", "topic": "tickets"}
    client = await connect(tickets, clients, subscriptions=[everything])
    bad = {"id": "bad", "topic": "tickets", "where": where}
    ack = await client.call(SUBSCRIBE, bad)
    assert ack["ok"] is False and ack["error"] == "invalid_subscription", ack
    assert message in ack["message"], ack
    await tickets.set("t6", "status", "reopened")
    await wait_for(lambda: client.rows("all")["t6"]["status"] == "reopened", 10, "still live")
    refused = await refusal(tickets, "alice", None, subscriptions=[bad])
    assert refused["reason"] == "bad_request" and message in refused["message"], refused
