"""Live queries on a real gateway, seen by a plain python-socketio client (the wire, not RootStore).

Both change logs (SQLite and a throwaway PostgreSQL): a subset's snapshot and
live changes (move-in as INSERT, move-out as DELETE of the key), a switch under
concurrent writes, unsubscribe, refusals on the acknowledgement, and resume
from the cursor with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from rxstore.gateway.demo import Post, all_posts, delete_post, save_post
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import BATCH, LIVE, SNAPSHOT, SUBSCRIBE, UNSUBSCRIBE
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

ANN = [["author", "=", "ann"]]


class WireClient:
    """A python-socketio client that records every frame, batches unpacked, in arrival order."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.frames: list[tuple[str, Any]] = []
        self.live = 0
        self.cursor: int | None = None
        self.sio.on("*", self._on_event)

    async def _on_event(self, name: str, data: Any) -> None:
        if name == BATCH:
            for entry_name, payload in data["events"]:
                self._record(entry_name, payload)
        elif name == LIVE:
            self.live += 1
        else:
            self._record(name, data)

    def _record(self, name: str, data: Any) -> None:
        self.frames.append((name, data))
        if name != SNAPSHOT and isinstance(data, dict) and "seq" in data:
            self.cursor = max(self.cursor or 0, data["seq"])

    async def connect(self, gateway: RealtimeGateway, **auth: Any) -> None:
        payload = {"token": AUTH.issue("alice"), "cursor": None, **auth}
        await self.sio.connect(gateway.url, auth=payload, transports=["websocket"], wait_timeout=5)

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=10)

    def rows(self, sub_id: str) -> dict[str, dict[str, Any]]:
        """The subset as a client maintains it: a whole snapshot replaces it, changes apply."""
        rows: dict[str, dict[str, Any]] = {}
        chunks: list[dict[str, Any]] = []
        for name, data in self.frames:
            if name == SNAPSHOT and data["event"] == sub_id:
                chunks.extend(data["records"])
                if not data.get("more"):
                    rows, chunks = {r["id"]: r for r in chunks}, []
            elif name == sub_id:
                if data["op"] == "DELETE":
                    rows.pop(data["old"]["id"], None)
                else:
                    rows[data["record"]["id"]] = data["record"]
        return rows

    def changes(self, sub_id: str) -> list[dict[str, Any]]:
        return [data for name, data in self.frames if name == sub_id]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def gateway(url: str) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(url, max_subscriptions=3, frame_bytes=1024)  # small frames: a long queue
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def client() -> AsyncIterator[WireClient]:
    client = WireClient()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.sio.disconnect()


def post(key: str, author: str, title: str = "t", likes: int = 0) -> Post:
    return Post(id=key, title=title, author=author, likes=likes)


async def seed(log: ChangeLog) -> None:
    for key, author in [("p1", "ann"), ("p2", "bob"), ("p3", "ann"), ("p4", "cy")]:
        await save_post(log, post(key, author))


async def test_a_subset_snapshot_then_move_in_and_move_out(
    gateway: RealtimeGateway, client: WireClient
) -> None:
    """Only matching rows, projected; entering is an INSERT, leaving a DELETE of the key alone."""
    await seed(gateway.log)
    sub = {"id": "mine", "topic": "posts", "where": ANN, "columns": ["title", "author"]}
    await client.connect(gateway, topics=[], subscriptions=[sub])
    await wait_for(lambda: client.live == 1, 10, "live")
    assert client.rows("mine") == {
        "p1": {"id": "p1", "title": "t", "author": "ann"},
        "p3": {"id": "p3", "title": "t", "author": "ann"},
    }
    await save_post(gateway.log, post("p2", "ann", "moved in"))
    await save_post(gateway.log, post("p1", "bob", "secret new title"))
    await save_post(gateway.log, post("p3", "ann", "renamed"))
    await save_post(gateway.log, post("p4", "cy", "not mine"))
    await delete_post(gateway.log, "p3")
    await wait_for(lambda: len(client.changes("mine")) >= 4, 10, "four changes")
    assert [(c["op"], c["record"], c["old"]) for c in client.changes("mine")] == [
        ("INSERT", {"id": "p2", "title": "moved in", "author": "ann"}, None),
        ("DELETE", None, {"id": "p1"}),  # the new title never reaches this client
        (
            "UPDATE",
            {"id": "p3", "title": "renamed", "author": "ann"},
            {"id": "p3", "title": "t", "author": "ann"},
        ),
        ("DELETE", None, {"id": "p3"}),
    ]
    assert not any(name == "post_update" for name, _ in client.frames)  # no whole-table events


async def test_a_switch_under_concurrent_writes_loses_nothing_and_leaks_nothing(
    gateway: RealtimeGateway, client: WireClient
) -> None:
    """After the ack no row of the old subset arrives, and the new one ends equal to the database."""
    log = gateway.log
    authors = ["ann", "bob", "cy"]
    for n in range(300):
        await save_post(log, post(f"p{n}", authors[n % 3], likes=n))
    sub = {"id": "feed", "topic": "posts", "where": ANN}
    await client.connect(gateway, topics=[], subscriptions=[sub])
    await wait_for(lambda: client.live == 1, 10, "live")
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await save_post(log, post(f"p{n % 300}", authors[n % 3], f"w{n}", likes=n))
            await asyncio.sleep(0.002)

    task = asyncio.create_task(writer())
    try:
        await wait_for(lambda: len(client.changes("feed")) >= 10, 10, "changes of ann's posts")
        await log.execute("UPDATE posts SET likes = likes + 1000")  # a burst queued for the client
        ack = await client.call(
            SUBSCRIBE, {"id": "feed", "topic": "posts", "where": [["author", "=", "bob"]]}
        )
        acked_at = len(client.frames)
        assert ack["ok"] is True and isinstance(ack["seq"], int)
        await wait_for(lambda: len(client.frames) >= acked_at + 20, 10, "changes after the switch")
    finally:
        stop.set()
        await task
    after = [data for name, data in client.frames[acked_at:] if name == "feed"]
    assert all(c["record"]["author"] == "bob" for c in after if c["record"] is not None)
    snapshots = [data for name, data in client.frames[:acked_at] if name == SNAPSHOT]
    assert snapshots[-1]["event"] == "feed" and snapshots[-1]["seq"] == ack["seq"]
    assert all(r["author"] == "bob" for r in snapshots[-1]["records"])
    bob = {k: p.title for k, p in (await all_posts(log)).items() if p.author == "bob"}
    await wait_for(
        lambda: {k: r["title"] for k, r in client.rows("feed").items()} == bob,
        10,
        "bob's posts, as in the db",
    )


async def test_unsubscribe_ends_the_events_of_a_subscription(
    gateway: RealtimeGateway, client: WireClient
) -> None:
    await seed(gateway.log)
    await client.connect(
        gateway, topics=["posts"], subscriptions=[{"id": "mine", "topic": "posts", "where": ANN}]
    )
    await wait_for(lambda: client.live == 1, 10, "live")
    assert await client.call(UNSUBSCRIBE, {"id": "mine"}) == {"ok": True}
    acked_at = len(client.frames)
    await save_post(gateway.log, post("p1", "ann", "after"))
    await wait_for(
        lambda: any(n == "post_update" for n, _ in client.frames[acked_at:]), 10, "whole-table event"
    )
    assert not any(name == "mine" for name, _ in client.frames[acked_at:])
    assert (await client.call(UNSUBSCRIBE, {"id": "mine"}))["error"] == "invalid_subscription"


@pytest.mark.parametrize(
    ("subscription", "error", "message"),
    [
        ({"id": "s", "topic": "posts", "where": [["nope", "=", 1]]}, "invalid_subscription", "nope"),
        (
            {"id": "s", "topic": "posts", "where": [["likes", "~", 1]]},
            "invalid_subscription",
            "unknown operator",
        ),
        ({"id": "s", "topic": "posts", "where": [["likes", "=", "many"]]}, "invalid_subscription", "likes"),
        (
            {"id": "s", "topic": "posts", "where": [["likes", ">", 1]] * 17},
            "invalid_subscription",
            "16 terms",
        ),
        ({"id": "s", "topic": "comments", "where": []}, "forbidden_topic", "no such topic"),
        ({"id": "rxstore:x", "topic": "posts"}, "invalid_subscription", "reserved"),
        ("posts", "invalid_subscription", "must be an object"),
    ],
)
async def test_a_bad_subscription_is_refused_on_its_ack_and_nothing_else_changes(
    gateway: RealtimeGateway, client: WireClient, subscription: Any, error: str, message: str
) -> None:
    await seed(gateway.log)
    await client.connect(gateway, topics=["posts"])
    await wait_for(lambda: client.live == 1, 10, "live")
    ack = await client.call(SUBSCRIBE, subscription)
    assert ack["ok"] is False and ack["error"] == error and message in ack["message"], ack
    await save_post(gateway.log, post("p1", "ann", "still live"))
    await wait_for(
        lambda: any(
            d.get("record", {}) and d["record"]["title"] == "still live"
            for n, d in client.frames
            if n == "post_update"
        ),
        10,
        "still live",
    )


async def test_too_many_subscriptions_are_refused(gateway: RealtimeGateway, client: WireClient) -> None:
    await client.connect(gateway, topics=["posts"])  # one whole-table subscription
    await wait_for(lambda: client.live == 1, 10, "live")
    for n in range(2):
        assert (await client.call(SUBSCRIBE, {"id": f"s{n}", "topic": "posts", "where": ANN}))["ok"] is True
    ack = await client.call(SUBSCRIBE, {"id": "s9", "topic": "posts", "where": ANN})
    assert ack["error"] == "too_many_subscriptions"
    switch = await client.call(SUBSCRIBE, {"id": "s0", "topic": "posts", "where": []})
    assert switch["ok"] is True  # a switch of a held id is not a new subscription
    assert gateway.metrics.subscriptions._value.get() == 3


async def test_topics_count_against_the_subscription_limit(gateway: RealtimeGateway) -> None:
    """A whole-table topic is a subscription too: 1 topic + 3 subsets is over a limit of 3."""
    subs = [{"id": f"s{n}", "topic": "posts", "where": ANN} for n in range(3)]
    refused = WireClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(gateway, topics=["posts"], subscriptions=subs)
    assert gateway.metrics.refused.labels("bad_request")._value.get() == 1
    first = WireClient()
    await first.connect(gateway, topics=["posts"], subscriptions=subs[:2])  # 3: at the limit
    try:
        await wait_for(lambda: first.live == 1, 10, "live")
        ack = await first.call(SUBSCRIBE, subs[2])
        assert ack["error"] == "too_many_subscriptions"
    finally:
        await first.sio.disconnect()


async def test_a_topic_only_client_counts_its_topics_on_its_first_subscribe(url: str) -> None:
    gateway = await start_gateway(url, max_subscriptions=1)
    client = WireClient()
    try:
        await client.connect(gateway, topics=["posts"])
        await wait_for(lambda: client.live == 1, 10, "live")
        ack = await client.call(SUBSCRIBE, {"id": "s", "topic": "posts", "where": ANN})
        assert ack["error"] == "too_many_subscriptions"
    finally:
        await client.sio.disconnect()
        await gateway.stop()


async def test_a_resumed_subset_gets_exactly_what_it_missed(
    gateway: RealtimeGateway, client: WireClient
) -> None:
    """The cursor resumes every subscription; ``since`` keeps a later subset from its snapshot's changes."""
    log = gateway.log
    await seed(log)
    sub = {"id": "mine", "topic": "posts", "where": ANN}
    await client.connect(gateway, topics=[], subscriptions=[sub])
    await wait_for(lambda: client.live == 1, 10, "live")
    await save_post(log, post("p1", "ann", "a1"))
    await wait_for(lambda: client.cursor is not None, 10, "a change of mine")
    await save_post(log, post("p2", "bob", "before"))  # not for mine: the client's cursor stays behind it
    head = await log.head()
    await wait_for(lambda: gateway.tailer.head >= head, 10, "the gateway past it")
    ack = await client.call(SUBSCRIBE, {"id": "late", "topic": "posts", "where": [["author", "=", "bob"]]})
    assert ack["ok"] and ack["seq"] >= head > (client.cursor or 0)
    assert {r["title"] for r in client.rows("late").values()} == {"before"}  # in late's snapshot
    await client.sio.disconnect()
    cursor = client.cursor
    await save_post(log, post("p2", "ann", "moved"))  # into mine, out of late
    await save_post(log, post("p4", "bob", "cy gave it"))  # into late
    again = WireClient()
    late = {"id": "late", "topic": "posts", "where": [["author", "=", "bob"]], "since": ack["seq"]}
    await again.connect(gateway, subscriptions=[sub, late], cursor=cursor)
    try:
        await wait_for(lambda: again.live == 1, 10, "live again")
        assert not any(name == SNAPSHOT for name, _ in again.frames)
        assert [(c["op"], c["record"] and c["record"]["title"]) for c in again.changes("mine")] == [
            ("INSERT", "moved")
        ]
        assert [(c["op"], (c["record"] or c["old"])["id"]) for c in again.changes("late")] == [
            ("DELETE", "p2"),
            ("INSERT", "p4"),
        ]  # not "before" again
    finally:
        await again.sio.disconnect()


async def test_a_subset_composes_with_authorize(url: str, client: WireClient) -> None:
    """A row is sent when both the where clause and ``authorize`` allow it; hiding it is a key DELETE."""

    def public(user: Any, topic: str, row: Any) -> bool:
        return not row.get("private")

    gateway = await start_gateway(url, authorize=public)
    try:
        log = gateway.log
        await seed(log)
        await save_post(log, Post(id="p5", title="hidden", author="ann", private=True))
        await client.connect(gateway, subscriptions=[{"id": "mine", "topic": "posts", "where": ANN}])
        await wait_for(lambda: client.live == 1, 10, "live")
        assert set(client.rows("mine")) == {"p1", "p3"}  # not p5 (private), not p2 (bob's)
        await save_post(log, Post(id="p1", title="now private", author="ann", private=True))
        await save_post(log, Post(id="p5", title="now public", author="ann"))
        await save_post(log, Post(id="p2", title="bob's private", author="bob", private=True))
        await wait_for(lambda: len(client.changes("mine")) >= 2, 10, "two changes")
        hidden, shown = client.changes("mine")[:2]
        assert (hidden["op"], hidden["record"], hidden["old"]) == (
            "DELETE",
            None,
            {"id": "p1"},
        )  # no new title
        assert (shown["op"], shown["record"]["title"], shown["old"]) == ("INSERT", "now public", None)
        await save_post(log, Post(id="p3", title="marker", author="ann"))
        await wait_for(lambda: len(client.changes("mine")) >= 3, 10, "the marker")
        assert all(c["record"] is None or c["record"]["author"] == "ann" for c in client.changes("mine"))
        assert set(client.rows("mine")) == {"p3", "p5"}
    finally:
        await gateway.stop()
