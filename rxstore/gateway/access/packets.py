"""Decoding client packets by the gateway's rules: what a payload may hold.

python-socketio's packet classes, subclassed so that decoding a client's
frame never raises for a bad payload (it becomes a :class:`BadPayload`, which
the gateway answers ``invalid_payload``) and raises :class:`BadFrame` for a
frame that is no client packet at all (:mod:`rxstore.gateway.access.guard` then
closes the socket). Payloads that are not strict JSON (``Infinity``, ``NaN``,
``1e999``), hold an integer of over 100 digits, or make a frame bigger than
``max_frame_bytes`` are refused this way.

They replace python-socketio 5.18.1's public ``Packet.decode`` (its attributes
``packet_type``, ``namespace``, ``id``, ``data``, ``json``);
``tests/gateway/test_library_pins.py`` fails when those change.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import socketio

from rxstore.gateway.codec import PayloadError
from rxstore.protocol.errors import ProtocolError

__all__ = ["INVALID_EVENT", "BadFrame", "BadPayload", "json_packet_class", "msgpack_packet_class"]

INVALID_EVENT = "rxstore:invalid_payload"
"""Event name under which an event whose payload was refused reaches the gateway's handler."""

_CONNECT, _DISCONNECT, _EVENT, _ACK = (
    socketio.packet.CONNECT,
    socketio.packet.DISCONNECT,
    socketio.packet.EVENT,
    socketio.packet.ACK,
)
_CLIENT_TYPES = {"0": _CONNECT, "1": _DISCONNECT, "2": _EVENT, "3": _ACK}
"""Socket.IO packet types a client may send (CONNECT_ERROR is the server's; 5, 6 carry binary)."""
_BINARY_TYPES = frozenset("56")
_DIGITS = frozenset("0123456789")
_EVENT_NAME_TYPES = frozenset({str, int, float, bool, type(None)})
"""What python-socketio can look an event name up with (the gateway answers unknown_event)."""
_MAX_ACK_ID_DIGITS = 15
"""Socket.IO clients number their acknowledgements from 0: 15 digits is far beyond any."""


class BadFrame(ProtocolError):
    """A frame that is not a packet of the rxstore protocol: the socket is closed.

    Attributes:
        reason: ``malformed``, ``binary`` or ``oversize_closed`` (the ``rxstore_bad_frames`` label).
        ack: The acknowledgement id of the packet, when it had a readable one.
        namespace: The packet's namespace, when it had a readable one.
    """

    def __init__(
        self, reason: str, message: str, *, ack: int | None = None, namespace: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.ack = ack
        self.namespace = namespace


@attrs.frozen
class BadPayload:
    """Stands for a payload the gateway refused to decode; the handler answers ``invalid_payload``.

    Attributes:
        message: What was wrong, for the client.
    """

    message: str


def utf8_size(text: str, limit: int) -> int:
    """Bytes of ``text`` in UTF-8, counted exactly only where it may matter against ``limit``."""
    size = len(text)
    if size * 4 > limit and not text.isascii():
        size = len(text.encode("utf-8", "surrogatepass"))
    return size


def _event_data(data: Any) -> Any:
    """An EVENT's data, or ``[INVALID_EVENT, BadPayload]`` when it cannot be one."""
    if type(data) is BadPayload:
        return [INVALID_EVENT, data]
    if type(data) is not list or not data or type(data[0]) not in _EVENT_NAME_TYPES:
        return [INVALID_EVENT, BadPayload("an event is [name, payload]")]
    return data


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return True
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item)
            stack.extend(item.values())
    return False


def json_packet_class(base: type[Any], *, max_frame_bytes: int) -> type[Any]:
    """``base`` (a python-socketio JSON packet class) decoding client frames by the gateway's rules.

    Decoding never raises for a bad payload: the packet's data becomes a
    :class:`BadPayload` (for an EVENT, ``[INVALID_EVENT, BadPayload]``). A
    frame that is no client packet at all raises :class:`BadFrame`.
    """

    class _GuardedJSONPacket(base):  # type: ignore[misc]
        def decode(self, encoded_packet: Any) -> int:
            # Replaces python-socketio 5.18.1's Packet.decode (type, namespace, id, data).
            if type(encoded_packet) is not str:
                raise BadFrame("binary", "a binary frame: the rxstore protocol has no binary payloads")
            text = encoded_packet
            kind = _CLIENT_TYPES.get(text[:1])
            binary = kind is None and text[:1] in _BINARY_TYPES
            if kind is None and not binary:
                raise BadFrame("malformed", f"not a Socket.IO packet (type {text[:1]!r})")
            self.packet_type = kind
            self.namespace = None
            self.id = None
            self.data = None
            start = 1
            if binary:  # skip the attachment count ("<n>-") to find the id worth an answer
                dash = text.find("-", start, start + 20)
                start = dash + 1 if dash > start and text[start:dash].isdigit() else start
            if text[start : start + 1] == "/":
                comma = text.find(",", start)
                end = len(text) if comma == -1 else comma
                self.namespace = text[start:end].split("?", 1)[0]
                start = end + 1
            end = start
            while (binary or kind in (_EVENT, _ACK)) and end < len(text) and text[end] in _DIGITS:
                end += 1
                if end - start > _MAX_ACK_ID_DIGITS:
                    raise BadFrame("malformed", "acknowledgement id too long", namespace=self.namespace)
            if end > start:
                self.id = int(text[start:end])
            if binary:
                raise BadFrame(
                    "binary",
                    "binary attachments: the rxstore protocol has no binary payloads",
                    ack=self.id,
                    namespace=self.namespace,
                )
            body = text[end:]
            if kind == _DISCONNECT or not body:
                if kind == _EVENT:
                    self.data = _event_data(None)
                return 0
            size = utf8_size(text, max_frame_bytes)
            if size > max_frame_bytes:
                self.data = BadPayload(
                    f"a frame of {size} bytes; the gateway takes at most {max_frame_bytes}"
                )
            else:
                try:
                    self.data = self.json.loads(body)
                except PayloadError as exc:
                    self.data = BadPayload(str(exc))
            if kind == _EVENT:
                self.data = _event_data(self.data)
            elif kind == _ACK and type(self.data) is not list:
                self.data = []
            return 0

    return _GuardedJSONPacket


def msgpack_packet_class(base: type[Any], *, max_frame_bytes: int) -> type[Any]:
    """``base`` (a python-socketio msgpack packet class) decoding client frames by the gateway's rules."""

    class _GuardedMsgPackPacket(base):  # type: ignore[misc]
        def decode(self, encoded_packet: Any) -> int:
            if not isinstance(encoded_packet, bytes | bytearray):
                raise BadFrame("malformed", "a text frame on a msgpack gateway")
            try:
                super().decode(encoded_packet)
            except Exception as exc:  # msgpack's many errors, a map without 'type'/'nsp'
                raise BadFrame(
                    "malformed", f"not a msgpack Socket.IO packet ({type(exc).__name__})"
                ) from None
            kind, namespace, ack = self.packet_type, self.namespace, self.id
            if kind not in (_CONNECT, _DISCONNECT, _EVENT, _ACK) or type(kind) is not int:
                raise BadFrame("malformed", f"not a client packet type: {kind!r}")
            if not (namespace is None or type(namespace) is str) or not (ack is None or type(ack) is int):
                raise BadFrame("malformed", "bad namespace or acknowledgement id")
            data: Any = getattr(self, "data", None)  # set by msgpack decode
            if len(encoded_packet) > max_frame_bytes:
                data = BadPayload(
                    f"a frame of {len(encoded_packet)} bytes; the gateway takes at most {max_frame_bytes}"
                )
            elif kind in (_CONNECT, _EVENT) and _has_non_finite(data):
                data = BadPayload("a non-finite number (inf, nan): send finite numbers")
            if kind == _EVENT:
                data = _event_data(data)
            elif kind == _ACK and type(data) is not list:
                data = []
            self.data = data
            return 0

    return _GuardedMsgPackPacket
