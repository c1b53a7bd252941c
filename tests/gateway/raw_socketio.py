"""Socket.IO over one raw aiohttp websocket: for tests that control when a client reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp


async def read_events(
    ws: aiohttp.ClientWebSocketResponse,
    on_event: Callable[[str, Any], None],
    gate: asyncio.Event | None = None,
) -> None:
    """Answer engine.io pings and hand each Socket.IO event to ``on_event(name, payload)``.

    Returns when the socket closes. ``gate``: read only while it is set (a client that stops reading).
    """
    while True:
        if gate is not None:
            await gate.wait()
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return
        data = msg.data
        if data == "2":
            await ws.send_str("3")
        elif data.startswith("42"):
            name, payload = json.loads(data[2:])
            on_event(name, payload)
