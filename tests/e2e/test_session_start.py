"""A session's first frames handled before the transport's connect() returns are kept.

On a busy event loop the gateway's first frames (a snapshot's chunks, ``rxstore:live``) can be
handled before ``connect()`` returns to the root's connection loop. A transport that returns
only once they came (a condition, not a delay) makes that happen every time, against a real
gateway: the store must still end with every row, and live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rxstore import RootStore
from rxstore.client.transport import FrameHandler, LostHandler, SocketIOTransport
from rxstore.gateway import RealtimeGateway, open_change_log
from rxstore.gateway.demo import create_demo_schema
from rxstore.protocol.events import LIVE, SNAPSHOT
from tests.gateway.harness import AUTH, PostStore

pytestmark = pytest.mark.timeout(60)

ROWS = 300


class LateReturn(SocketIOTransport):
    """Returns from connect() only once the frame named ``until`` of the new session was handled."""

    def __init__(self, until: str) -> None:
        super().__init__()
        self.until = until
        self.came = asyncio.Event()

    def bind(self, on_frame: FrameHandler, on_lost: LostHandler) -> None:
        def noting(event: str, data: Any) -> None:
            on_frame(event, data)
            if event == self.until:
                self.came.set()

        super().bind(noting, on_lost)

    async def connect(self, url: str, auth: Mapping[str, Any]) -> None:
        self.came.clear()
        await super().connect(url, auth)
        await asyncio.wait_for(self.came.wait(), 20)


async def serve(tmp_path: Path) -> RealtimeGateway:
    log = open_change_log(f"sqlite:///{tmp_path}/app.db")
    await log.open()
    await create_demo_schema(log)
    await log.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
        "INSERT INTO posts (id, title, body) SELECT 'p' || x, 'post ' || x, hex(randomblob(100)) FROM c",
        ROWS,
    )
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH, frame_bytes=4096)  # many chunks
    await gateway.start(port=0)
    return gateway


@pytest.mark.parametrize("until", [SNAPSHOT, LIVE])
async def test_frames_before_connect_returns_are_kept(tmp_path: Path, until: str) -> None:
    """Returning after the first snapshot chunk: no chunk is dropped (all rows); after
    ``rxstore:live``: the tables stay live, not replaying again."""
    gateway = await serve(tmp_path)
    try:
        posts = PostStore()
        root = RootStore(gateway.url, stores=[posts], token=AUTH.issue("ann"), transport=LateReturn(until))
        async with root:
            await root.live(timeout=20)
            assert len(posts.value.rows) == ROWS
    finally:
        await gateway.stop()
