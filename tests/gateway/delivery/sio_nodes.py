"""Python-socketio nodes on 127.0.0.1 for the client-manager tests: a server, one client in a room."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import attrs
import socketio
from aiohttp import web

from tests.services import free_port
from tests.waiting import wait_for

__all__ = ["ROOM", "Node", "Recorder", "node"]

ROOM = "posts"


@attrs.define
class Node:
    """A python-socketio server on 127.0.0.1 with one client in :data:`ROOM`."""

    sio: socketio.AsyncServer
    client: socketio.AsyncClient
    received: list[tuple[str, Any]]


@contextlib.asynccontextmanager
async def node(manager: Any) -> AsyncIterator[Node]:
    """A python-socketio server with ``manager`` as its client manager, and its client in the room."""
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        await sio.enter_room(sid, ROOM)

    @sio.event
    async def ack_me(sid: str, data: Any) -> Any:
        return data

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = socketio.AsyncClient(reconnection=False)
    received: list[tuple[str, Any]] = []
    client.on("*", lambda event, data=None: received.append((event, data)))
    try:
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        await wait_for(lambda: bool(sio.manager.rooms.get("/", {}).get(ROOM)), 5, "the client in the room")
        yield Node(sio, client, received)
    finally:
        await client.disconnect()
        await runner.cleanup()


class Recorder:
    """A gateway delivery stand-in: records what it is handed, takes it when ``take`` says so."""

    def __init__(self, take: bool) -> None:
        self.take = take
        self.handed: list[tuple[str, Any, str, Any]] = []

    def __call__(self, event: str, data: Any, room: str, skip_sid: Any) -> bool:
        self.handed.append((event, data, room, skip_sid))
        return self.take
