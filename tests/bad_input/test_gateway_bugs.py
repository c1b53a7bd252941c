"""Regression tests for the gateway bugs the bad-input suite found (all fixed).

Each test runs on a gateway of its own (the bugs disturbed the shared one
of ``test_gateway.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway.demo import Post, save_post
from rxstore.protocol.events import BROADCAST, MUTATE, SNAPSHOT
from tests.bad_input.gateway_env import GatewayEnv
from tests.gateway.harness import AUTH
from tests.waiting import wait_for


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[GatewayEnv]:
    env = GatewayEnv(tmp_path)
    env.run(env.start())
    try:
        yield env
    finally:
        env.close()


def test_a_client_event_named_connect_does_not_redo_the_handshake(fresh: GatewayEnv) -> None:
    async def attempt() -> None:
        client = await fresh.attacker("mallory")
        snapshots: list[Any] = []
        client.on(SNAPSHOT, snapshots.append)
        await asyncio.sleep(0.3)  # the real handshake's snapshot may arrive or not: the raw client
        snapshots.clear()  # can only listen after connect returns  # the snapshot of the real handshake
        sid = client.get_sid()
        auth = {"token": AUTH.issue("mallory"), "topics": ["posts"]}
        for _ in range(3):
            await client.emit("connect", ({}, auth))

        def writers() -> int:
            name = f"rxstore-write-{sid}"
            return sum(1 for t in asyncio.all_tasks() if t.get_name() == name and not t.done())

        with contextlib.suppress(AssertionError):  # give the bug 3 s to show (a fixed gateway waits them out)
            await wait_for(lambda: bool(snapshots) or writers() > 1, what="a redone handshake", timeout=3)
        assert snapshots == [], f"{len(snapshots)} snapshots re-sent"
        assert writers() == 1, f"{writers()} writer tasks for one connection"

    fresh.run(attempt())


def test_a_client_event_named_disconnect_does_not_orphan_the_connection(fresh: GatewayEnv) -> None:
    """A client event named 'disconnect' is refused (``forbidden``) and the session lives on, whole."""

    async def attempt() -> None:
        client = await fresh.attacker("mallory")
        frames: list[str] = []
        client.on("*", lambda event, data=None: frames.append(f"{event} {data}"))
        await client.emit("disconnect", "bye")
        ack = await client.call("disconnect", "bye", timeout=5)
        assert isinstance(ack, dict) and ack.get("error") == "forbidden", ack
        # The gateway handles a client's events in order: this answer comes after both 'disconnect's.
        ack = await client.call("no_such_event", 1, timeout=5)
        assert ack.get("error") == "unknown_event", f"mallory's session is gone: {ack}"
        assert client.connected, "the gateway closed the connection instead of refusing the event"
        # Still subscribed: a new change reaches mallory (the writer of her session is alive).
        await save_post(fresh.log, Post(id="after-disconnect", title="still live"))
        await wait_for(
            lambda: any("after-disconnect" in frame for frame in frames),
            what="a live change after the 'disconnect' event",
            timeout=5,
        )

    fresh.run(attempt())


def test_a_broadcast_under_a_socketio_reserved_name_is_refused(fresh: GatewayEnv) -> None:
    async def attempt() -> None:
        ack = await fresh.call("mallory", BROADCAST, {"topic": "posts", "event": "disconnect", "data": 1})
        await asyncio.sleep(0.5)  # the point: a forwarded 'disconnect' gets time to reconnect alice
        hello = await fresh.call("mallory", BROADCAST, {"topic": "posts", "event": "hello", "data": 2})
        assert hello == {"ok": True}
        await wait_for(
            lambda: any(name == "hello" for name, _ in fresh.broadcasts), what="hello at alice", timeout=15.0
        )
        await asyncio.sleep(0.3)  # the point: a second 'hello' would arrive now
        assert fresh.alice.metrics.reconnects == 0, f"alice reconnected: {fresh.states}"
        assert [name for name, _ in fresh.broadcasts].count("hello") == 1, "alice got 'hello' twice"
        assert ack.get("ok") is False, ack
        for name in ("connect", "connect_error", "disconnecting", "newListener", "removeListener"):
            other = await fresh.call("mallory", BROADCAST, {"topic": "posts", "event": name, "data": 3})
            assert other.get("ok") is False, (name, other)

    fresh.run(attempt())


@pytest.mark.parametrize("event", [MUTATE, BROADCAST, "no_such_event"])
def test_an_event_with_two_arguments_gets_an_error_ack(fresh: GatewayEnv, event: str) -> None:
    async def attempt() -> None:
        client = await fresh.attacker("mallory")
        payload = {"id": "m1", "name": "save_post", "args": {"id": "p", "title": "t"}}
        ack = await client.call(event, (payload, "extra"), timeout=2)
        assert isinstance(ack, dict) and ack.get("ok") is False, ack
        assert await fresh.counts() == (0, 0)

    fresh.run(attempt())
