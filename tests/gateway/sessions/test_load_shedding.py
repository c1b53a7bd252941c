"""Load shedding: an overloaded gateway refuses new connections with ``unavailable`` + ``retry_after``.

Overloaded here means ``max_pending_syncs`` clients are being brought up to
date (see :mod:`tests.gateway.overload`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rxstore import Backoff, ConnectError, ConnectionRefused, RootStore
from rxstore.client.transport import SocketIOTransport
from rxstore.gateway.server import RealtimeGateway
from tests.faults.harness import StalledClient
from tests.gateway.harness import AUTH, PostStore
from tests.gateway.overload import RETRY_AFTER, ROWS, overloaded_gateway
from tests.waiting import wait_for


@pytest.fixture
async def overloaded(tmp_path: Path) -> AsyncIterator[tuple[RealtimeGateway, StalledClient]]:
    """A gateway with ``max_pending_syncs=1`` and one client stuck in its snapshot."""
    async with overloaded_gateway(tmp_path) as pair:
        yield pair


def _refused(gateway: RealtimeGateway, reason: str) -> float:
    value = gateway.metrics.registry.get_sample_value("rxstore_refused_total", {"reason": reason})
    return value or 0.0


class TimedTransport(SocketIOTransport):
    """The Socket.IO transport, noting when each connect attempt started and ended, and how."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[tuple[float, float, ConnectionRefused | None]] = []

    async def connect(self, url: str, auth: Mapping[str, Any]) -> None:
        started = time.monotonic()
        try:
            await super().connect(url, auth)
        except ConnectionRefused as exc:
            self.attempts.append((started, time.monotonic(), exc))
            raise
        self.attempts.append((started, time.monotonic(), None))


async def test_a_connect_beyond_max_pending_syncs_is_refused_with_unavailable_and_retry_after(
    overloaded: tuple[RealtimeGateway, StalledClient],
) -> None:
    gateway, _ = overloaded
    transport = SocketIOTransport()
    auth = {"token": AUTH.issue("alice"), "topics": ["posts"], "cursor": None}
    with pytest.raises(ConnectionRefused) as refused:
        await transport.connect(gateway.url, auth)
    await transport.disconnect()
    assert refused.value.reason == "unavailable"
    assert refused.value.retry_after == RETRY_AFTER
    assert "max_pending_syncs=1" in str(refused.value)
    assert _refused(gateway, "unavailable") == 1
    assert gateway.metrics.registry.get_sample_value("rxstore_pending_syncs") == 1


async def test_a_root_store_refused_as_overloaded_waits_retry_after_then_connects_and_goes_live(
    overloaded: tuple[RealtimeGateway, StalledClient],
) -> None:
    """Its backoff's maximum (0.1 s) is shorter than retry_after: the gateway's word wins."""
    gateway, stalled = overloaded
    transport = TimedTransport()
    posts = PostStore()
    root = RootStore(
        gateway.url,
        stores=[posts],
        token=AUTH.issue("alice"),
        transport=transport,
        backoff=Backoff(initial=0.05, maximum=0.1),
        connect_timeout=30.0,
    )
    setup = asyncio.create_task(root.setup_realtime())
    try:
        await wait_for(lambda: len(transport.attempts) >= 2, what="two refused attempts")
        stalled.close()  # the overload ends: the next attempt gets in
        await asyncio.wait_for(setup, 20)
        await wait_for(lambda: len(posts.value) == ROWS, timeout=20, what="alice's snapshot")
        assert transport.attempts[-1][2] is None
        refusals = transport.attempts[:-1]
        assert refusals and all(exc is not None and exc.reason == "unavailable" for *_, exc in refusals)
        for (_, refused_at, _), (next_start, _, _) in itertools.pairwise(transport.attempts):
            assert next_start - refused_at >= RETRY_AFTER, f"retried after {next_start - refused_at:.3f} s"
    finally:
        await root.teardown_realtime()
        setup.cancel()


async def test_a_first_connection_whose_timeout_ends_before_retry_after_gives_up_at_once(
    overloaded: tuple[RealtimeGateway, StalledClient],
) -> None:
    """Asked to stay away 1 s with 0.5 s left of connect_timeout: ConnectError now, no second attempt."""
    gateway, _ = overloaded
    transport = TimedTransport()
    root = RootStore(
        gateway.url, stores=[PostStore()], token=AUTH.issue("alice"), transport=transport, connect_timeout=0.5
    )
    with pytest.raises(ConnectError) as failed:
        await root.setup_realtime()
    assert isinstance(failed.value.cause, ConnectionRefused)
    assert failed.value.cause.retry_after == RETRY_AFTER
    assert len(transport.attempts) == 1
    await root.teardown_realtime()
