"""The websocket drivers of the gateway's guard: what is refused before Engine.IO reads a frame.

python-engineio builds one websocket driver per client (aiohttp or ASGI);
:func:`websocket_class` and :func:`asgi_websocket_class` make the ones the
gateway's :class:`~rxstore.gateway.access.guard.GuardedServer` installs for its
own server: a text frame that is no Engine.IO packet, and a frame over
:func:`websocket_limit`, are refused (counted, reported) and end the
connection. They override the drivers' public ``wait`` (and the ASGI one's
``__call__``) of python-engineio 4.15.1 and read the aiohttp driver's
response through :mod:`~rxstore.gateway.access.engineio_seam`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, WSMsgType

from rxstore.gateway.access.bad_input import WireGuard
from rxstore.gateway.access.engineio_seam import websocket_response
from rxstore.gateway.access.packets import utf8_size

__all__ = ["asgi_websocket_class", "peer", "websocket_class", "websocket_limit"]

ENGINEIO_TYPES = frozenset("0123456")
"""Engine.IO packet types (OPEN ... NOOP): the first character of every text frame."""


def websocket_limit(max_frame_bytes: int) -> int:
    """Largest websocket message read at all: ``max_frame_bytes`` plus a quarter (at least 16 KiB).

    A frame between the two is read so that the gateway can answer it
    (``invalid_payload``); a bigger one closes the connection (close code 1009)
    without being buffered. Each connection holds at most one such message.

    Example:
        >>> websocket_limit(1 << 20)
        1310720
    """
    return max_frame_bytes + max(max_frame_bytes // 4, 16 << 10)


def peer(environ: Any) -> str:
    """The client's ``host:port`` in a connection's environ (ASGI or aiohttp), or its best guess."""
    scope = environ.get("asgi.scope") if isinstance(environ, dict) else None
    client = scope.get("client") if isinstance(scope, dict) else None
    if isinstance(client, list | tuple) and len(client) >= 2:
        return f"{client[0]}:{client[1]}"
    request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
    transport = getattr(request, "transport", None)
    address = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(getattr(request, "remote", None) or "unknown")


def websocket_class(guard: WireGuard, base: type[Any]) -> type[Any]:
    """``base`` (python-engineio 4.15.1's aiohttp websocket), refusing text frames not Engine.IO packets."""

    class _GuardedWebSocket(base):  # type: ignore[misc]
        async def wait(self) -> Any:
            msg = await websocket_response(self).receive()
            data = msg.data
            if type(data) is str:
                if not data or data[0] not in ENGINEIO_TYPES:
                    guard.refused(peer(self.environ), "malformed", "not an Engine.IO packet")
                    raise OSError("not an Engine.IO packet")
                return data
            if type(data) is bytes:
                return data
            if msg.type is WSMsgType.ERROR and getattr(data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                guard.refused(
                    peer(self.environ), "oversize_closed", f"a frame over the websocket limit: {data}"
                )
            raise OSError()  # closed (engine.io ends the connection)

    return _GuardedWebSocket


def asgi_websocket_class(guard: WireGuard, base: type[Any]) -> type[Any]:
    """``base`` (python-engineio 4.15.1's ASGI websocket), refusing what the aiohttp one refuses.

    The ASGI server reads and buffers a whole message first (uvicorn: up to its
    ``ws_max_size``, 16 MiB by default); a message over
    :func:`websocket_limit` is then refused like on aiohttp: counted as
    ``oversize_closed`` and the websocket closed with code 1009.
    """
    limit = websocket_limit(guard.max_frame_bytes)

    class _GuardedASGIWebSocket(base):  # type: ignore[misc]
        async def __call__(self, environ: Any) -> Any:
            self.environ = environ
            return await super().__call__(environ)

        async def wait(self) -> Any:
            event = await self.asgi_receive()
            if event["type"] != "websocket.receive":
                raise OSError()  # closed (engine.io ends the connection)
            data = event.get("text")
            if data is not None:
                if not data or data[0] not in ENGINEIO_TYPES:
                    guard.refused(peer(self.environ), "malformed", "not an Engine.IO packet")
                    raise OSError("not an Engine.IO packet")
                size = utf8_size(data, limit)
            else:
                data = event.get("bytes")
                if data is None:
                    raise OSError()
                size = len(data)
            if size > limit:
                guard.refused(peer(self.environ), "oversize_closed", f"a frame of {size} bytes, over {limit}")
                await self.asgi_send({"type": "websocket.close", "code": WSCloseCode.MESSAGE_TOO_BIG})
                raise OSError()
            return data

    return _GuardedASGIWebSocket
