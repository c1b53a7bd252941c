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

The limits and the report of who broke them are
:mod:`rxstore.gateway.access.bad_input`'s; the frames refused before Engine.IO
reads them, :mod:`rxstore.gateway.access.guarded_websockets`' drivers.

It touches no private name of python-socketio or python-engineio: the
server's Engine.IO handlers are hooks of
:class:`~rxstore.gateway.access.socketio_seam.EngineIOHooks`; the websocket
driver is replaced and sessions closed through
:mod:`~rxstore.gateway.access.engineio_seam`, which also tells a bad
long-polling body by python-engineio's traceback.
``tests/gateway/test_library_pins.py`` fails when those change,
``tests/gateway/access/test_guard.py`` when their behaviour does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import socketio

from rxstore.gateway.access.bad_input import WireGuard
from rxstore.gateway.access.engineio_seam import (
    bad_post_session,
    close_after_queued,
    replace_websocket_driver,
)
from rxstore.gateway.access.guarded_websockets import asgi_websocket_class, peer, websocket_class
from rxstore.gateway.access.packets import (
    INVALID_EVENT,
    BadFrame,
    BadPayload,
    json_packet_class,
    msgpack_packet_class,
)
from rxstore.gateway.access.socketio_seam import EngineIOHooks

__all__ = [
    "INVALID_EVENT",
    "BadFrame",
    "BadPayload",
    "GuardedServer",
    "json_packet_class",
    "msgpack_packet_class",
]

_CLOSE_GRACE = 2.0
"""Seconds a refused client has to take its close frame before its TCP connection is cut."""
_REFUSED = "rxstore.refused"
"""Key set in a refused socket's environ: its later frames are dropped unread."""


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
        guarded = asgi_websocket_class if self.eio.async_mode == "asgi" else websocket_class
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
        self.guard.refused(peer(environ), exc.reason, str(exc))
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
        self.guard.refused(peer(environ), "malformed", "not an Engine.IO payload (long-polling)")
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
                peer(environ), f"no Socket.IO CONNECT within {self.guard.handshake_timeout:g} s"
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
