"""Serving the gateway: alone, inside an aiohttp app, or as an ASGI app.

:class:`Serving` is the gateway's base class holding ``start``, ``attach``,
``asgi_app``, ``lifespan`` and ``stop``.

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

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Self

import orjson
from aiohttp import web

from rxstore.gateway.api import GatewayUsageError

__all__ = ["ASGIApp", "GatewayASGIApp", "Receive", "Scope", "Send", "Serving"]

log = logging.getLogger("rxstore.gateway")

SHUTDOWN_GRACE = 2.0
"""Seconds a stopping gateway waits for a client's connection before cutting it."""

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""An ASGI ``receive`` callable."""
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
"""An ASGI ``send`` callable."""
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI application."""


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
        gateway: A gateway built with ``async_mode="asgi"``.
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
        gateway: Serving,
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
            status, report = self.gateway._health_report()
            body, content_type = orjson.dumps(report), b"application/json"
        else:
            status, (body, text_type) = 200, self.gateway._metrics_report()
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


class Serving:
    """How a :class:`~rxstore.gateway.server.RealtimeGateway` is served: alone, in an aiohttp app, ASGI.

    A base class of the gateway; the methods it needs from it (``open``,
    ``close``, the reports) are declared here and defined there.
    """

    async_mode: str
    sio: Any
    topics: Mapping[str, Any]
    _runner: web.AppRunner | None
    _site: web.TCPSite | None

    async def open(self) -> None:
        """Defined by the gateway."""
        raise NotImplementedError

    async def close(self) -> None:
        """Defined by the gateway."""
        raise NotImplementedError

    async def _disconnect_all(self) -> None:
        """Defined by the gateway."""
        raise NotImplementedError

    async def _release(self) -> None:
        """Defined by the gateway."""
        raise NotImplementedError

    def _health_report(self) -> tuple[int, dict[str, Any]]:
        """Defined by the gateway."""
        raise NotImplementedError

    def _metrics_report(self) -> tuple[bytes, str]:
        """Defined by the gateway."""
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """:meth:`open` on entry, :meth:`close` on exit, as an ASGI app's lifespan wants it.

        Example:
            ``Starlette(routes=[Mount("/realtime", gateway.asgi_app())], lifespan=gateway.lifespan)``;
            in a lifespan of your own: ``async with gateway.lifespan(): yield``.
        """
        await self.open()
        try:
            yield
        finally:
            await self.close()

    async def start(self, host: str = "127.0.0.1", port: int = 8080, *, reuse_port: bool = False) -> None:
        """Open the gateway (:meth:`open`) and serve it alone on ``host:port``.

        Serves Socket.IO, ``/healthz`` and ``/metrics``. Use ``port=0`` for a
        free port; :attr:`port` tells which. ``reuse_port`` (Linux) lets other
        processes serve the same port (``SO_REUSEPORT``: the kernel spreads
        connections; ``rxstore serve --workers``). To serve it inside your own
        app instead, see :meth:`attach` and :meth:`asgi_app`.
        """
        self._require_mode("aiohttp", "start()")
        await self.open()
        app = web.Application()
        self._add_routes(app, "socket.io", "/healthz", "/metrics")
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port or None)
        await self._site.start()
        log.info("[RealtimeGateway] serving %s on %s", sorted(self.topics), self.url)

    def attach(
        self,
        app: web.Application,
        *,
        socketio_path: str = "socket.io",
        healthz: str | None = "/healthz",
        metrics: str | None = "/metrics",
    ) -> None:
        """Serve the gateway inside an aiohttp app, run by the app's lifecycle.

        Adds the Socket.IO endpoint (``/socket.io/``; clients of another path
        pass ``SocketIOTransport(socketio_path=...)``) and the ``healthz`` and
        ``metrics`` routes (``None``: not added). The app's startup opens the
        gateway, its shutdown disconnects the clients (before aiohttp waits for
        open requests), its cleanup stops tailing and closes the log.

        Raises:
            GatewayUsageError: The gateway was built with ``async_mode="asgi"``.
        """
        self._require_mode("aiohttp", "attach()")
        self._add_routes(app, socketio_path, healthz, metrics)

        async def opened(app: web.Application) -> None:
            await self.open()

        async def disconnected(app: web.Application) -> None:
            await self._disconnect_all()

        async def closed(app: web.Application) -> None:
            await self.close()  # all of it, also when the startup failed half-way

        app.on_startup.append(opened)
        app.on_shutdown.append(disconnected)
        app.on_cleanup.append(closed)

    def asgi_app(
        self,
        other_asgi_app: ASGIApp | None = None,
        *,
        socketio_path: str = "socket.io",
        healthz: str | None = "/healthz",
        metrics: str | None = "/metrics",
    ) -> GatewayASGIApp:
        """An ASGI app serving the gateway, and ``other_asgi_app`` (Starlette, FastAPI, ...) beside it.

        It serves Socket.IO on ``socketio_path``, ``healthz`` and ``metrics``
        (``None``: left to the other app), hands every other request to
        ``other_asgi_app`` (404 without one), and opens the gateway at the
        lifespan's startup (before the other app's) and closes it at its
        shutdown (after the other app's). Mounted under a prefix, it gets no
        lifespan: pass ``lifespan=gateway.lifespan`` to the outer app.

        Raises:
            GatewayUsageError: The gateway was not built with ``async_mode="asgi"``.
        """
        self._require_mode("asgi", "asgi_app()")
        return GatewayASGIApp(
            self, other_asgi_app, socketio_path=socketio_path, healthz=healthz, metrics=metrics
        )

    def _require_mode(self, mode: str, what: str) -> None:
        if self.async_mode != mode:
            raise GatewayUsageError(
                f"{what} needs RealtimeGateway(..., async_mode={mode!r}); "
                f"this gateway was built with async_mode={self.async_mode!r}"
            )

    def _add_routes(
        self, app: web.Application, socketio_path: str, healthz: str | None, metrics: str | None
    ) -> None:
        self.sio.attach(app, socketio_path=socketio_path)
        if healthz is not None:
            app.router.add_get(healthz, self._healthz)
        if metrics is not None:
            app.router.add_get(metrics, self._metrics)

    @property
    def port(self) -> int:
        """The TCP port served (after :meth:`start`)."""
        return int(self._address()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the gateway (after :meth:`start`)."""
        host, port = self._address()[:2]
        return f"http://{host}:{port}"

    def _address(self) -> Any:
        if self._runner is None or not self._runner.addresses:
            raise GatewayUsageError(
                "the gateway serves no port of its own: start() it (an app it is mounted in has its own)"
            )
        return self._runner.addresses[0]

    async def stop(self) -> None:
        """Stop accepting, disconnect every client, stop tailing, close the log and the HTTP server."""
        self._stopping = True
        if self._site is not None:
            await self._site.stop()  # no new TCP connections; reconnecting clients go elsewhere
        await self._disconnect_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        await self._release()

    async def __aenter__(self) -> Self:
        await self.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        status, body = self._health_report()
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics_report()
        return web.Response(body=body, headers={"Content-Type": content_type})


async def _respond(send: Send, status: int, content_type: bytes, body: bytes, *, head: bool = False) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
