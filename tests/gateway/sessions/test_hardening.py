"""Fail-closed authorization and token lifetime, against a real gateway and real clients.

- An ``authorize`` hook that raises on one row hides that row from that user
  only: the other rows of the same transaction, the other users and the
  snapshots are not affected, and the failure is counted in ``/metrics``.
- A session ends when its token expires (``rxstore:closing`` with
  ``token_expired``); a ``RootStore`` with a token provider comes back with a
  fresh token and resumes from its cursor, with no loss, no duplicate and no
  new snapshot; one with a fixed token stays out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rxstore import Backoff, RootStore
from rxstore.client.connection import ConnectionStatus
from rxstore.gateway.access.auth import User
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.events import CLOSING
from tests.gateway.harness import AUTH, PostStore, SeqCounter, start_gateway
from tests.waiting import wait_for

FAST = Backoff(initial=0.05, factor=2.0, maximum=0.5, jitter=0.1)


def _raising_authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    if row.get("title") == "boom":
        raise RuntimeError("authorize bug on a boom row")
    return row.get("author") == user.id


async def _metric(gateway: RealtimeGateway, name: str) -> float:
    from prometheus_client import generate_latest

    for line in generate_latest(gateway.metrics.registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


@pytest.fixture
async def raising_gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path / 'auth.db'}", authorize=_raising_authorize)
    yield gateway
    await gateway.stop()


async def _insert(gateway: RealtimeGateway, rows: list[tuple[str, str, str]]) -> None:
    """Insert ``(id, title, author)`` rows in one transaction (as an outside writer would)."""
    values = ", ".join("(?, ?, ?)" for _ in rows)
    args = [value for row in rows for value in row]
    await gateway.log.execute(f"INSERT INTO posts (id, title, author) VALUES {values}", *args)


async def test_an_authorize_hook_that_raises_hides_only_its_row_from_each_user(
    raising_gateway: RealtimeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = raising_gateway
    await _insert(gateway, [("a0", "before", "alice"), ("x0", "boom", "alice")])  # in every snapshot
    alice_posts, bob_posts = PostStore(), PostStore()
    alice = RootStore(gateway.url, stores=[alice_posts], token=AUTH.issue("alice"))
    bob = RootStore(gateway.url, stores=[bob_posts], token=AUTH.issue("bob"))
    caplog.set_level(logging.WARNING, logger="rxstore.gateway")
    async with alice, bob:
        await wait_for(
            lambda: alice_posts.sync.state.value == "live" and bob_posts.sync.state.value == "live"
        )
        assert set(alice_posts.value.to_dict()) == {"a0"}, "the snapshot failed or leaked the raising row"
        assert bob_posts.value.to_dict() == {}
        # One transaction: alice's row, bob's row and a row the hook raises on.
        await _insert(gateway, [("a1", "hers", "alice"), ("b1", "his", "bob"), ("x1", "boom", "bob")])
        await _insert(gateway, [("a2", "later", "alice"), ("b2", "later", "bob")])
        await wait_for(lambda: "a2" in alice_posts.value and "b2" in bob_posts.value, what="later changes")
        assert set(alice_posts.value.to_dict()) == {"a0", "a1", "a2"}
        assert set(bob_posts.value.to_dict()) == {"b1", "b2"}
        # A row the hook raises on, updated so that it would now be visible: still hidden.
        await gateway.log.execute("UPDATE posts SET title = 'boom', author = 'alice' WHERE id = 'b2'")
        await _insert(gateway, [("a3", "last", "alice")])
        await wait_for(lambda: "a3" in alice_posts.value and "b2" not in bob_posts.value, what="hidden")
        assert "b2" not in alice_posts.value
        assert alice.metrics.reconnects == 0 and bob.metrics.reconnects == 0
    assert await _metric(gateway, "rxstore_authorize_errors_total") >= 3
    assert await _metric(gateway, "rxstore_snapshots_total") == 2
    warnings = [r for r in caplog.records if "authorize raised" in r.getMessage()]
    assert 1 <= len(warnings) <= 2, "one throttled warning, not one per row and user"


async def test_a_can_subscribe_hook_that_raises_refuses_the_topic(tmp_path: Path) -> None:
    def can_subscribe(user: User, topic: str) -> bool:
        raise RuntimeError("bug")

    gateway = await start_gateway(f"sqlite:///{tmp_path / 'sub.db'}", can_subscribe=can_subscribe)
    try:
        root = RootStore(gateway.url, stores=[PostStore()], token=AUTH.issue("alice"), backoff=FAST)
        with pytest.raises(Exception) as refused:
            await root.setup_realtime()
        assert getattr(refused.value, "reason", None) == "forbidden_topic"
        await root.teardown_realtime()
        assert await _metric(gateway, "rxstore_authorize_errors_total") >= 1
    finally:
        await gateway.stop()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path / 'exp.db'}")
    yield gateway
    await gateway.stop()


def _short_token(user: str, seconds: float) -> str:
    """A token whose ``exp`` is ``seconds`` from now (``exp`` is whole seconds: at least ``seconds - 1``)."""
    return AUTH.issue(user, ttl=seconds)


async def test_an_expired_token_ends_the_session_and_a_fixed_token_stays_out(
    gateway: RealtimeGateway,
) -> None:
    posts = PostStore()
    closing: list[Any] = []
    root = RootStore(gateway.url, stores=[posts], token=_short_token("alice", 2), backoff=FAST)
    root.events.subscribe(lambda e: closing.append(e.data) if e.name == CLOSING else None)
    async with root:
        await wait_for(lambda: posts.sync.state.value == "live")
        await _insert(gateway, [("p1", "before", "alice")])
        await wait_for(lambda: "p1" in posts.value)
        await wait_for(
            lambda: root.connection_state.status is ConnectionStatus.DISCONNECTED,
            timeout=6,
            what="session end",
        )
        assert root.connection_state.reason == "token_expired"
        await _insert(gateway, [("p2", "after expiry", "alice")])
        await asyncio.sleep(0)  # nothing to wait for: the row must never come
        with pytest.raises(Exception):  # noqa: B017 - not connected, refused: anything but applied
            await root.mutate("save_post", {"id": "p3", "title": "after expiry"}, timeout=1.0)
    assert "p2" not in posts.value
    assert await gateway.log.fetch("SELECT id FROM posts WHERE id = 'p3'") == []
    assert await _metric(gateway, "rxstore_sessions_expired_total") == 1


async def test_an_expired_session_refuses_events_sent_after_exp(gateway: RealtimeGateway) -> None:
    """Between ``exp`` and the end of the session, nothing the client sends is applied."""
    import socketio

    client = socketio.AsyncClient()
    acks: list[Any] = []
    token = _short_token("alice", 2)
    exp = AUTH.verify(token).claims["exp"]
    await client.connect(gateway.url, auth={"token": token}, transports=["websocket"])
    try:
        sid = next(iter(gateway._clients))
        expiry = gateway._clients[sid].expiry  # private: no public handle on a session's timer
        assert expiry is not None
        expiry.cancel()  # hold the session open past exp, as a late timer would
        await wait_for(lambda: time.time() >= exp, 10, "the token's exp passed", interval=0.05)
        acks.append(await client.call("rxstore:mutate", {"id": "m1", "name": "save_post", "args": {}}))
    finally:
        await client.disconnect()
    assert acks[0]["ok"] is False and acks[0]["error"] == "token_expired"


async def test_a_token_provider_resumes_after_expiry_without_loss_or_snapshot(
    gateway: RealtimeGateway,
) -> None:
    issued: list[float] = []

    async def provider() -> str:
        issued.append(time.time())
        return _short_token("alice", 2)

    posts = PostStore()
    root = RootStore(gateway.url, stores=[posts], token=provider, backoff=FAST)
    counter = SeqCounter(root)
    async with root:
        await wait_for(lambda: posts.sync.state.value == "live")
        deadline = time.time() + 5.5  # at least two expiries
        written = 0
        while time.time() < deadline:
            await _insert(gateway, [(f"p{written}", "t", "alice")])
            written += 1
            await asyncio.sleep(0.02)
        await wait_for(lambda: len(posts.value) == written, what="every row")
        assert len(issued) >= 3, "expected reconnections with fresh tokens"
        assert root.metrics.reconnects >= 2
    assert sorted(counter.seen) == counter.seen, "out of order"
    assert len(set(counter.seen)) == len(counter.seen) == written, "a change lost or delivered twice"
    assert await _metric(gateway, "rxstore_snapshots_total") == 1, "a reconnect must resume, not re-snapshot"
    assert await _metric(gateway, "rxstore_sessions_expired_total") >= 2
