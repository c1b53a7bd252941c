"""rxstore.gateway.delivery.catchup: a live client that falls behind catches up from the log, on its link.

Real gateways on SQLite (and PostgreSQL for the RootStore case) on 127.0.0.1; RootStore clients and
raw websocket clients (engine.io spoken by hand) whose socket reading the test pauses, so that a
burst of changes in one transaction puts them over a small ``client_queue_limit`` for certain.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from rxstore import RootStore
from rxstore.gateway.access.auth import User
from rxstore.gateway.delivery.queues import room
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import BATCH, LIVE, RESET, SNAPSHOT
from tests.gateway.harness import AUTH, SeqCounter, root_for, start_gateway
from tests.gateway.raw_socketio import read_events
from tests.waiting import wait_for

ROWS = 20_000


def burst(sqlite: bool) -> str:
    """ROWS INSERTs in one statement (one transaction): odd rows by alice, even ones by bob."""
    first, last, body = ("?", "?", "?") if sqlite else ("$1", "$2", "$3")
    return (
        f"WITH RECURSIVE c(x) AS (SELECT CAST({first} AS INTEGER) UNION ALL SELECT x + 1 FROM c "
        f"WHERE x < CAST({last} AS INTEGER)) "
        "INSERT INTO posts (id, title, body, author) "
        f"SELECT 'p' || x, 'post ' || x, {body}, CASE WHEN x % 2 = 1 THEN 'alice' ELSE 'bob' END FROM c"
    )


@contextlib.asynccontextmanager
async def gateway_at(url: str, **options: Any) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(url, **options)
    try:
        yield gateway
    finally:
        await gateway.stop()


async def write_burst(gateway: RealtimeGateway, body: str = "b" * 400) -> int:
    """Commit ROWS INSERTs in one transaction; the head after it."""
    await gateway.log.execute(burst(gateway.log.url.startswith("sqlite")), 1, ROWS, body)
    return await gateway.log.head()


def metric(gateway: RealtimeGateway, name: str) -> float:
    return gateway.metrics.registry.get_sample_value(name) or 0.0


def counting_connects(gateway: RealtimeGateway) -> list[str]:
    """The sids of every CONNECT the gateway accepts from now on (a spy on its sessions)."""
    sids: list[str] = []
    connect = gateway.sessions.connect

    async def counted(sid: str, environ: Any, auth: Any) -> None:
        await connect(sid, environ, auth)
        sids.append(sid)

    gateway.sessions.connect = counted  # type: ignore[method-assign]
    return sids


def socket_of(root: RootStore) -> asyncio.Transport:
    """The TCP transport under a RootStore's websocket (python-socketio -> python-engineio -> aiohttp)."""
    transport = root._transport._client.eio.ws._response.connection.transport  # type: ignore[attr-defined]
    assert isinstance(transport, asyncio.Transport)
    return transport


async def over_its_bounds(
    gateway: RealtimeGateway, pause: Callable[[], None], resume: Callable[[], None]
) -> int:
    """Pause a client's reading, commit the burst, wait until the client is moved to catch up, resume."""
    pause()
    head = await write_burst(gateway)
    await wait_for(lambda: metric(gateway, "rxstore_catchups_total") >= 1, 20, "a catch-up")
    assert metric(gateway, "rxstore_catching_up") == 1
    resume()
    return head


class RawClient:
    """One raw aiohttp websocket speaking engine.io/Socket.IO by hand; records what it gets, in order."""

    def __init__(self, gateway: RealtimeGateway, auth: dict[str, Any]) -> None:
        self.url = gateway.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.auth = auth
        self.events: list[tuple[str, dict[str, Any]]] = []
        """``(event name, envelope)`` of every change in a batch."""
        self.control: list[tuple[str, Any]] = []
        self.snapshot_rows = 0
        self.session = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> RawClient:
        self.ws = ws = await self.session.ws_connect(self.url, max_msg_size=0)
        await ws.receive()  # the engine.io OPEN packet
        await ws.send_str("40" + json.dumps(self.auth))
        self.task = asyncio.create_task(self._read(ws))
        await wait_for(lambda: self.lives == 1, 10, "rxstore:live")
        return self

    @property
    def lives(self) -> int:
        return sum(name == LIVE for name, _ in self.control)

    def transport(self) -> asyncio.Transport:
        assert self.ws is not None
        transport = self.ws._response.connection.transport  # type: ignore[union-attr]
        assert isinstance(transport, asyncio.Transport)
        return transport

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await read_events(ws, self._on_event)

    def _on_event(self, name: str, payload: Any) -> None:
        if name == BATCH:
            self.events.extend((event[0], event[1]) for event in payload["events"])
        elif name == SNAPSHOT:
            self.snapshot_rows += len(payload["records"])
        else:
            self.control.append((name, payload))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        await self.session.close()


@contextlib.asynccontextmanager
async def raw_client(gateway: RealtimeGateway, user: str = "alice", **auth: Any) -> AsyncIterator[RawClient]:
    client = RawClient(gateway, {"token": AUTH.issue(user), **auth})
    try:
        yield await client.connect()
    finally:
        await client.close()


def strictly_increasing(seqs: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(seqs))


# -- the same connection, every change once ------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_rootstore_over_its_bounds_catches_up_on_the_same_connection_with_every_change_once(
    backend: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """client_queue_limit=500 and 20,000 changes in one transaction while the RootStore does not read:
    it is moved to catch up (rxstore_catchups_total), not dropped; on the same connection (no second
    CONNECT) it ends with every change exactly once, in order, and live again with no second
    rxstore:live."""
    url = f"sqlite:///{tmp_path}/app.db" if backend == "sqlite" else request.getfixturevalue("pg_dsn")
    async with gateway_at(url, client_queue_limit=500) as gateway:
        root, posts = root_for(gateway)
        counter = SeqCounter(root)
        lives: list[Any] = []
        root.events.subscribe(lambda event: lives.append(event) if event.name == LIVE else None)
        connects = counting_connects(gateway)
        async with root:
            await wait_for(lambda: any(c.live for c in gateway._clients.values()), 10, "live")
            (sid,) = gateway._clients
            socket = socket_of(root)
            head = await over_its_bounds(gateway, socket.pause_reading, socket.resume_reading)
            await wait_for(lambda: len(posts.value) == ROWS, 30, "every row")
            await wait_for(lambda: gateway._clients[sid].live, 10, "live again")
            assert list(gateway._clients) == [sid] and connects == [sid]  # one CONNECT: the first
            assert counter.seen == list(range(head - ROWS + 1, head + 1))  # once each, in order
            assert metric(gateway, "rxstore_slow_clients_dropped_total") == 0
            assert metric(gateway, "rxstore_stalled_clients_dropped_total") == 0
            assert metric(gateway, "rxstore_catching_up") == 0
            assert len(lives) <= 1  # the RootStore's own first rxstore:live only, if it shows it


async def test_behind_drop_keeps_the_old_behaviour_the_client_is_dropped_and_resumes(tmp_path: Any) -> None:
    """RealtimeGateway(behind="drop"): the same burst drops the RootStore (rxstore_slow_clients_dropped),
    which reconnects with its cursor and still ends with every row; nothing is counted as a catch-up."""
    async with gateway_at(f"sqlite:///{tmp_path}/app.db", client_queue_limit=500, behind="drop") as gateway:
        root, posts = root_for(gateway)
        connects = counting_connects(gateway)
        async with root:
            await wait_for(lambda: any(c.live for c in gateway._clients.values()), 10, "live")
            socket = socket_of(root)
            socket.pause_reading()
            await write_burst(gateway)
            await wait_for(lambda: metric(gateway, "rxstore_slow_clients_dropped_total") == 1, 20, "a drop")
            socket.resume_reading()  # it sees its connection cut, and reconnects
            await wait_for(lambda: len(posts.value) == ROWS, 30, "every row, after a reconnect")
            assert len(connects) >= 1 and metric(gateway, "rxstore_catchups_total") == 0


def test_behind_takes_catch_up_or_drop_only(tmp_path: Any) -> None:
    """Any other value of behind is refused when the gateway is made."""
    from rxstore.gateway.log.open_log import open_change_log

    behind: Any = "wait"
    with pytest.raises(ValueError, match="behind"):
        RealtimeGateway(
            open_change_log(f"sqlite:///{tmp_path}/app.db"), topics=["posts"], auth=AUTH, behind=behind
        )


# -- subsets and row filters -----------------------------------------------------------------------


def alice_only(user: User, topic: str, row: Any) -> bool:
    return bool(row["author"] == user.id)


@pytest.mark.parametrize(
    ("options", "auth", "name"),
    [
        (
            {},
            {"subscriptions": [{"id": "mine", "topic": "posts", "where": [["author", "=", "alice"]]}]},
            "mine",
        ),
        ({"authorize": alice_only}, {"topics": ["posts"]}, "post_update"),
    ],
    ids=["live-query", "authorize"],
)
async def test_a_client_catching_up_gets_exactly_its_subset_or_its_visible_rows(
    tmp_path: Any, options: dict[str, Any], auth: dict[str, Any], name: str
) -> None:
    """A live-query client (author = alice) or an authorize-filtered one, over its bounds in a burst
    of alice's and bob's rows, gets alice's 10,000 INSERTs exactly once, in order, on its connection."""
    url = f"sqlite:///{tmp_path}/app.db"
    async with (
        gateway_at(url, client_queue_limit=300, **options) as gateway,
        raw_client(gateway, **auth) as raw,
    ):
        socket = raw.transport()
        head = await over_its_bounds(gateway, socket.pause_reading, socket.resume_reading)
        await wait_for(lambda: len(raw.events) >= ROWS // 2, 30, "alice's rows")
        await wait_for(lambda: all(c.live for c in gateway._clients.values()), 10, "live again")
        seqs = [envelope["seq"] for _, envelope in raw.events]
        assert seqs == list(range(head - ROWS + 1, head + 1, 2))  # the odd rows: alice's, once each
        assert {event for event, _ in raw.events} == {name}
        assert all(e["record"]["author"] == "alice" and e["op"] == "INSERT" for _, e in raw.events)
        assert raw.lives == 1 and len(gateway._clients) == 1


# -- clients that do not read, a log trimmed meanwhile, broadcasts -----------------------------------


async def test_a_client_that_never_reads_is_still_dropped_within_its_bounds(tmp_path: Any) -> None:
    """A raw client stops reading for good: it is moved to catch up, its queue stays within its bounds,
    and it is dropped for stalling (client_send_timeout) rather than kept forever."""
    options: dict[str, Any] = {
        "client_queue_limit": 500,
        "client_queue_bytes": 1 << 20,
        "client_send_timeout": 1.0,
    }
    async with gateway_at(f"sqlite:///{tmp_path}/app.db", **options) as gateway, raw_client(gateway) as raw:
        client = next(iter(gateway._clients.values()))
        raw.transport().pause_reading()
        await write_burst(gateway)
        await wait_for(lambda: metric(gateway, "rxstore_catchups_total") >= 1, 20, "a catch-up")
        assert client.queued <= 500 and client.queued_bytes <= 1 << 20
        started = time.monotonic()
        await wait_for(lambda: not gateway._clients, 15, "the client dropped")
        assert time.monotonic() - started < 10
        assert metric(gateway, "rxstore_stalled_clients_dropped_total") == 1
        assert metric(gateway, "rxstore_slow_clients_dropped_total") == 0
        await wait_for(lambda: metric(gateway, "rxstore_catching_up") == 0, 5, "no catch-up left")
        assert client.tasks == [] or all(task.done() for task in client.tasks)


async def test_a_client_whose_cursor_was_trimmed_while_it_caught_up_is_reset_and_resnapshotted(
    tmp_path: Any,
) -> None:
    """The log is trimmed past a lagging client's cursor: on the same connection it gets
    rxstore:reset (cursor_expired), the whole table as a snapshot, then rxstore:live, then live changes."""
    async with (
        gateway_at(f"sqlite:///{tmp_path}/app.db", client_queue_limit=500) as gateway,
        raw_client(gateway) as raw,
    ):
        socket = raw.transport()
        await over_its_bounds(gateway, socket.pause_reading, lambda: None)
        assert await gateway.log.trim(max_rows=10) > 0
        socket.resume_reading()
        await wait_for(lambda: raw.lives == 2, 30, "rxstore:live after the reset")
        names = [name for name, _ in raw.control]
        assert names == [LIVE, RESET, LIVE] and raw.control[1][1]["reason"] == "cursor_expired"
        assert raw.snapshot_rows == ROWS and len(gateway._clients) == 1
        await gateway.log.execute("UPDATE posts SET likes = 1 WHERE id = 'p1'")
        head = await gateway.log.head()
        await wait_for(lambda: bool(raw.events) and raw.events[-1][1]["seq"] == head, 10, "a live change")
        assert strictly_increasing([e["seq"] for _, e in raw.events])


async def test_a_broadcast_over_a_clients_bounds_drops_it_as_before(tmp_path: Any) -> None:
    """A client broadcast over client_queue_bytes is not in the log: the client is dropped (it resumes)."""
    async with (
        gateway_at(f"sqlite:///{tmp_path}/app.db", client_queue_bytes=64 << 10) as gateway,
        raw_client(gateway) as raw,
    ):
        await gateway.sio.emit("chat", {"text": "x" * (100 << 10)}, room=room("posts"))
        await wait_for(lambda: not gateway._clients, 10, "the client dropped")
        assert metric(gateway, "rxstore_slow_clients_dropped_total") == 1
        assert metric(gateway, "rxstore_catchups_total") == 0
        assert not [data for name, data in raw.control if name == "chat"]
