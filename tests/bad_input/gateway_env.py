"""A real gateway on SQLite with a well-behaved client and raw attackers, run on a loop thread.

The hypothesis properties of ``test_gateway.py`` are plain (sync) functions: each
example submits coroutines to the loop that runs the gateway, the well-behaved
``RootStore`` (``alice``) and the raw python-socketio connections of the
attackers (``mallory``, ``bob``). Connections are reused across examples, so a
whole property costs a handful of sockets.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import socketio

from rxstore import Event, EventKind, RootStore, TableStore
from rxstore.gateway import ChangeLog, open_change_log
from rxstore.gateway.demo import all_posts, create_demo_schema, register_demo_mutations
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, PostStore
from tests.waiting import wait_for

T = TypeVar("T")

MAX_FRAME = 64 * 1024
"""The gateway's max_frame_bytes in these tests (64 KiB keeps oversize frames cheap)."""
SERVED = ("posts", "notes", "secret")
CHANGE_EVENTS = frozenset({"post_update", "note_update", "secret_update"})
SOCKETIO_RESERVED = frozenset(
    {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
        "__disconnect_final",
    }
)
"""Event names Socket.IO (python-socketio or socket.io 4) gives a meaning of its own."""


def may_subscribe(user: Any, topic: str) -> bool:
    """``secret`` is alice's only."""
    return topic != "secret" or user.id == "alice"


class NoteStore(TableStore[dict[str, Any]]):
    table = "notes"


class LoopThread:
    """An asyncio loop on a daemon thread; :meth:`run` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bad-input-gateway", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        """Cancel what is left (engine.io's ping and service tasks), stop and close the loop."""
        try:
            self.run(_cancel_the_rest(), timeout=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


async def _cancel_the_rest() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def raw_client(
    url: str, auth: Any, *, wait_timeout: float = 5.0
) -> tuple[socketio.AsyncClient | None, Any]:
    """Connect a raw python-socketio client; return it (or ``None`` if refused) and the refusal data."""
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    client.on("connect_error", lambda data=None: refusals.append(data))
    try:
        await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=wait_timeout)
    except socketio.exceptions.ConnectionError:
        await close_client(client)
        return None, refusals[0] if refusals else None
    return client, None


async def close_client(client: socketio.AsyncClient) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 5)
        await asyncio.wait_for(client.shutdown(), 5)
    except Exception:  # best effort on a socket the gateway already closed
        pass


class GatewayEnv:
    """The gateway, alice (a RootStore), mallory and bob (raw clients), on one loop thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.thread = LoopThread()
        self.gateway: RealtimeGateway
        self.log: ChangeLog
        self.alice: RootStore
        self.posts = PostStore()
        self.notes = NoteStore()
        self.seen: list[int] = []
        self.broadcasts: list[tuple[str, Any]] = []
        self.states: list[str] = []
        self.alice_errors: list[Exception] = []
        self.start_seq: int | None = None
        self.attackers: dict[str, socketio.AsyncClient] = {}
        self.applied_mutations: dict[tuple[str, str], tuple[tuple[Any, Any], Any]] = {}
        """(user, mutation id) -> ((name, args), result) of each mutation applied."""
        self.expected_broadcasts: list[tuple[str, Any]] = []

    def run(self, coro: Awaitable[T], timeout: float = 60.0) -> T:
        return self.thread.run(coro, timeout)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        log = open_change_log(f"sqlite:///{self.directory}/app.db")
        await log.open()
        await create_demo_schema(log)
        for table in ("notes", "secret"):
            await log.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, text TEXT NOT NULL DEFAULT '')"
            )
        self.log = log
        self.gateway = RealtimeGateway(
            log, topics=list(SERVED), auth=AUTH, can_subscribe=may_subscribe, max_frame_bytes=MAX_FRAME
        )
        register_demo_mutations(self.gateway)
        await self.gateway.start(port=0)
        self.alice = RootStore(
            self.gateway.url, stores=[self.posts, self.notes], token=AUTH.issue("alice"), topics=["secret"]
        )
        self.alice.events.subscribe(self._on_alice_event)
        self.alice.errors.subscribe(self.alice_errors.append)
        self.alice.connection.subscribe(lambda state: self.states.append(state.status.value))
        await self.alice.setup_realtime()
        await wait_for(lambda: self.posts.seq is not None, what="alice's snapshot", timeout=15.0)
        self.start_seq = self.alice.cursor

    def _on_alice_event(self, event: Event) -> None:
        if event.change is not None:
            self.seen.append(event.change.seq)
        elif event.kind is EventKind.MESSAGE and isinstance(event.data, dict) and "from" in event.data:
            self.broadcasts.append((event.name, event.data))

    async def stop(self) -> None:
        for client in self.attackers.values():
            await close_client(client)
        await self.alice.teardown_realtime()
        await self.gateway.stop()

    def close(self) -> None:
        try:
            self.run(self.stop())
        finally:
            self.thread.close()

    # -- attackers ---------------------------------------------------------------

    async def attacker(self, user: str, topics: list[str] | None = None) -> socketio.AsyncClient:
        """The raw connection of ``user`` (reconnected if the gateway closed it)."""
        client = self.attackers.get(user)
        if client is not None and client.connected:
            return client
        if client is not None:
            await close_client(client)
        auth = {"token": AUTH.issue(user), "topics": topics or ["posts"], "cursor": None}
        client, refusal = await raw_client(self.gateway.url, auth)
        assert client is not None, f"{user} could not connect: {refusal}"
        self.attackers[user] = client
        return client

    async def call(self, user: str, event: Any, data: Any = None, timeout: float = 10.0) -> Any:
        client = await self.attacker(user)
        return await client.call(event, data, timeout=timeout)

    # -- what must not change ----------------------------------------------------

    async def counts(self) -> tuple[int, int]:
        """Rows of the change log and of the applied-mutations table."""
        (changes,) = await self.log.fetch("SELECT count(*) AS n FROM rxstore_changes")
        (mutations,) = await self.log.fetch("SELECT count(*) AS n FROM rxstore_mutations")
        return changes["n"], mutations["n"]

    async def log_seqs(self) -> list[int]:
        rows = await self.log.fetch(
            "SELECT seq FROM rxstore_changes WHERE seq > ? ORDER BY seq", self.start_seq or 0
        )
        return [row["seq"] for row in rows]

    async def check_alice(self, timeout: float = 20.0) -> None:
        """Alice got every change written since she connected, once, in order, and equals the tables."""
        expected = await self.log_seqs()
        await wait_for(
            lambda: len(self.seen) >= len(expected),
            what=f"alice receiving {len(expected)} changes",
            timeout=timeout,
        )
        assert self.seen == expected, "alice missed, duplicated or reordered changes"
        posts = await all_posts(self.log)
        await wait_for(
            lambda: self.posts.value.to_dict() == posts, what="alice's posts == table", timeout=timeout
        )
        notes = {row["id"]: row for row in await self.log.fetch("SELECT id, text FROM notes")}
        await wait_for(
            lambda: self.notes.value.to_dict() == notes, what="alice's notes == table", timeout=timeout
        )
        count = len(self.expected_broadcasts)
        await wait_for(
            lambda: len(self.broadcasts) >= count, what=f"alice receiving {count} broadcasts", timeout=timeout
        )
        assert sorted(map(repr, self.broadcasts)) == sorted(map(repr, self.expected_broadcasts))
        assert self.alice_errors == [], self.alice_errors
        metrics = self.alice.metrics
        assert metrics.duplicates == 0 and metrics.reconnects == 0 and metrics.errors == 0
        assert self.alice.connection_state.connected
        assert self.states.count("connected") == 1, f"alice's link flapped: {self.states}"

    async def check_gateway(self) -> None:
        async with aiohttp.ClientSession() as http, http.get(f"{self.gateway.url}/healthz") as response:
            assert response.status == 200, await response.text()
