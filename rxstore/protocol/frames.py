"""Incoming frames: decoded and checked in one C pass, and handed on without a Python object per change.

The gateway sends changes in ``rxstore:batch`` frames, and a client spends
most of its time on them. The transport decodes such a frame with msgspec
straight into a :class:`CheckedBatch`: each envelope is checked against
:class:`Envelope` while it is decoded (types, ``op``, ``seq >= 0``), so the
router skips its own per-change checks. Any other frame, or a batch with one
envelope that does not fit, is decoded as plain JSON (or msgpack) and the
router checks each change itself, reporting the bad ones and applying the
rest: bad input is treated exactly as before, good input faster.

The router hands a keyed view the changes of one frame under one name as a
:class:`ChangeFrame`: a sequence of :class:`~rxstore.protocol.events.Event` made only
if someone reads it as events; a ``TableStore`` reads the envelopes directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal, NotRequired, Required, TypedDict, overload

import msgspec

from rxstore.protocol.events import BATCH, SNAPSHOT, Event, EventKind
from rxstore.protocol.json_fast import MISS, fast_loads

__all__ = ["ChangeFrame", "CheckedBatch", "Envelope", "decode_json", "decode_msgpack"]


class Envelope(TypedDict, total=False):
    """A change envelope as the decoder checks it (``docs/protocol.md``); a plain ``dict`` at run time.

    Fields beyond these are not part of the protocol; the checked decoder
    drops them. The rule msgspec cannot express (``record`` for INSERT and
    UPDATE, ``old`` for DELETE) is checked by the router. ``out``: the keys of
    a window's rows that move out with this INSERT (``docs/protocol.md``, Windows).
    """

    seq: Required[Annotated[int, msgspec.Meta(ge=0)]]
    topic: Required[str]
    op: Required[Literal["INSERT", "UPDATE", "DELETE"]]
    record: dict[str, Any] | None
    old: dict[str, Any] | None
    ts: float
    mutation: str | None
    out: list[dict[str, Any]] | None


class CheckedBatch(msgspec.Struct, gc=False):
    """The payload of an ``rxstore:batch`` frame whose every envelope the decoder checked.

    Only the decoders of this module make one: the router trusts it.

    Attributes:
        events: ``(event name, envelope)`` pairs, in log order.
    """

    events: list[tuple[str, Envelope]]


_BATCH_PREFIX = f'["{BATCH}",'
_BATCH_PREFIX_BYTES = _BATCH_PREFIX.encode()
_PREFIX_LENGTH = len(_BATCH_PREFIX)
_SNAPSHOT_PREFIX = f'["{SNAPSHOT}",'
_json_batch = msgspec.json.Decoder(tuple[Literal["rxstore:batch"], CheckedBatch])
_json_any = msgspec.json.Decoder()
_EngineJSON: Any = None
"""python-socketio's own json (the stdlib's, with a cap on integer length): the last resort."""


def decode_json(text: str | bytes) -> Any:
    """Decode a Socket.IO event's JSON data (``[name, payload]``) as the client transport does.

    A batch of well-formed changes becomes ``("rxstore:batch", CheckedBatch)``;
    anything else decodes as plain JSON, exactly as :func:`json.loads` would
    (text msgspec rejects, such as ``NaN``, goes to python-socketio's json). A
    snapshot frame goes to orjson first where it is installed and exact
    (``rxstore.protocol.json_fast.fast_loads``): its rows share their keys'
    strings, ~100 bytes a row less than msgspec's rows of 5 columns, and it decodes
    them ~20% faster.

    Example:
        >>> decode_json('["rxstore:batch",{"events":[["post_update",{"seq":1,"topic":"posts",'
        ...             '"op":"DELETE","old":{"id":"p1"},"ts":1}]]}]')
        ('rxstore:batch', CheckedBatch(events=[('post_update', {'seq': 1, 'topic': 'posts', 'op': 'DELETE', \
'old': {'id': 'p1'}, 'ts': 1.0})]))
        >>> decode_json('["post_liked",{"id":"p1"}]')
        ['post_liked', {'id': 'p1'}]
    """
    if type(text) is str and text.startswith(_SNAPSHOT_PREFIX):
        value = fast_loads(text)  # orjson: rows share their keys' strings (msgspec's do not), and faster
        if value is not MISS:
            return value
    head = text[:_PREFIX_LENGTH]
    if head in (_BATCH_PREFIX, _BATCH_PREFIX_BYTES):
        try:
            return _json_batch.decode(text)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            pass  # one envelope that does not fit: the router checks them one by one and says which
    try:
        return _json_any.decode(text)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        pass  # NaN, lone surrogates, 1e999, very deep nesting: what msgspec refuses
    if type(text) is str:
        value = fast_loads(text)  # orjson nests deeper than msgspec
        if value is not MISS:
            return value
    return _engine_json().loads(text)


def _engine_json() -> Any:
    global _EngineJSON
    if _EngineJSON is None:
        try:
            from engineio import json as engine_json
        except ImportError:  # pragma: no cover - the transport needs python-socketio anyway
            engine_json = json
        _EngineJSON = engine_json
    return _EngineJSON


class _MsgpackBatchPacket(TypedDict):
    type: int
    data: tuple[Literal["rxstore:batch"], CheckedBatch]
    nsp: str
    id: NotRequired[int | None]


_msgpack_batch = msgspec.msgpack.Decoder(_MsgpackBatchPacket)


def decode_msgpack(data: bytes) -> dict[str, Any] | None:
    """A msgpack Socket.IO packet holding a batch of well-formed changes, decoded; else ``None``.

    ``None``: decode it as python-socketio does (its msgpack packet class).
    """
    try:
        return _msgpack_batch.decode(data)  # type: ignore[return-value]  # a TypedDict is a dict
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


class ChangeFrame(Sequence[Event]):
    """The changes of one incoming frame under one event name, as a keyed view receives them.

    A sequence of CHANGE :class:`~rxstore.protocol.events.Event` values, made on first
    access (then kept); :class:`~rxstore.stores.table.TableStore` reads
    :attr:`envelopes` instead, so a batch costs no Python object per change.

    Attributes:
        name: The event name of every change in it.
        envelopes: The change envelopes (checked), in log order; never empty.

    Example:
        >>> frame = ChangeFrame("post_update", [{"seq": 4, "topic": "posts", "op": "DELETE",
        ...                                      "record": None, "old": {"id": "p1"}}])
        >>> len(frame), frame[0].seq, frame[-1].change.op.value
        (1, 4, 'DELETE')
    """

    __slots__ = ("_events", "envelopes", "name")

    def __init__(self, name: str, envelopes: list[dict[str, Any]]) -> None:
        self.name = name
        self.envelopes = envelopes
        self._events: list[Event] | None = None

    def events(self) -> list[Event]:
        """The changes as events (made once)."""
        events = self._events
        if events is None:
            name, change = self.name, EventKind.CHANGE
            events = self._events = [Event(name, e, change, e["seq"]) for e in self.envelopes]
        return events

    def __len__(self) -> int:
        return len(self.envelopes)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self.events()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a sequence compared by content, like a list

    def __repr__(self) -> str:
        return f"ChangeFrame({self.name!r}, {len(self.envelopes)} changes)"
