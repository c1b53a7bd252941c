"""Rows as the state file holds them: JSON text, written and read by msgspec where it is exact.

:func:`row_text` runs on the loop thread as each change arrives (a string is all the
writer thread then gets: no dict kept alive until the write, nothing for the cyclic
garbage collector to walk), :func:`rows_of` once per table at start.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from rxstore.protocol.errors import PersistError

__all__ = ["dumps", "row_text", "rows_of"]

_decode: Final = msgspec.json.Decoder().decode
_encode: Final = msgspec.json.Encoder().encode


def row_text(row: Mapping[str, Any]) -> str:
    """A row as JSON text: msgspec's encoder (10x :mod:`json`'s) where it writes what json would.

    msgspec writes NaN and the infinities as ``null``: a row whose text holds a ``null`` is
    looked into, and one holding a non-finite float (or nested values, not looked into) is
    written by :mod:`json` instead, exactly. A row without ``null`` is msgspec's text as it is.

    Raises:
        PersistError: ``write_failed``: the row holds a value that is not JSON (only rows
            built by hand can: the gateway's are decoded JSON).

    Example:
        >>> row_text({"id": "p1", "n": 1}), row_text({"id": "p2", "f": float("nan")})
        ('{"id":"p1","n":1}', '{"id":"p2","f":NaN}')
    """
    if type(row) is not dict:
        row = dict(row)
    try:
        text = _encode(row)
    except TypeError:  # a value msgspec does not encode: json says whether it is JSON at all
        return _exactly(row)
    if b"null" in text:  # a None, or a NaN or infinity msgspec wrote as null: look
        for value in row.values():
            kind = type(value)
            if (kind is float and value - value != 0.0) or kind is dict or kind is list:
                return _exactly(row)
    return text.decode()


def _exactly(row: Mapping[str, Any]) -> str:
    try:
        return dumps(row)
    except (TypeError, ValueError) as exc:
        raise PersistError("write_failed", f"a row is not JSON ({exc}): {row!r:.200}") from exc


def rows_of(text: str) -> Any:
    """JSON rows (an array of them, or one), by msgspec (exact, big integers too), else by :mod:`json`.

    Raises:
        ValueError: Not JSON (a damaged file).

    Example:
        >>> rows_of('[{"id": 1, "f": NaN}]')[0]["f"]
        nan
    """
    try:
        return _decode(text)
    except msgspec.DecodeError:  # what msgspec does not read (NaN, written by json.dumps), or damage
        return json.loads(text)


def _unknown(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON: the state file holds JSON values only")


_dumps: Final = json.JSONEncoder(separators=(",", ":"), default=_unknown).encode
"""``json.dumps(value, separators=(",", ":"), default=_unknown)`` without a new encoder per call."""


def dumps(value: Any) -> str:
    """Any JSON value as compact text, by :mod:`json` (a value that is not JSON raises ``TypeError``).

    Example:
        >>> dumps({"id": "p1", "n": [1, 2.5], "ok": None})
        '{"id":"p1","n":[1,2.5],"ok":null}'
    """
    return _dumps(value)
