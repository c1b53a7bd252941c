"""Every per-client limit holds whatever the client's concurrency (a real gateway on SQLite).

A raw python-socketio client sends several times a limit at once, without
waiting for the answers: exactly the limit is admitted, the rest get the
documented refusal, the gauges stay true, what was refused leaves nothing
behind in the gateway, another client keeps getting its changes, and the
requests of one connection take effect in the order sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from rxstore.gateway.access.auth import User
from rxstore.gateway.demo import Post, save_post
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import BATCH, SUBSCRIBE, UNSUBSCRIBE
from rxstore.protocol.subsets import Term
from tests.faults.harness import StalledClient
from tests.gateway.harness import AUTH, root_for, start_gateway
from tests.gateway.overload import write_big_table
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

LIMIT = 8
"""The limit each test sets."""
TIMES = 5
"""How many times the limit a client sends at once."""


def sample(gateway: RealtimeGateway, name: str) -> float:
    """A metric's value as ``/metrics`` reports it."""
    value = gateway.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


def refusals(gateway: RealtimeGateway, reason: str) -> float:
    value = gateway.metrics.registry.get_sample_value("rxstore_bad_input_total", {"reason": reason})
    return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def raw_client(gateway: RealtimeGateway, user: str = "mallory", **auth: Any) -> AsyncIterator[Any]:
    """A python-socketio client connected with ``auth`` (no topics, no subscriptions by default)."""
    sio = socketio.AsyncClient(reconnection=False)
    payload = {"token": AUTH.issue(user), "topics": [], "subscriptions": [], "cursor": None, **auth}
    await sio.connect(gateway.url, auth=payload, transports=["websocket"], wait_timeout=10)
    try:
        yield sio
    finally:
        with contextlib.suppress(Exception):
            await sio.disconnect()


async def at_once(sio: Any, requests: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Send every request without waiting for an answer; the acknowledgements, in order."""
    return list(await asyncio.gather(*(sio.call(event, data, timeout=60) for event, data in requests)))


def event_names(name: str, data: Any) -> list[str]:
    """The event names in one frame (a batch's entries unpacked)."""
    if name == BATCH:
        return [entry[0] for entry in data["events"]]
    return [name]


def errors(acks: list[dict[str, Any]]) -> list[str | None]:
    return [None if ack.get("ok") else ack.get("error") for ack in acks]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    """``max_subscriptions=8``; ``max_in_flight`` above what the subscription tests send at once."""
    gateway = await start_gateway(
        f"sqlite:///{tmp_path / 'app.db'}", max_subscriptions=LIMIT, max_in_flight=LIMIT * TIMES + 2
    )
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def narrow(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    """``max_in_flight=8``."""
    gateway = await start_gateway(f"sqlite:///{tmp_path / 'app.db'}", max_in_flight=LIMIT)
    try:
        yield gateway
    finally:
        await gateway.stop()


class Gate:
    """An application handler that holds every call until opened."""

    def __init__(self) -> None:
        self.entered = 0
        self.opened = asyncio.Event()

    async def handler(self, user: User, data: Any) -> Any:
        self.entered += 1
        await self.opened.wait()
        return data


# -- subscriptions --------------------------------------------------------------


async def test_concurrent_subscribes_admit_exactly_max_subscriptions(gateway: RealtimeGateway) -> None:
    """40 ``rxstore:subscribe`` of new ids at once with ``max_subscriptions=8``: 8 held, 32 refused
    ``too_many_subscriptions`` (the limit counts those being subscribed), the gauge says 8, and
    nothing is left reserved."""
    async with raw_client(gateway) as sio:
        requests = [
            (SUBSCRIBE, {"id": f"s{i}", "topic": "posts", "where": [["likes", ">", i]]})
            for i in range(LIMIT * TIMES)
        ]
        acks = await at_once(sio, requests)
        assert errors(acks).count(None) == LIMIT, errors(acks)
        assert errors(acks).count("too_many_subscriptions") == LIMIT * (TIMES - 1)
        assert sample(gateway, "rxstore_subscriptions") == LIMIT
        (client,) = gateway.sessions.clients.values()
        assert len(client.subscriptions) == LIMIT and client.reserved == {}
        # a switch of a held id is no new subscription; a new id is still refused
        switch, new = await at_once(
            sio,
            [
                (SUBSCRIBE, {"id": "s0", "topic": "posts", "where": [["likes", "<", 3]]}),
                (SUBSCRIBE, {"id": "new", "topic": "posts"}),
            ],
        )
        assert switch["ok"] and new["error"] == "too_many_subscriptions"


async def test_concurrent_switches_of_one_id_hold_one_subscription(gateway: RealtimeGateway) -> None:
    """40 switches of one id at once: each is acknowledged in order, one subscription is held,
    and it follows the last subset sent."""
    async with raw_client(gateway) as sio:
        requests = [
            (SUBSCRIBE, {"id": "one", "topic": "posts", "where": [["likes", ">", i]]})
            for i in range(LIMIT * TIMES)
        ]
        acks = await at_once(sio, requests)
        assert errors(acks) == [None] * len(requests)
        seqs = [ack["seq"] for ack in acks]
        assert seqs == sorted(seqs)
        (client,) = gateway.sessions.clients.values()
        assert list(client.subscriptions) == ["one"] and sample(gateway, "rxstore_subscriptions") == 1
        assert client.subscriptions["one"].subset.where == (Term("likes", ">", LIMIT * TIMES - 1),)


async def test_a_subscribe_then_an_unsubscribe_sent_at_once_take_effect_in_order(tmp_path: Path) -> None:
    """``rxstore:subscribe`` of ``z`` and, without waiting, ``rxstore:unsubscribe`` of ``z``, on a
    fresh gateway each round (the subscribe's check reads the table's columns first): the
    unsubscribe is acknowledged and ``z`` sends nothing after a write."""
    for round_ in range(3):
        gateway = await start_gateway(f"sqlite:///{tmp_path / f'app{round_}.db'}")
        try:
            await subscribe_then_unsubscribe(gateway)
        finally:
            await gateway.stop()


async def subscribe_then_unsubscribe(gateway: RealtimeGateway) -> None:
    root, posts = root_for(gateway, "watcher")
    async with root, raw_client(gateway) as sio:
        names: list[str] = []
        sio.on("*", lambda name, data: names.extend(event_names(name, data)))
        subscribe = (SUBSCRIBE, {"id": "z", "topic": "posts", "where": [["likes", ">=", 0]]})
        subscribed, unsubscribed = await at_once(sio, [subscribe, (UNSUBSCRIBE, {"id": "z"})])
        assert subscribed["ok"] and unsubscribed == {"ok": True}, (subscribed, unsubscribed)
        (client,) = [c for c in gateway.sessions.clients.values() if c.user.id == "mallory"]
        assert client.subscriptions == {}
        await root.live(timeout=10)
        await save_post(gateway.log, Post(id="p1", title="after", author="ann", likes=1))
        await wait_for(lambda: "p1" in posts.value.rows, what="the watcher to get the write")
        assert "z" not in names


# -- events in flight ----------------------------------------------------------------


async def test_events_in_flight_admit_exactly_max_in_flight(narrow: RealtimeGateway) -> None:
    """40 calls at once to a handler that holds them (max_in_flight=8): 8 run, 32 are refused
    ``too_many_requests`` at once; the gauge says 8 until they answer, then 0; a mutation, a
    broadcast and a subscribe sent meanwhile are refused too; afterwards the connection works."""
    gateway = narrow
    gate = Gate()
    gateway.on("hold")(gate.handler)
    before = refusals(gateway, "too_many_requests")
    async with raw_client(gateway, topics=["posts"]) as sio:
        held = asyncio.ensure_future(at_once(sio, [("hold", i) for i in range(LIMIT * TIMES)]))
        await wait_for(lambda: gate.entered == LIMIT, what="the limit's calls in the handler")
        await wait_for(
            lambda: refusals(gateway, "too_many_requests") - before == LIMIT * (TIMES - 1),
            what="the rest refused",
        )
        assert sample(gateway, "rxstore_requests_in_flight") == LIMIT
        others = await at_once(
            sio,
            [
                ("rxstore:mutate", {"id": "m1", "name": "rename_post", "args": {}}),
                ("rxstore:broadcast", {"topic": "posts", "event": "typing", "data": {}}),
                (SUBSCRIBE, {"id": "s", "topic": "posts"}),
            ],
        )
        assert errors(others) == ["too_many_requests"] * 3
        gate.opened.set()
        acks = await held
        assert errors(acks).count(None) == LIMIT == gate.entered
        assert [ack["result"] for ack in acks if ack.get("ok")] == list(range(LIMIT))
        assert errors(acks).count("too_many_requests") == LIMIT * (TIMES - 1)
        await wait_for(lambda: sample(gateway, "rxstore_requests_in_flight") == 0, what="the gauge at 0")
        assert (await sio.call("hold", "again", timeout=10))["ok"]


async def test_refused_events_leave_nothing_behind(narrow: RealtimeGateway) -> None:
    """A flood of refused events costs the gateway no memory that stays: 4,000 more refusals
    grow what Python holds by far less than they would if kept, and another client gets every
    change written during the flood."""
    gateway = narrow
    gate = Gate()
    gateway.on("hold")(gate.handler)
    root, posts = root_for(gateway, "watcher")
    async with root, raw_client(gateway) as sio:
        await root.live(timeout=10)
        held = asyncio.ensure_future(at_once(sio, [("hold", i) for i in range(LIMIT)]))
        await wait_for(lambda: gate.entered == LIMIT, what="the limit's calls in the handler")
        flood = [("hold", "x" * 1000)] * 500
        await at_once(sio, flood)  # warm up: first-time allocations
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            writes = asyncio.ensure_future(
                asyncio.gather(
                    *(
                        save_post(gateway.log, Post(id=f"f{i}", title="during", author="ann"))
                        for i in range(20)
                    )
                )
            )
            for _ in range(8):
                assert set(errors(await at_once(sio, flood))) == {"too_many_requests"}
            await writes
            await asyncio.sleep(0)  # let the last tasks' callbacks run
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 512 * 1024, f"the gateway kept {grown} bytes after 4,000 refused events"
        await wait_for(lambda: len(posts.value.rows) == 20, what="the watcher to get every change")
        gate.opened.set()
        assert errors(await held) == [None] * LIMIT


async def test_a_client_that_leaves_mid_request_leaves_nothing_behind(tmp_path: Path) -> None:
    """Clients that close while their subscribe's snapshot is read and changes are broadcast to
    them: nothing of them stays filed or queued (subscriptions, queued bytes, clients all 0), no
    error is logged, and another client keeps getting every change."""
    gateway = await start_gateway(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        await asyncio.to_thread(write_big_table, tmp_path / "app.db")  # a snapshot that takes a while
        await wait_for(lambda: sample(gateway, "rxstore_head_seq") > 0, what="the big table in the log")
        root, posts = root_for(gateway, "watcher")
        async with root:
            await root.live(timeout=30)
            rows = len(posts.value.rows)
            subset = {"id": "mine", "topic": "posts", "where": [["title", ">=", "r"]]}
            for i in range(12):
                sio = socketio.AsyncClient(reconnection=False)
                auth = {"token": AUTH.issue(f"leaver{i}"), "topics": ["posts"], "cursor": None}
                await sio.connect(gateway.url, auth=auth, transports=["websocket"], wait_timeout=10)
                await sio.emit(SUBSCRIBE, subset)  # not awaited: the client leaves at once
                await save_post(gateway.log, Post(id=f"d{i}", title="during", author="ann"))
                await sio.disconnect()
            await wait_for(lambda: sample(gateway, "rxstore_connected_clients") == 1, what="only the watcher")
            await wait_for(lambda: len(posts.value.rows) == rows + 12, what="the watcher to get every change")
            await wait_for(
                lambda: sample(gateway, "rxstore_subscriptions") == 0,  # the watcher follows a whole table
                what="no subscription of a client that left",
            )
            assert sample(gateway, "rxstore_queued_bytes") == 0
    finally:
        await gateway.stop()


# -- connects ----------------------------------------------------------------------


async def test_concurrent_connects_admit_exactly_max_pending_syncs(tmp_path: Path) -> None:
    """With one client stuck in its snapshot and ``max_pending_syncs=5``, 20 connects at once:
    exactly 4 are admitted (they wait for the snapshot slot), 16 are refused ``unavailable``;
    ``rxstore_pending_syncs`` says 5, then 0 once the stuck client goes and the 4 are live."""
    gateway = await start_gateway(
        f"sqlite:///{tmp_path / 'app.db'}", max_pending_syncs=5, snapshot_concurrency=1
    )
    stalled = StalledClient(gateway.port, AUTH.issue("stuck"))
    clients: list[Any] = []
    try:
        await asyncio.to_thread(write_big_table, tmp_path / "app.db")
        await asyncio.to_thread(stalled.connect)
        await wait_for(lambda: gateway.sync.pending == 1, what="the stalled client's snapshot under way")
        lives: list[int] = []
        refused: list[Any] = []

        async def connect(i: int) -> str | None:
            sio = socketio.AsyncClient(reconnection=False)
            sio.on("rxstore:live", lambda data: lives.append(i))
            sio.on("connect_error", refused.append)
            auth = {
                "token": AUTH.issue(f"u{i}"),
                "topics": [],
                "subscriptions": [{"id": f"s{i}", "topic": "posts", "where": [["likes", ">", i]]}],
                "cursor": None,
            }
            clients.append(sio)
            try:
                await sio.connect(gateway.url, auth=auth, transports=["websocket"], wait_timeout=10)
            except socketio.exceptions.ConnectionError as exc:
                return str(exc)
            return None

        outcomes = await asyncio.gather(*(connect(i) for i in range(20)))
        admitted = [o for o in outcomes if o is None]
        assert len(admitted) == 4, outcomes
        assert [data["data"]["reason"] for data in refused] == ["unavailable"] * 16, refused
        assert all(data["data"]["retry_after"] == 1.0 for data in refused)
        assert sample(gateway, "rxstore_pending_syncs") == 5 == gateway.sync.pending
        stalled.close()
        await wait_for(lambda: len(lives) == 4, what="the 4 admitted clients live")
        await wait_for(lambda: gateway.sync.pending == 0, what="no sync pending")
        assert sample(gateway, "rxstore_pending_syncs") == 0
    finally:
        stalled.close()
        for sio in clients:
            with contextlib.suppress(Exception):
                await sio.disconnect()
        await gateway.stop()
