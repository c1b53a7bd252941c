"""Live queries end to end (issue 12): RootStore against a real RealtimeGateway on SQLite.

A channel switch while another task writes to both channels, stores added and
removed on a connected root, and resume after the gateway drops the connection:
each checked against the database's own subset (no loss, no duplicate, no row
of the old channel after the switch is acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rxstore import Backoff, Event, RootStore, SubsetError, TableStore, Term
from rxstore.gateway import open_change_log
from rxstore.gateway.access.auth import TokenAuth
from rxstore.gateway.server import RealtimeGateway
from tests.waiting import wait_for

AUTH = TokenAuth(secret="rxstore-test-secret-0123456789abcdef")
CHANNELS = ("general", "random")
Row = dict[str, Any]


class Messages(TableStore[Row]):
    table = "messages"


async def start_chat(path: Path, **options: Any) -> RealtimeGateway:
    """A gateway serving a ``messages`` table in a new SQLite file at ``path``."""
    log = open_change_log(f"sqlite:///{path}")
    await log.open()
    await log.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel_id TEXT NOT NULL, body TEXT NOT NULL)"
    )
    gateway = RealtimeGateway(log, topics=["messages"], auth=AUTH, **options)
    await gateway.start(port=0)
    return gateway


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_chat(tmp_path / "chat.db")
    yield gateway
    await gateway.stop()


class Writer:
    """Writes messages to alternating channels (ids 1, 2, ...)."""

    def __init__(self, gateway: RealtimeGateway) -> None:
        self.log = gateway.log
        self.ids = itertools.count(1)

    async def post(self, channel: str) -> int:
        message = next(self.ids)
        await self.log.execute(
            "INSERT INTO messages (id, channel_id, body) VALUES (?, ?, ?)", message, channel, f"m{message}"
        )
        return message

    async def keep_writing(self, stop: asyncio.Event) -> None:
        for channel in itertools.cycle(CHANNELS):
            if stop.is_set():
                return
            await self.post(channel)
            await asyncio.sleep(0.002)

    async def channel(self, channel: str) -> dict[int, Row]:
        rows = await self.log.fetch("SELECT id, channel_id, body FROM messages WHERE channel_id = ?", channel)
        return {row["id"]: row for row in rows}


def root_of(gateway: RealtimeGateway, *stores: TableStore[Any]) -> RootStore:
    backoff = Backoff(initial=0.05, maximum=0.2, jitter=0.0)
    return RootStore(gateway.url, stores=stores, token=AUTH.issue("alice"), backoff=backoff)


async def settled(store: Messages, writer: Writer, channel: str) -> None:
    """Wait until the store holds exactly the channel's rows in the database."""

    async def same() -> bool:
        return dict(store.value.rows) == await writer.channel(channel)

    await wait_for(same, what=f"the store to hold #{channel}")


async def test_a_channel_switch_under_concurrent_writes_loses_nothing_and_leaks_nothing(
    gateway: RealtimeGateway,
) -> None:
    """While both channels are written to, switch general -> random: after the ack no #general row
    arrives under the store's id, and the store ends equal to the database's #random."""
    writer = Writer(gateway)
    for channel in CHANNELS * 5:
        await writer.post(channel)
    inbox = Messages(where={"channel_id": "general"})
    after_ack: list[Event] = []
    acked = False

    def watch(event: Event) -> None:
        if acked and event.name == inbox.event:
            after_ack.append(event)

    async with root_of(gateway, inbox) as root:
        root.events.subscribe(watch)
        await root.live(timeout=10)
        stop = asyncio.Event()
        writing = asyncio.create_task(writer.keep_writing(stop))
        await wait_for(lambda: len(inbox.value) > 8, what="live #general rows")
        await inbox.where({"channel_id": "random"})
        acked = True
        assert all(row["channel_id"] == "random" for row in inbox.value.rows.values())
        await wait_for(lambda: len(after_ack) >= 5, what="changes after the switch")
        stop.set()
        await writing
        await settled(inbox, writer, "random")
    assert after_ack and all(e.change is not None and e.change.record is not None for e in after_ack)
    assert {e.change.record["channel_id"] for e in after_ack if e.change and e.change.record} == {"random"}
    assert root.metrics.errors == 0


async def test_stores_added_and_removed_on_a_connected_root(gateway: RealtimeGateway) -> None:
    """``root.add`` returns with the subset's snapshot applied and follows new rows; after
    ``root.remove`` nothing more reaches it and it is STALE."""
    writer = Writer(gateway)
    for channel in CHANNELS * 3:
        await writer.post(channel)
    inbox = Messages(where={"channel_id": "general"})
    async with root_of(gateway, inbox) as root:
        await root.live(timeout=10)
        randoms = await root.add(Messages(where={"channel_id": "random"}, event="randoms"))
        assert dict(randoms.value.rows) == await writer.channel("random")
        new = await writer.post("random")
        await wait_for(lambda: new in randoms.value.rows, what="the new row in the added store")
        await root.remove(randoms)
        left = dict(randoms.value.rows)
        await writer.post("random")
        last = await writer.post("general")
        await wait_for(lambda: last in inbox.value.rows, what="a later #general row")
        assert dict(randoms.value.rows) == left and randoms not in root.stores
        assert randoms.sync.state.value == "stale"


async def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(gateway: RealtimeGateway) -> None:
    """The gateway drops the connection while writes go on; after the reconnect (with the cursor and
    ``since``) both subset stores equal the database, every change seq seen at most once per id."""
    writer = Writer(gateway)
    for channel in CHANNELS * 3:
        await writer.post(channel)
    inbox = Messages(where={"channel_id": "general"})
    seen: dict[tuple[str, int], int] = {}

    def count(event: Event) -> None:
        if event.seq is not None and event.change is not None:
            seen[(event.name, event.seq)] = seen.get((event.name, event.seq), 0) + 1

    async with root_of(gateway, inbox) as root:
        root.events.subscribe(count)
        await root.live(timeout=10)
        randoms = await root.add(Messages(where={"channel_id": "random"}, event="randoms"))
        stop = asyncio.Event()
        writing = asyncio.create_task(writer.keep_writing(stop))
        await wait_for(lambda: len(seen) >= 6, what="live changes")
        reconnects = root.metrics.reconnects
        for sid in list(gateway.sessions.clients):
            with contextlib.suppress(Exception):
                await gateway.sio.disconnect(sid)
        await wait_for(lambda: root.metrics.reconnects > reconnects, what="the reconnect")
        await root.live(timeout=10)
        await wait_for(lambda: len(seen) >= 20, what="changes after the reconnect")
        stop.set()
        await writing
        await settled(inbox, writer, "general")
        await settled(randoms, writer, "random")
    assert max(seen.values()) == 1
    assert root.metrics.errors == 0


async def test_a_refused_subscription_raises_subset_error_and_the_connection_goes_on(
    gateway: RealtimeGateway,
) -> None:
    """``root.add`` with an unknown column and ``where()`` to one: SubsetError(code='invalid_subscription');
    the store is not added / keeps its subset, and the other store still follows its rows."""
    writer = Writer(gateway)
    inbox = Messages(where={"channel_id": "general"})
    async with root_of(gateway, inbox) as root:
        await root.live(timeout=10)
        with pytest.raises(SubsetError) as refused:
            await root.add(Messages(where={"no_such_column": 1}, event="bad"))
        assert refused.value.code == "invalid_subscription" and len(root.stores) == 1
        with pytest.raises(SubsetError) as switched:
            await inbox.where({"no_such_column": 1})
        assert switched.value.code == "invalid_subscription"
        assert inbox.subset.where == (Term("channel_id", "=", "general"),)
        new = await writer.post("general")
        await wait_for(lambda: new in inbox.value.rows, what="a #general row after the refusals")
