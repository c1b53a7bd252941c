"""JSON on the gateway's hot path: rows read from the change log, frames sent to clients.

Both directions use orjson when it is installed (the ``gateway`` extra pulls it
in) and give exactly what the standard library gives otherwise:

* :func:`load_json` decodes a row (or any JSON text the database hands over).
  Text that orjson rejects (``9e999``, which SQLite writes for an infinite
  REAL, lone surrogates) or that may hold an integer beyond 64 bits (orjson
  would turn it into a float) goes to :mod:`json`. A row decoded that way is
  returned as an :class:`ExactRow`, so that frames carrying it are encoded by
  :mod:`json` too (orjson writes ``inf`` as ``null``).
* :class:`GatewayJSON` is the ``json`` of the gateway's Socket.IO packets: a
  batch or snapshot frame built from the log (a :class:`LogFrame`) is encoded
  by orjson, anything else (acks, client events) by python-socketio's own json.

Measured on the end-to-end benchmark (docs/benchmarks.md), the standard
library's encoder and decoder were about half of the gateway's CPU per change.
"""

from __future__ import annotations

import json
from typing import Any

import socketio

__all__ = ["ExactRow", "GatewayJSON", "LogFrame", "dump_json", "load_json", "pack_msgpack"]

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _orjson = None

_ormsgpack: Any
try:  # the msgpack extra: packs the gateway's frames ~2.8x faster than msgpack-python
    import ormsgpack as _ormsgpack
except ImportError:  # pragma: no cover - exercised where ormsgpack is not installed
    _ormsgpack = None

_SOCKETIO_JSON: Any = socketio.packet.Packet.json
"""python-socketio's own json (the stdlib's, with a cap on integer length)."""

_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")
_LONG_NUMBER = "0" * 19
"""19 digits in a row: maybe an integer beyond 64 bits (costs ~0.5 ns per character to find)."""


class ExactRow(dict[str, Any]):
    """A row holding a value orjson cannot encode as the stdlib does (e.g. ``inf``)."""


class LogFrame(dict[str, Any]):
    """A frame the gateway built from change-log rows: JSON values only, never bytes."""


def load_json(text: str, *, big_ints: bool = True) -> Any:
    """Decode JSON text from the database exactly as :func:`json.loads` would.

    Args:
        text: The JSON text.
        big_ints: Whether the text may hold integers beyond 64 bits (PostgreSQL's
            ``numeric`` may; SQLite's integers cannot). Finding them costs about
            as much as decoding a small row with orjson.

    Example:
        >>> load_json('{"id": "p1", "likes": 3}')
        {'id': 'p1', 'likes': 3}
        >>> type(load_json('{"x": 9e999}')).__name__
        'ExactRow'
    """
    if _orjson is not None and not (big_ints and _LONG_NUMBER in text.translate(_DIGITS_AS_ZERO)):
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass
    value = json.loads(text)
    return ExactRow(value) if type(value) is dict else value


def dump_json(value: Any) -> str | None:
    """Encode ``value`` for the database as JSON text; ``None`` if it is not JSON-able.

    Example:
        >>> dump_json({"id": "p1"}), dump_json(b"bytes")
        ('{"id": "p1"}', None)
    """
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return None


def pack_msgpack(value: Any) -> bytes:
    """Pack a packet for the msgpack serializer: ormsgpack when installed, else msgpack-python.

    Both write the same msgpack format (any msgpack decoder reads either); what
    ormsgpack does not pack (integers beyond 64 bits, ...) goes to msgpack-python.

    Example:
        >>> import msgpack
        >>> msgpack.unpackb(pack_msgpack({"type": 2, "data": ["e", LogFrame(events=[])], "nsp": "/"}))
        {'type': 2, 'data': ['e', {'events': []}], 'nsp': '/'}
    """
    if _ormsgpack is not None:
        try:
            return bytes(_ormsgpack.packb(value))
        except (_ormsgpack.MsgpackEncodeError, TypeError):
            pass
    import msgpack

    return bytes(msgpack.packb(value))


def _frame_default(value: Any) -> Any:
    if type(value) is LogFrame:
        return dict(value)
    raise TypeError  # an ExactRow (or a subclass orjson passes through): use the stdlib


class GatewayJSON:
    """The ``json`` of the gateway's packets: log frames through orjson, the rest unchanged.

    Example:
        >>> GatewayJSON.dumps(["rxstore:batch", LogFrame(events=[])], separators=(",", ":"))
        '["rxstore:batch",{"events":[]}]'
    """

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        """Encode a packet's data (``separators`` and the like apply to the stdlib path)."""
        if _orjson is not None and type(obj) is list and len(obj) == 2 and type(obj[1]) is LogFrame:
            try:
                return str(
                    _orjson.dumps(obj, default=_frame_default, option=_orjson.OPT_PASSTHROUGH_SUBCLASS),
                    "utf-8",
                )
            except _orjson.JSONEncodeError:  # an ExactRow, an integer beyond 64 bits, ...
                pass
        return _SOCKETIO_JSON.dumps(obj, *args, **kwargs)  # type: ignore[no-any-return]

    @staticmethod
    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        """Decode what a client sent, with python-socketio's own json (it caps integer length)."""
        return _SOCKETIO_JSON.loads(text, *args, **kwargs)
