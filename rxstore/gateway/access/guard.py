"""Hostile input at the wire: what the gateway refuses before a handler sees it.

python-socketio and python-engineio decode every frame a client sends. Left to
themselves they keep binary attachments a packet announces (any number, any
size), keep a socket that never joins the namespace for as long as it answers
pings, drop a frame they cannot decode without an acknowledgement, and log a
traceback for each. :class:`GuardedServer` puts the gateway's rules in front:

* **Frames** that are not Engine.IO / Socket.IO packets, binary frames and
  packets announcing binary attachments (the rxstore protocol has none) are
  counted (``rxstore_bad_frames{reason}``), reported in one rate-limited
  warning line, and the socket is closed (after an ``invalid_payload``
  acknowledgement when the packet asked for one).
* **Payloads** that are not strict JSON (``Infinity``, ``NaN``, ``1e999``),
  hold an integer of over 100 digits, or make a frame bigger than
  ``max_frame_bytes`` reach the gateway as a :class:`BadPayload` (decoded by
  the packet classes of :mod:`rxstore.gateway.access.packets`): an event is
  answered ``invalid_payload`` (an acknowledgement when it asked for one), a
  CONNECT is refused with ``bad_request``; the connection is kept.
* **Handshakes**: an Engine.IO connection that has not joined the namespace
  ``handshake_timeout`` seconds after it opened (or after it left) is closed
  (``rxstore_handshake_timeouts``).
* **ASGI** (``async_mode="asgi"``): the same frames are refused and counted;
  the ASGI server reads a whole websocket message first (uvicorn: up to its
  ``ws_max_size``) and there is no TCP connection to cut, so a refused
  client that does not take its close frame is ended by the server's
  websocket ping timeout.
* **Logs**: python-engineio logs a traceback for a long-polling request whose
  body is not an Engine.IO payload; the gateway's Engine.IO logger counts it
  and closes that session as above instead. Other errors (the gateway's own
  bugs) are logged with their traceback as before, at ERROR and above only,
  as python-engineio does by default.

It touches no private name of python-socketio or python-engineio: the
server's Engine.IO handlers are hooks of
:class:`~rxstore.gateway.access.socketio_seam.EngineIOHooks`; the websocket
drivers are replaced, read and sessions closed through
:mod:`~rxstore.gateway.access.engineio_seam`, which also tells a bad
long-polling body by python-engineio's traceback. It overrides the drivers'
public ``wait`` (and the ASGI one's ``__call__``) of python-engineio 4.15.1;
``tests/gateway/test_library_pins.py`` fails when those change,
``tests/gateway/access/test_guard.py`` when their behaviour does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import OrderedDict
from typing import Any

import attrs
import socketio
from aiohttp import WSCloseCode, WSMsgType
from prometheus_client import Counter

from rxstore.gateway.access.engineio_seam import (
    bad_post_session,
    close_after_queued,
    replace_websocket_driver,
    websocket_response,
)
from rxstore.gateway.access.packets import (
    INVALID_EVENT,
    BadFrame,
    BadPayload,
    json_packet_class,
    msgpack_packet_class,
    utf8_size,
)
from rxstore.gateway.access.socketio_seam import EngineIOHooks

__all__ = [
    "INVALID_EVENT",
    "BadFrame",
    "BadInputLog",
    "BadPayload",
    "GuardedServer",
    "WireGuard",
    "json_packet_class",
    "msgpack_packet_class",
    "websocket_limit",
]

log = logging.getLogger("rxstore.gateway")

_ENGINEIO_TYPES = frozenset("0123456")
"""Engine.IO packet types (OPEN ... NOOP): the first character of every text frame."""
_CLOSE_GRACE = 2.0
"""Seconds a refused client has to take its close frame before its TCP connection is cut."""
_REFUSED = "rxstore.refused"
"""Key set in a refused socket's environ: its later frames are dropped unread."""


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


@attrs.define(eq=False)
class BadInputLog:
    """Warnings about bad clients: at most one line per client, at most ``per_minute`` lines in all.

    Lines held back are counted (``rxstore_bad_input_log_suppressed``) and the
    next line says how many there were.

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> logged = BadInputLog(per_minute=1, suppressed=Counter("s", "s", registry=CollectorRegistry()))
        >>> logged.warn("10.0.0.1:5000", "not a Socket.IO packet"), logged.warn("10.0.0.2:5000", "x")
        (True, False)
        >>> logged.warn("10.0.0.1:5000", "again")
        False
    """

    per_minute: int
    suppressed: Counter
    _seen: OrderedDict[str, None] = attrs.field(factory=OrderedDict, init=False)
    _tokens: float = attrs.field(init=False)
    _last: float = attrs.field(factory=time.monotonic, init=False)
    _held: int = attrs.field(default=0, init=False)

    @_tokens.default
    def _full(self) -> float:
        return float(self.per_minute)

    def warn(self, client: str, message: str) -> bool:
        """Log ``message`` about ``client`` unless it was reported before or the rate is spent."""
        if client in self._seen:
            return False
        self._seen[client] = None
        if len(self._seen) > 10_000:  # remember the latest clients only: bounded
            self._seen.popitem(last=False)
        now = time.monotonic()
        rate = self.per_minute / 60.0
        self._tokens = min(float(self.per_minute), self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < 1.0:
            self._held += 1
            self.suppressed.inc()
            return False
        self._tokens -= 1.0
        held, self._held = self._held, 0
        suffix = f" ({held} more bad clients not logged)" if held else ""
        log.warning("[RealtimeGateway] bad client %s: %s; closed%s", client, message, suffix)
        return True


@attrs.define(eq=False)
class WireGuard:
    """The gateway's limits at the wire, and what counts and reports their breaches.

    Attributes:
        max_frame_bytes: Largest frame whose payload is decoded.
        handshake_timeout: Seconds an Engine.IO connection may stay without
            joining the namespace (``None``: forever).
        bad_frames: Counter of refused frames, by reason.
        handshake_timeouts: Counter of connections closed for not joining.
        report: The rate-limited warning log.
    """

    max_frame_bytes: int
    handshake_timeout: float | None
    bad_frames: Counter
    handshake_timeouts: Counter
    report: BadInputLog

    def refused(self, client: str, reason: str, message: str) -> None:
        """Count a refused frame and report its client (at most once, rate-limited)."""
        self.bad_frames.labels(reason).inc()
        self.report.warn(client, message)


def _peer(environ: Any) -> str:
    scope = environ.get("asgi.scope") if isinstance(environ, dict) else None
    client = scope.get("client") if isinstance(scope, dict) else None
    if isinstance(client, list | tuple) and len(client) >= 2:
        return f"{client[0]}:{client[1]}"
    request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
    transport = getattr(request, "transport", None)
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(getattr(request, "remote", None) or "unknown")


def _websocket_class(guard: WireGuard, base: type[Any]) -> type[Any]:
    """``base`` (python-engineio 4.15.1's aiohttp websocket), refusing text frames not Engine.IO packets."""

    class _GuardedWebSocket(base):  # type: ignore[misc]
        async def wait(self) -> Any:
            msg = await websocket_response(self).receive()
            data = msg.data
            if type(data) is str:
                if not data or data[0] not in _ENGINEIO_TYPES:
                    guard.refused(_peer(self.environ), "malformed", "not an Engine.IO packet")
                    raise OSError("not an Engine.IO packet")
                return data
            if type(data) is bytes:
                return data
            if msg.type is WSMsgType.ERROR and getattr(data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                guard.refused(
                    _peer(self.environ), "oversize_closed", f"a frame over the websocket limit: {data}"
                )
            raise OSError()  # closed (engine.io ends the connection)

    return _GuardedWebSocket


def _asgi_websocket_class(guard: WireGuard, base: type[Any]) -> type[Any]:
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
                if not data or data[0] not in _ENGINEIO_TYPES:
                    guard.refused(_peer(self.environ), "malformed", "not an Engine.IO packet")
                    raise OSError("not an Engine.IO packet")
                size = utf8_size(data, limit)
            else:
                data = event.get("bytes")
                if data is None:
                    raise OSError()
                size = len(data)
            if size > limit:
                guard.refused(
                    _peer(self.environ), "oversize_closed", f"a frame of {size} bytes, over {limit}"
                )
                await self.asgi_send({"type": "websocket.close", "code": WSCloseCode.MESSAGE_TOO_BIG})
                raise OSError()
            return data

    return _GuardedASGIWebSocket


class GuardedServer(EngineIOHooks):
    """python-socketio's server with the gateway's rules at the wire (see the module's docstring).

    Args:
        guard: The limits and their counters.
        **options: For :class:`socketio.AsyncServer` (``serializer`` should be a
            class made by :func:`json_packet_class` or :func:`msgpack_packet_class`).
    """

    def __init__(self, *, guard: WireGuard, **options: Any) -> None:
        engineio_log = _EngineIOLog()
        super().__init__(engineio_logger=engineio_log, **options)
        engineio_log.server = self
        self.guard = guard
        self._handshakes: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        guarded = _asgi_websocket_class if self.eio.async_mode == "asgi" else _websocket_class
        replace_websocket_driver(self.eio, lambda base: guarded(guard, base))

    # EngineIOHooks calls these three for every Engine.IO connection, message and disconnection.

    async def handle_engineio_connect(self, eio_sid: str, environ: Any) -> Any:
        """python-socketio's handling, then the handshake timer starts."""
        result = await super().handle_engineio_connect(eio_sid, environ)
        self._start_handshake_timer(eio_sid)
        return result

    async def handle_engineio_message(self, eio_sid: str, data: Any) -> None:
        """Nothing of a refused socket is decoded; a frame that is no client packet refuses it."""
        environ = self.environ.get(eio_sid)
        if environ is None or environ.get(_REFUSED):
            return  # gone, or refused and being closed: not even decoded
        try:
            if not data:  # python-socketio would not even decode it: an EVENT without data
                raise BadFrame("malformed", "an empty Socket.IO packet")
            await super().handle_engineio_message(eio_sid, data)
        except BadFrame as exc:
            await self._refuse(eio_sid, environ, exc)
            return
        if eio_sid not in self._handshakes and self.manager.sid_from_eio_sid(eio_sid, "/") is None:
            self._start_handshake_timer(eio_sid)  # it left the namespace but kept the connection

    async def handle_engineio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        """The handshake timer stops, then python-socketio's handling."""
        timer = self._handshakes.pop(eio_sid, None)
        if timer is not None:
            timer.cancel()
        await super().handle_engineio_disconnect(eio_sid, reason)

    # -- refusing --------------------------------------------------------------

    async def _refuse(self, eio_sid: str, environ: dict[str, Any], exc: BadFrame) -> None:
        environ[_REFUSED] = True
        self.guard.refused(_peer(environ), exc.reason, str(exc))
        namespace = exc.namespace or "/"
        if exc.ack is not None and self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
            answer = {"ok": False, "error": "invalid_payload", "message": str(exc)}
            ack = self.packet_class(socketio.packet.ACK, namespace=namespace, id=exc.ack, data=[answer])
            encoded = ack.encode()
            for part in encoded if isinstance(encoded, list) else [encoded]:
                await self.eio.send(eio_sid, part)
        await self.close_socket(eio_sid)

    async def close_socket(self, eio_sid: str) -> None:
        """Close an Engine.IO connection: what is queued for it goes first, then the websocket closes.

        A client that does not take its close frame within a grace period
        has its TCP connection cut.
        """
        environ = self.environ.get(eio_sid) or {}
        transport = getattr(environ.get("aiohttp.request"), "transport", None)
        if transport is not None:
            asyncio.get_running_loop().call_later(_CLOSE_GRACE, _abort, transport)
        await close_after_queued(self.eio, eio_sid)

    def bad_polling_request(self, eio_sid: str) -> None:
        """A long-polling request whose body is no Engine.IO payload: count, report, close the session."""
        environ = self.environ.get(eio_sid)
        if environ is None or environ.get(_REFUSED):
            return
        environ[_REFUSED] = True
        self.guard.refused(_peer(environ), "malformed", "not an Engine.IO payload (long-polling)")
        self._close_later(eio_sid)

    def _close_later(self, eio_sid: str) -> None:
        task = asyncio.ensure_future(self.close_socket(eio_sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- the handshake timer ---------------------------------------------------

    def _start_handshake_timer(self, eio_sid: str) -> None:
        timeout = self.guard.handshake_timeout
        if timeout is None:
            return
        loop = asyncio.get_running_loop()
        self._handshakes[eio_sid] = loop.call_later(timeout, self._handshake_expired, eio_sid)

    def _handshake_expired(self, eio_sid: str) -> None:
        self._handshakes.pop(eio_sid, None)
        if eio_sid not in self.eio.sockets or self.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            return  # gone, or joined (or joining) the namespace
        environ = self.environ.get(eio_sid)
        if environ is not None:
            environ[_REFUSED] = True
            self.guard.handshake_timeouts.inc()
            self.guard.report.warn(
                _peer(environ), f"no Socket.IO CONNECT within {self.guard.handshake_timeout:g} s"
            )
        self._close_later(eio_sid)


class _EngineIOLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """python-engineio's logger: ERROR and above, as its default; bad client input is not an error."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("engineio.server"), {})
        self.server: GuardedServer | None = None

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.ERROR and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("exc_info") and self.server is not None:
            sid = bad_post_session(sys.exc_info()[2])
            if sid is not None:
                self.server.bad_polling_request(sid)
                return
        super().log(level, msg, *args, **kwargs)


def _abort(transport: asyncio.BaseTransport) -> None:
    if not transport.is_closing():
        transport.abort()  # type: ignore[attr-defined]
