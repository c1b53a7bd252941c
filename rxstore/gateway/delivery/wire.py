"""The direct path: a shared frame's websocket bytes, built once, written straight to each client.

A live frame shared by many clients is turned once into the bytes of its
unmasked server-to-client websocket frames (RFC 6455, 5.2): engine.io MESSAGE
``4`` + the socket.io packet text in a text frame, a msgpack packet in a
binary frame, exactly as python-engineio sends them through aiohttp without
compression. :class:`~rxstore.gateway.delivery.queues.Delivery` then writes those
bytes with one ``transport.write`` per client, skipping the client's writer
task, python-engineio's queue and writer task and aiohttp's frame writer, but
only through a :class:`Link` and only while :meth:`Link.idle` holds: a
websocket (not long-polling) that negotiated no permessage-deflate, open,
with nothing python-engineio still has to write for it. Any other client, and
any frame while something is pending, takes the ordinary path, so a client's
frames arrive in the order the gateway made them.

aiohttp (3.9+) writes an uncompressed frame with synchronous ``transport.write``
calls and no await between them, so a direct write never lands inside one of
its frames.

The python-engineio 4.15.1 internals this relies on go through
:mod:`~rxstore.gateway.access.engineio_seam`: the server's websocket driver
(replaced per server, :func:`~rxstore.gateway.access.engineio_seam.replace_websocket_driver`),
the aiohttp driver's ``WebSocketResponse``
(:func:`~rxstore.gateway.access.engineio_seam.websocket_response`) and what a
socket's writer still holds
(:func:`~rxstore.gateway.access.engineio_seam.packets_waiting`). Of its public
names: the aiohttp driver's ``handler``, ``environ`` and ``send``, and
``AsyncSocket.upgraded`` / ``upgrading`` / ``closing`` / ``closed``.
``tests/gateway/delivery/test_wire.py`` fails when they change.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from typing import Any

import attrs

from rxstore.gateway.access.engineio_seam import (
    packets_waiting,
    replace_websocket_driver,
    websocket_response,
)

__all__ = ["DIRECT_BUFFER", "Link", "Links", "websocket_bytes"]

DIRECT_BUFFER = 64 << 10
"""A client whose TCP write buffer holds more than this gets its frames through its queue."""

_TEXT, _BINARY = 0x1, 0x2
_LEN2 = struct.Struct("!BBH").pack
_LEN8 = struct.Struct("!BBQ").pack


def websocket_frame(payload: bytes, opcode: int) -> bytes:
    """One unmasked, final websocket frame of ``payload`` (server to client)."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _LEN2(first, 126, size) + payload
    return _LEN8(first, 127, size) + payload


def websocket_bytes(packets: Iterable[Any]) -> bytes:
    """The websocket frames python-engineio would send for these engine.io packets, concatenated."""
    frames = []
    for packet in packets:
        encoded = packet.encode()
        if isinstance(encoded, str):
            frames.append(websocket_frame(encoded.encode(), _TEXT))
        else:
            frames.append(websocket_frame(bytes(encoded), _BINARY))
    return b"".join(frames)


def _tracked(base: type[Any], links: dict[str, Any]) -> type[Any]:
    """``base`` (python-engineio's aiohttp websocket driver), registering itself and counting its sends."""

    class _TrackedWebSocket(base):  # type: ignore[misc]
        def __init__(self, handler: Any, server: Any) -> None:
            super().__init__(handler, server)
            self.sending = 0
            """Frames python-engineio is handing to aiohttp right now."""
            self.eio_sid: str | None = getattr(getattr(handler, "__self__", None), "sid", None)

        async def __call__(self, environ: Any) -> Any:
            sid = self.eio_sid
            if sid is not None:
                links[sid] = self
            try:
                return await super().__call__(environ)
            finally:
                if sid is not None and links.get(sid) is self:
                    del links[sid]

        async def send(self, message: Any) -> None:
            self.sending += 1
            try:
                await super().send(message)
            finally:
                self.sending -= 1

    return _TrackedWebSocket


@attrs.define(eq=False)
class Link:
    """A client's websocket, for direct writes (see the module's docstring).

    Attributes:
        socket: Its python-engineio socket.
        ws: Its python-engineio websocket driver (tracked).
        response: Its aiohttp ``WebSocketResponse``.
        transport: Its TCP transport.
    """

    socket: Any
    ws: Any
    response: Any
    transport: asyncio.WriteTransport

    def idle(self) -> bool:
        """True while the websocket is open and python-engineio has nothing left to write to it."""
        socket = self.socket
        return not (
            self.ws.sending
            or packets_waiting(socket)
            or socket.closing
            or socket.closed
            or self.response.closed
            or self.transport.is_closing()
        )


class Links:
    """The websockets of one python-engineio server, by engine.io sid (aiohttp mode only).

    Args:
        eio: The python-engineio server; its websocket driver is wrapped, for it alone.
    """

    def __init__(self, eio: Any) -> None:
        self.eio = eio
        self.by_sid: dict[str, Any] = {}
        self.enabled = eio.async_mode == "aiohttp"
        if self.enabled:
            replace_websocket_driver(eio, lambda base: _tracked(base, self.by_sid))

    def link(self, eio_sid: str) -> Link | bool | None:
        """The client's :class:`Link`; ``False`` if it can never have one, ``None`` if not yet."""
        ws = self.by_sid.get(eio_sid)
        socket = self.eio.sockets.get(eio_sid)
        if ws is None or socket is None or not socket.upgraded or socket.upgrading:
            return False if not self.enabled else None  # long-polling (for now), or gone
        response = websocket_response(ws)
        if response is None or not response.prepared:
            return None
        if response.compress:
            return False  # permessage-deflate: aiohttp compresses each frame with this client's context
        request = getattr(ws, "environ", {}).get("aiohttp.request")
        transport = getattr(request, "transport", None)
        if transport is None:
            return None
        return Link(socket, ws, response, transport)
