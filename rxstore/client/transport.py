"""Transports: how a :class:`~rxstore.client.root.RootStore` talks to a gateway.

The root needs very little from a transport: connect with an auth payload,
deliver every incoming frame to one callback, say when the link is lost, and
send events (with or without an acknowledgement). :class:`SocketIOTransport`
does this over python-socketio; :mod:`rxstore.testing` has an in-memory one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import socketio

from rxstore.protocol.errors import CallTimeout, ConnectionRefused, NotConnected, TransportError
from rxstore.protocol.frames import decode_json, decode_msgpack

__all__ = ["FrameHandler", "LostHandler", "SocketIOTransport", "Transport"]

FrameHandler = Callable[[str, Any], None]
"""Called with ``(event_name, payload)`` for every incoming frame, in order."""
LostHandler = Callable[[str], None]
"""Called with a reason when an established link is lost."""

log = logging.getLogger("rxstore.transport")

_JSON: Any = socketio.packet.Packet.json
"""python-socketio's own json (the stdlib's, with a cap on integer length)."""


class _FrameJSON:
    """The ``json`` of :class:`_JSONPacket`: decodes with :func:`~rxstore.protocol.frames.decode_json`.

    A batch of well-formed changes is decoded and checked in one msgspec pass;
    anything else gives exactly what python-socketio's own json gives (text
    msgspec rejects, such as ``NaN``, goes to it); encoding always does.
    """

    @staticmethod
    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and type(text) is str:
            return decode_json(text)
        return _JSON.loads(text, *args, **kwargs)

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        return _JSON.dumps(obj, *args, **kwargs)  # type: ignore[no-any-return]


class _JSONPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's JSON packet, decoding with :class:`_FrameJSON` (this client only)."""

    json = _FrameJSON


@functools.cache
def _msgpack_packet() -> Any:
    """python-socketio's msgpack packet; change batches go to :func:`.frames.decode_msgpack`."""
    from socketio.msgpack_packet import MsgPackPacket

    class _MsgPackPacket(MsgPackPacket):  # type: ignore[misc]
        def decode(self, encoded_packet: bytes) -> None:
            decoded = decode_msgpack(encoded_packet)
            if decoded is None:
                super().decode(encoded_packet)  # anything but a well-formed batch: as python-socketio does
                return
            self.packet_type = decoded["type"]
            self.data = decoded["data"]
            self.id = decoded.get("id")
            self.namespace = decoded["nsp"]

    return _MsgPackPacket


class Transport(Protocol):
    """The link between a root store and a gateway.

    Example:
        :class:`~rxstore.testing.VirtualLink` is an in-memory transport for tests:

        >>> from rxstore import RootStore
        >>> from rxstore.testing import VirtualLink
        >>> root = RootStore("virtual://gateway", transport=VirtualLink())
        >>> root.connection_state.status.value
        'idle'
    """

    def bind(self, on_frame: FrameHandler, on_lost: LostHandler) -> None:
        """Set the callbacks for incoming frames and for a lost link."""

    async def connect(self, url: str, auth: Mapping[str, Any]) -> None:
        """Open the link.

        Raises:
            ConnectionRefused: The gateway refused (bad token, forbidden topic, ...).
            TransportError: The gateway could not be reached; worth retrying.
        """

    async def disconnect(self) -> None:
        """Close the link (no ``on_lost`` call follows)."""

    async def emit(self, event: str, data: Any) -> None:
        """Send an event without waiting for an acknowledgement.

        Raises:
            NotConnected: The link is down.
        """

    async def call(self, event: str, data: Any, *, timeout: float) -> Any:
        """Send an event and return the gateway's acknowledgement.

        Raises:
            NotConnected: The link is down.
            CallTimeout: No acknowledgement within ``timeout`` seconds.
        """


class SocketIOTransport:
    """A :class:`Transport` over one python-socketio ``AsyncClient`` (websocket).

    Args:
        serializer: ``"json"`` (default) or ``"msgpack"``; must match the gateway.
        connect_timeout: Seconds to wait for the gateway to accept the connection: the TCP
            connect, the websocket upgrade and the Socket.IO handshake together (a host whose
            packets never come back is given up after it, not after TCP's own timeout).
        socketio_path: The Socket.IO endpoint path on the gateway.
        max_frame_bytes: Largest frame accepted from the gateway (64 MiB); a bigger
            one ends the connection. The gateway cuts snapshots and batches into
            frames of its ``frame_bytes`` (1 MiB), so this only has to exceed the
            largest single row (aiohttp's own default, 4 MiB, is replaced).
        max_in_flight: Most calls awaiting their acknowledgement at once; more wait
            their turn, in order, before they are sent (their ``timeout`` counts from
            the send). Keep it at most the gateway's ``max_in_flight`` (64), which
            refuses the rest with ``too_many_requests``.

    Example:
        The default transport of a root store; pass one to change its options:

        >>> from rxstore import RootStore
        >>> transport = SocketIOTransport(serializer="msgpack", connect_timeout=2.0)
        >>> root = RootStore("http://127.0.0.1:8080", transport=transport)
        >>> root.urls
        ('http://127.0.0.1:8080',)
    """

    def __init__(
        self,
        *,
        serializer: Literal["json", "msgpack"] = "json",
        connect_timeout: float = 5.0,
        socketio_path: str = "socket.io",
        max_frame_bytes: int = 64 << 20,
        max_in_flight: int = 64,
    ) -> None:
        if max_frame_bytes < 1024:
            raise ValueError(f"max_frame_bytes must be >= 1024, got {max_frame_bytes}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._window = asyncio.Semaphore(max_in_flight)
        self.serializer = serializer
        self.max_frame_bytes = max_frame_bytes
        self.connect_timeout = connect_timeout
        self.socketio_path = socketio_path
        self._client: Any = None
        self._on_frame: FrameHandler = _ignore_frame
        self._on_lost: LostHandler = _ignore_lost
        self._refusal: Any = None
        self._closing = False
        self._lost: asyncio.Future[None] | None = None

    def bind(self, on_frame: FrameHandler, on_lost: LostHandler) -> None:
        """Set the callbacks for incoming frames and for a lost link."""
        self._on_frame = on_frame
        self._on_lost = on_lost

    def _new_client(self) -> Any:
        client = socketio.AsyncClient(
            reconnection=False,  # the root store reconnects, with a fresh token and cursor
            serializer=_msgpack_packet() if self.serializer == "msgpack" else _JSONPacket,
            handle_sigint=False,
            websocket_extra_options={"max_msg_size": self.max_frame_bytes},
        )
        on_frame = self._on_frame

        def on_any(event: str, *args: Any) -> None:
            # Never raise into python-socketio: it would read a TypeError as a
            # signature mismatch. The root isolates its own failures.
            try:
                on_frame(event, args[0] if len(args) == 1 else (list(args) if args else None))
            except Exception:  # pragma: no cover - the root reports its own errors
                log.exception("frame handler failed on %r", event)

        def on_connect_error(data: Any = None) -> None:
            self._refusal = data

        def on_disconnect(reason: Any = None) -> None:
            if self._client is client:
                self._signal_lost()
                if not self._closing:
                    self._client = None
                    self._on_lost(str(reason or "disconnected"))

        client.on("*", on_any)
        client.on("connect_error", on_connect_error)
        client.on("disconnect", on_disconnect)
        return client

    async def connect(self, url: str, auth: Mapping[str, Any]) -> None:
        """Open a websocket Socket.IO connection with ``auth`` as the auth payload."""
        await self.disconnect()
        self._closing = False
        self._refusal = None
        client = self._new_client()
        # Ours before connect() returns: the gateway may end the session before it does (a
        # server that drops at once), and that loss must reach the root, not be ignored.
        self._lost = asyncio.get_running_loop().create_future()
        self._client = client
        try:
            await _within(
                client.connect(
                    url,
                    auth=dict(auth),
                    transports=["websocket"],
                    socketio_path=self.socketio_path,
                    wait_timeout=self.connect_timeout,
                ),
                self.connect_timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            self._abandon(client)
            await _quietly_disconnect(client)
            refusal = self._refusal
            # A refusal by the gateway always carries an object; python-socketio reports a
            # connection it could not even open (dead node) as a plain string: retry elsewhere.
            # ``from None``: the chain of aiohttp, engineio and socketio errors stays reachable
            # (``__context__``) but is not printed; the error names the URL and the reason.
            if isinstance(refusal, Mapping):
                raise _refused(refusal) from None
            raise TransportError(f"cannot connect to {url}: {_why(exc)}") from None
        except BaseException:  # cancelled mid-connect (a connect timeout, a teardown): close what it opened
            self._abandon(client)
            await _quietly_disconnect(client)
            raise

    def _abandon(self, client: Any) -> None:
        """Forget a client whose connect failed (no loss is reported for it: it never was up)."""
        if self._client is client:
            self._client = None
            self._lost = None

    async def disconnect(self) -> None:
        """Close the link, if open."""
        client, self._client = self._client, None
        self._closing = True
        self._signal_lost()
        if client is not None:
            await _quietly_disconnect(client)

    def _signal_lost(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None and not lost.done():
            lost.set_result(None)

    async def emit(self, event: str, data: Any) -> None:
        """Send ``event`` without acknowledgement."""
        client = self._client
        if client is None:
            raise NotConnected(f"cannot emit {event!r}: not connected")
        try:
            await client.emit(event, data)
        except socketio.exceptions.BadNamespaceError as exc:
            raise NotConnected(f"cannot emit {event!r}: not connected") from exc

    async def call(self, event: str, data: Any, *, timeout: float) -> Any:
        """Send ``event`` and wait up to ``timeout`` seconds for the acknowledgement.

        At most ``max_in_flight`` calls are in flight; the others wait for a place first.
        """
        if self._client is None:
            raise NotConnected(f"cannot call {event!r}: not connected")
        async with self._window:
            return await self._call(event, data, timeout)

    async def _call(self, event: str, data: Any, timeout: float) -> Any:
        client = self._client
        if client is None or self._lost is None:
            raise NotConnected(f"cannot call {event!r}: not connected")
        lost = self._lost
        call = asyncio.ensure_future(client.call(event, data, timeout=timeout))
        try:
            await asyncio.wait((call, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not call.done():
                call.cancel()
                call.add_done_callback(_retrieved)  # its timeout may still end it: nobody awaits that
        if not call.done() or call.cancelled():
            raise CallTimeout(f"the connection dropped before {event!r} was acknowledged")
        try:
            return call.result()
        except socketio.exceptions.TimeoutError as exc:
            raise CallTimeout(f"no acknowledgement for {event!r} within {timeout} s") from exc
        except socketio.exceptions.BadNamespaceError as exc:
            raise NotConnected(f"cannot call {event!r}: not connected") from exc


def _refused(data: Any) -> ConnectionRefused:
    """Turn a Socket.IO connect_error payload into a :class:`ConnectionRefused`."""
    reason = "refused"
    message: str | None = None
    retry_after: float | None = None
    if isinstance(data, Mapping):
        detail = data.get("data")
        if isinstance(detail, Mapping):
            reason = str(detail.get("reason", data.get("message", reason)))
            message = str(detail.get("message") or data.get("message") or reason)
            wait = detail.get("retry_after")
            if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 <= wait < 86_400:
                retry_after = float(wait)  # seconds; anything else is ignored
        else:
            reason = str(data.get("message", reason))
    elif isinstance(data, str):
        reason = data
    return ConnectionRefused(reason, f"connection refused: {message or reason}", retry_after=retry_after)


def _why(exc: BaseException) -> str:
    """``exc``'s message, and that of the error at the bottom of its chain if it says more.

    Example:
        >>> try:
        ...     try:
        ...         raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
        ...     except OSError as cause:
        ...         raise RuntimeError("Connection error") from cause
        ... except RuntimeError as exc:
        ...     print(_why(exc))
        Connection error ([Errno 111] Connect call failed ('127.0.0.1', 9))
    """
    bottom, seen = exc, {id(exc)}
    while (below := bottom.__cause__ or bottom.__context__) is not None and id(below) not in seen:
        bottom = below
        seen.add(id(bottom))
    said, more = str(exc), str(bottom)
    return said if bottom is exc or not more or more in said else f"{said} ({more})"


async def _within(connecting: Awaitable[Any], timeout: float) -> None:
    """Await ``connecting``, at most ``timeout`` seconds.

    Past it, ``connecting`` is cancelled and the failure reported as python-socketio reports a
    connection it could not open (aiohttp's own TCP connect timeout is 30 s).
    """
    try:
        await asyncio.wait_for(connecting, timeout)
    except TimeoutError:
        raise socketio.exceptions.ConnectionError(f"no answer within {timeout} s") from None


async def _quietly_disconnect(client: Any) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), timeout=2.0)
    except Exception:  # pragma: no cover - best effort on a broken link
        log.debug("disconnect of a broken client failed", exc_info=True)
    try:
        await asyncio.wait_for(client.shutdown(), timeout=2.0)
    except Exception:  # pragma: no cover
        log.debug("shutdown of a broken client failed", exc_info=True)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned call's outcome as seen (it would be logged as never retrieved)."""
    if not task.cancelled():
        task.exception()


def _ignore_frame(event: str, data: Any) -> None:
    return None


def _ignore_lost(reason: str) -> None:
    return None
