"""Serving the gateway as an ASGI app (uvicorn, Starlette, FastAPI).

:meth:`RealtimeGateway.asgi_app() <rxstore.gateway.server.RealtimeGateway.asgi_app>`
returns a :class:`GatewayASGIApp`: Socket.IO on its path, ``/healthz`` and
``/metrics``, everything else handed to the application it wraps (Starlette,
FastAPI, any ASGI app). Its lifespan opens the gateway at startup and closes it
at shutdown, around the wrapped application's own lifespan::

    server ── lifespan.startup ──► gateway.open() ──► app's startup ──► serving
    server ── lifespan.shutdown ─► app's shutdown ──► gateway.close() ──► done

Mounted under a prefix (``Mount("/realtime", gateway.asgi_app())``) its paths
are relative to the mount (the ASGI ``root_path``); such a mount gets no
lifespan of its own: pass ``lifespan=gateway.lifespan`` to the outer app.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import orjson

__all__ = ["ASGIApp", "GatewayASGIApp", "Receive", "Scope", "Send", "Served"]

log = logging.getLogger("rxstore.gateway")

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""An ASGI ``receive`` callable."""
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
"""An ASGI ``send`` callable."""
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI application."""


class Served(Protocol):
    """What a :class:`GatewayASGIApp` needs of the gateway it serves: a RealtimeGateway has it."""

    sio: Any
    """The gateway's Socket.IO server (a ``socketio.AsyncServer``, ``async_mode="asgi"``)."""

    async def open(self) -> None:
        """Open the gateway (at the lifespan's startup)."""

    async def close(self) -> None:
        """Close the gateway (at the lifespan's shutdown)."""

    def health_report(self) -> tuple[int, dict[str, Any]]:
        """What ``/healthz`` answers: its HTTP status and body."""

    def metrics_report(self) -> tuple[bytes, str]:
        """What ``/metrics`` answers: the Prometheus text and its content type."""


def route_path(scope: Scope) -> str:
    """The request path below the app's mount point (``path`` less ``root_path``, as Starlette does).

    Example:
        >>> route_path({"path": "/realtime/socket.io/", "root_path": "/realtime"})
        '/socket.io/'
        >>> route_path({"path": "/healthz", "root_path": ""})
        '/healthz'
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


class GatewayASGIApp:
    """An ASGI application serving a gateway, and another application beside it.

    Args:
        gateway: A gateway built with ``async_mode="asgi"`` (see :class:`Served`).
        other: The application that gets every other request and the lifespan
            events (the gateway opens before its startup and closes after its
            shutdown); ``None``: other requests are answered 404.
        socketio_path: Path of the Socket.IO endpoint (clients:
            ``SocketIOTransport(socketio_path=...)``, with the mount prefix).
        healthz: Path of the health check (``None``: not served).
        metrics: Path of the Prometheus metrics (``None``: not served).
    """

    def __init__(
        self,
        gateway: Served,
        other: ASGIApp | None = None,
        *,
        socketio_path: str = "socket.io",
        healthz: str | None = "/healthz",
        metrics: str | None = "/metrics",
    ) -> None:
        self.gateway = gateway
        self.other = other
        self.socketio_path = "/" + socketio_path.strip("/") + "/"
        self.healthz = healthz
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (or the lifespan)."""
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        path = route_path(scope)
        if kind in ("http", "websocket") and (path.rstrip("/") + "/").startswith(self.socketio_path):
            await self.gateway.sio.handle_request(scope, receive, send)
        elif kind == "http" and path in (self.healthz, self.metrics):
            await self._serve_report(scope, send, path == self.healthz)
        elif self.other is not None:
            await self.other(scope, receive, send)
        elif kind == "http":
            await _respond(send, 404, b"text/plain; charset=utf-8", b"Not Found")
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _serve_report(self, scope: Scope, send: Send, health: bool) -> None:
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _respond(send, 405, b"text/plain; charset=utf-8", b"Method Not Allowed")
            return
        if health:
            status, report = self.gateway.health_report()
            body, content_type = orjson.dumps(report), b"application/json"
        else:
            status, (body, text_type) = 200, self.gateway.metrics_report()
            content_type = text_type.encode()
        await _respond(send, status, content_type, body, head=scope.get("method") == "HEAD")

    # -- lifespan ----------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        startup = await receive()
        if startup["type"] != "lifespan.startup":
            return
        try:
            await self.gateway.open()
        except Exception as exc:
            log.exception("[RealtimeGateway] could not open")
            await self._closed("lifespan.startup.failed")
            await send({"type": "lifespan.startup.failed", "message": f"the rxstore gateway: {exc!r}"})
            return
        if self.other is not None and await self._other_lifespan(scope, startup, receive, send):
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send(await self._closed("lifespan.shutdown.complete"))

    async def _other_lifespan(
        self, scope: Scope, startup: MutableMapping[str, Any], receive: Receive, send: Send
    ) -> bool:
        """Run the wrapped app's lifespan around the open gateway; False if it has none."""
        pending = [startup]
        started = closed = False

        async def other_receive() -> MutableMapping[str, Any]:
            return pending.pop() if pending else await receive()

        async def other_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started, closed
            kind = message["type"]
            started = started or kind.startswith("lifespan.startup.")
            if kind == "lifespan.startup.failed" or kind.startswith("lifespan.shutdown."):
                closed = True
                if kind == "lifespan.shutdown.complete":
                    message = await self._closed(kind)
                else:
                    await self._closed(kind)
            await send(message)

        assert self.other is not None
        try:
            await self.other(scope, other_receive, other_send)
        except Exception:
            if not started:  # an app without lifespan support raises (ASGI spec): the gateway's own
                log.debug("[RealtimeGateway] the wrapped app has no lifespan", exc_info=True)
                return False
            if not closed:
                await self._closed("lifespan.shutdown.failed")
            raise
        if started and not closed:
            await self._closed("lifespan.shutdown.complete")
        return started

    async def _closed(self, kind: str) -> MutableMapping[str, Any]:
        """Close the gateway; the lifespan message to send: ``kind``, or a failure saying why."""
        try:
            await self.gateway.close()
        except Exception as exc:
            log.exception("[RealtimeGateway] could not close")
            return {"type": "lifespan.shutdown.failed", "message": f"the rxstore gateway: {exc!r}"}
        return {"type": kind}


async def _respond(send: Send, status: int, content_type: bytes, body: bytes, *, head: bool = False) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
