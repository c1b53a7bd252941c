"""JSON on the gateway's hot path: rows read from the change log, frames sent to clients.

Both directions use orjson when it is installed (the ``gateway`` extra pulls it
in) and give exactly what the standard library gives otherwise:

* :func:`load_json` decodes a row (or any JSON text the database hands over).
  Text that orjson rejects (``9e999``, which SQLite writes for an infinite
  REAL, lone surrogates) or that may hold an integer beyond 64 bits (orjson
  would turn it into a float) goes to :mod:`json`. A row decoded that way is
  returned as an :class:`ExactRow`, so that frames carrying it are encoded by
  :mod:`json` too.
* :class:`GatewayJSON` is the ``json`` of the gateway's Socket.IO packets: a
  batch or snapshot frame built from the log (a :class:`LogFrame`) is encoded
  by orjson, anything else (acks, client events) by the standard library.

Every frame is strict JSON (RFC 8259), which has no infinities and no NaN.
A non-finite number a database holds travels as the string ``"Infinity"``,
``"-Infinity"`` or ``"NaN"`` (:func:`non_finite_json`), as PostgreSQL's
``to_jsonb`` writes a ``float8`` one: :func:`load_json` turns SQLite's
``9e999`` into ``"Infinity"`` while decoding (only on the rare standard-library
path: rows without one cost nothing more), and any other frame holding one is
encoded with the strings. What a client *sends* must be strict JSON too:
:meth:`GatewayJSON.loads` refuses ``Infinity``, ``NaN``, numbers that overflow
a float (``1e999``) and integers of over 100 digits with a :class:`PayloadError`.

Measured on the end-to-end benchmark (docs/benchmarks.md), the standard
library's encoder and decoder were about half of the gateway's CPU per change.
"""

from __future__ import annotations

import json
from typing import Any

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.json_fast import MISS, fast_loads
from rxstore.protocol.json_fast import orjson as _orjson

__all__ = [
    "ExactRow",
    "GatewayJSON",
    "LogFrame",
    "PayloadError",
    "dump_json",
    "load_json",
    "non_finite_json",
    "pack_msgpack",
]

_ormsgpack: Any
try:  # the msgpack extra: packs the gateway's frames ~2.8x faster than msgpack-python
    import ormsgpack as _ormsgpack
except ImportError:  # pragma: no cover - exercised where ormsgpack is not installed
    _ormsgpack = None

_MAX_INT_DIGITS = 100
"""Longest integer a client may send, in characters (python-socketio's own cap)."""


class ExactRow(dict[str, Any]):
    """A row holding a value orjson cannot encode as the stdlib does (an integer beyond 64 bits)."""


class LogFrame(dict[str, Any]):
    """A frame the gateway built from change-log rows: JSON values only, never bytes."""


class PayloadError(ProtocolError):
    """A client sent a payload that is not strict JSON, or one the gateway refuses to decode.

    The gateway answers it with ``invalid_payload`` (see docs/protocol.md).

    Example:
        >>> try:
        ...     GatewayJSON.loads('["save_post", {"updated_at": Infinity}]')
        ... except PayloadError as exc:
        ...     print(exc)
        Infinity is not JSON (RFC 8259): send finite numbers
    """


def non_finite_json(value: float) -> str:
    """The JSON string a non-finite float travels as: ``"Infinity"``, ``"-Infinity"`` or ``"NaN"``.

    The strings PostgreSQL's ``to_jsonb`` writes for such a ``float8``, and
    that JavaScript's ``Number()`` and Python's ``float()`` read back.

    Example:
        >>> non_finite_json(float("-inf")), float(non_finite_json(float("inf")))
        ('-Infinity', inf)
    """
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _db_float(text: str) -> float | str:
    value = float(text)
    return value if value - value == 0.0 else non_finite_json(value)


def _db_constant(name: str) -> str:
    return name  # Python's json writes inf as Infinity: it reads back as "Infinity"


def _client_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan, and nan != 0
        raise PayloadError(f"{text[:40]} is out of a float's range: send finite numbers")
    return value


def _client_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise PayloadError(f"an integer of {len(text)} characters: at most {_MAX_INT_DIGITS} are accepted")
    return int(text)


def _client_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not JSON (RFC 8259): send finite numbers")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its JSON string (rare: walks it all)."""
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else non_finite_json(value)
    if kind is dict or isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_finite(v) for v in value]
    return value


def load_json(text: str, *, big_ints: bool = True) -> Any:
    """Decode JSON text from the database exactly as :func:`json.loads` would.

    Args:
        text: The JSON text.
        big_ints: Whether the text may hold integers beyond 64 bits (PostgreSQL's
            ``numeric`` may; SQLite's integers cannot). Finding them costs about
            as much as decoding a small row with orjson.

    Non-finite numbers (SQLite writes ``9e999``) become the strings
    ``"Infinity"``, ``"-Infinity"`` and ``"NaN"``, as PostgreSQL's
    ``to_jsonb`` writes them, so that frames stay strict JSON.

    Example:
        >>> load_json('{"id": "p1", "likes": 3}')
        {'id': 'p1', 'likes': 3}
        >>> row = load_json('{"x": 9e999, "y": -9e999}')
        >>> type(row).__name__, row
        ('ExactRow', {'x': 'Infinity', 'y': '-Infinity'})
    """
    value = fast_loads(text, big_ints=big_ints)
    if value is not MISS:
        return value
    value = json.loads(text, parse_float=_db_float, parse_constant=_db_constant)
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
        """Encode a packet's data as strict JSON (``separators`` and the like apply to the stdlib path).

        Example:
            >>> GatewayJSON.dumps([{"ok": True, "result": float("inf")}], separators=(",", ":"))
            '[{"ok":true,"result":"Infinity"}]'
        """
        if _orjson is not None and type(obj) is list and len(obj) == 2 and type(obj[1]) is LogFrame:
            try:
                return str(
                    _orjson.dumps(obj, default=_frame_default, option=_orjson.OPT_PASSTHROUGH_SUBCLASS),
                    "utf-8",
                )
            except _orjson.JSONEncodeError:  # an ExactRow, an integer beyond 64 bits, ...
                pass
        kwargs["allow_nan"] = False
        try:
            return json.dumps(obj, *args, **kwargs)
        except ValueError as exc:
            if "float" not in str(exc):  # "Out of range float values are not JSON compliant"
                raise
        return json.dumps(_finite(obj), *args, **kwargs)

    @staticmethod
    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        """Decode what a client sent: strict JSON, integers of at most 100 digits.

        Raises:
            PayloadError: Not JSON, a non-finite number (``Infinity``, ``NaN``,
                ``1e999``) or an integer of over 100 digits.
        """
        try:
            return json.loads(
                text, parse_float=_client_float, parse_int=_client_int, parse_constant=_client_constant
            )
        except PayloadError:
            raise
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, too deep
            raise PayloadError(f"not JSON: {exc}") from None
