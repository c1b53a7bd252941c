"""The npm socket.io-client (a browser app's) sees an overloaded gateway's refusal and its retry_after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rxstore.gateway.server import RealtimeGateway
from tests.faults.harness import StalledClient
from tests.gateway.harness import AUTH
from tests.gateway.overload import RETRY_AFTER, overloaded_gateway
from tests.interop.test_node_client import follow
from tests.interop.test_node_client import node as node  # the fixture: node with socket.io-client

pytestmark = pytest.mark.node


@pytest.fixture
async def overloaded(tmp_path: Path) -> AsyncIterator[tuple[RealtimeGateway, StalledClient]]:
    async with overloaded_gateway(tmp_path) as pair:
        yield pair


async def test_node_client_gets_unavailable_with_retry_after_as_connect_error(
    node: str, overloaded: tuple[RealtimeGateway, StalledClient]
) -> None:
    """``err.message == "unavailable"`` and ``err.data == {reason, message, retry_after}``."""
    gateway, _ = overloaded
    async with follow(node, gateway.url, AUTH.issue("alice"), 1) as follower:
        code, report = await follower.result()
    assert code == 2, report
    assert report["refused"] == "unavailable"
    assert report["data"]["reason"] == "unavailable"
    assert report["data"]["retry_after"] == RETRY_AFTER
    assert "max_pending_syncs" in report["data"]["message"]
