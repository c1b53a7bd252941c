"""The root store offline: a full outbox refuses at once, an unreachable gateway is given up on.

Both against real sockets on 127.0.0.1: a closed port (nothing listens, every
connect is refused by the kernel) and a real gateway started later on that port.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rxstore import (
    Backoff,
    ConnectionState,
    ConnectionStatus,
    OutboxFull,
    RootStore,
    RxStoreError,
    TransportError,
)
from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, all_posts, create_demo_schema, register_demo_mutations
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, PostStore
from tests.services import CountingTransport, closed_port
from tests.waiting import wait_for

FAST = Backoff(initial=0.02, factor=2.0, maximum=0.1, jitter=0.0)
"""Quick retries: the tests wait for conditions, not for delays."""
AT_ONCE = 2.0
"""Seconds within which a refusal counts as immediate (a queued message would wait far longer)."""


def record(root: RootStore) -> tuple[list[ConnectionState], list[RxStoreError]]:
    states: list[ConnectionState] = []
    errors: list[RxStoreError] = []
    root.connection.subscribe(states.append)
    root.errors.subscribe(errors.append)
    return states, errors


# -- OutboxFull -----------------------------------------------------------------


async def start_gateway_on(directory: Path, port: int) -> RealtimeGateway:
    log = open_change_log(f"sqlite:///{directory}/app.db")
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH)
    register_demo_mutations(gateway)
    await gateway.start(port=port)
    return gateway


async def test_a_full_outbox_refuses_at_once_and_what_it_holds_is_applied_once_after_connecting(
    tmp_path: Path,
) -> None:
    """Offline with ``outbox_limit=3``: 3 mutations wait; a 4th call, emit or mutate raises
    ``OutboxFull`` at once, queues nothing and shows no optimistic row; once a gateway
    comes up, exactly the 3 queued mutations are written, in order."""
    port = closed_port()
    posts = PostStore()
    root = RootStore(
        f"http://127.0.0.1:{port}", stores=[posts], token=AUTH.issue("ann"), outbox_limit=3, backoff=FAST
    )
    states, errors = record(root)
    gateway: RealtimeGateway | None = None
    try:
        await root.setup_realtime(wait=False)
        await wait_for(lambda: states[-1].status is ConnectionStatus.RECONNECTING, what="offline")
        queued = [
            asyncio.ensure_future(root.mutate("save_post", {"id": f"q{i}", "title": f"t{i}"}, timeout=30))
            for i in range(3)
        ]
        await wait_for(lambda: root.metrics.outbox_depth == 3, what="3 mutations queued")

        fourth = root.mutate(
            "save_post", {"id": "q3", "title": "t3"}, optimistic={posts: {"q3": Post(id="q3", title="t3")}}
        )
        with pytest.raises(OutboxFull):
            await asyncio.wait_for(fourth, AT_ONCE)
        assert "q3" not in posts.value and not posts.pending  # the optimistic row was rolled back
        assert [type(e) for e in errors] == [OutboxFull]  # and the refusal reported
        with pytest.raises(OutboxFull):
            await asyncio.wait_for(root.call("rxstore:mutate", {"id": "x", "name": "save_post"}), AT_ONCE)
        with pytest.raises(OutboxFull):
            await asyncio.wait_for(root.emit("post_liked", {"id": "q0"}), AT_ONCE)
        assert root.metrics.outbox_depth == 3 and not any(f.done() for f in queued)

        gateway = await start_gateway_on(tmp_path, port)
        await asyncio.wait_for(asyncio.gather(*queued), 20)
        await wait_for(lambda: len(posts.value) == 3, what="the queued mutations' rows")
        assert root.metrics.outbox_depth == 0
        written = await all_posts(gateway.log)
        assert {key: post.title for key, post in written.items()} == {"q0": "t0", "q1": "t1", "q2": "t2"}
        assert await gateway.log.head() == 3  # one change each: none lost, none doubled, q3 never sent
        assert posts.value.to_dict() == written
    finally:
        await root.teardown_realtime()
        if gateway is not None:
            await gateway.stop()


# -- Backoff.max_attempts on an unreachable gateway ------------------------------


async def test_setup_gives_up_after_max_attempts_on_an_unreachable_gateway() -> None:
    """A closed port and ``max_attempts=3``: exactly 3 connects, then ``setup_realtime()`` raises
    ``TransportError`` (reported once on ``root.errors``) and the link stays disconnected."""
    transport = CountingTransport()
    url = f"http://127.0.0.1:{closed_port()}"
    root = RootStore(
        url,
        transport=transport,
        topics=["posts"],
        backoff=Backoff(initial=0.02, maximum=0.1, jitter=0.0, max_attempts=3),
    )
    states, errors = record(root)
    try:
        with pytest.raises(TransportError) as gave_up:
            await asyncio.wait_for(root.setup_realtime(), 10)
        assert transport.attempts == 3
        assert url in str(gave_up.value)
        assert errors == [gave_up.value]
        assert [s.status for s in states] == [
            ConnectionStatus.IDLE,
            ConnectionStatus.CONNECTING,
            ConnectionStatus.RECONNECTING,  # one state for the two retried attempts
            ConnectionStatus.DISCONNECTED,
        ]
        # Given up for good: no attempt follows (watched for 10 times the longest delay).
        await asyncio.sleep(10 * 0.1)  # the point: an absence (no further attempt) has no event to await
        assert transport.attempts == 3 and states[-1].status is ConnectionStatus.DISCONNECTED
    finally:
        await root.teardown_realtime()  # does not raise after giving up
    assert errors == [gave_up.value]


async def test_without_waiting_the_give_up_shows_on_the_connection_and_errors() -> None:
    """``setup_realtime(wait=False)`` returns at once; giving up is seen on ``root.connection``
    and ``root.errors``, not raised anywhere."""
    transport = CountingTransport()
    root = RootStore(
        f"http://127.0.0.1:{closed_port()}",
        transport=transport,
        topics=["posts"],
        backoff=Backoff(initial=0.02, maximum=0.1, jitter=0.0, max_attempts=2),
    )
    states, errors = record(root)
    try:
        await root.setup_realtime(wait=False)
        await wait_for(lambda: states[-1].status is ConnectionStatus.DISCONNECTED, what="given up")
        assert transport.attempts == 2
        assert len(errors) == 1 and isinstance(errors[0], TransportError)
    finally:
        await root.teardown_realtime()


async def test_without_max_attempts_an_unreachable_gateway_is_retried_until_torn_down() -> None:
    """``max_attempts=None`` (the default): the root keeps retrying with backoff and reports nothing."""
    transport = CountingTransport()
    root = RootStore(f"http://127.0.0.1:{closed_port()}", transport=transport, topics=["posts"], backoff=FAST)
    states, errors = record(root)
    try:
        await root.setup_realtime(wait=False)
        await wait_for(lambda: transport.attempts >= 6, what="six attempts")
        assert states[-1].status is ConnectionStatus.RECONNECTING
        assert not any(isinstance(e, TransportError) for e in errors)
    finally:
        await root.teardown_realtime()
    assert states[-1].status is ConnectionStatus.DISCONNECTED
