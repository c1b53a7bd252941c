"""The JSON fast path shared by the client (transport) and the gateway (codec).

orjson decodes several times faster than :mod:`json`, but not always the same
way: it rejects some text the standard library reads (``NaN``, ``9e999``, lone
surrogates) and turns an integer beyond 64 bits into a float. :func:`fast_loads`
takes orjson's answer only where it equals the standard library's, and says
:data:`MISS` otherwise, so each caller falls back to its own ``json`` call.
No import of the gateway or of socketio: the client works without those extras.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["MISS", "fast_loads", "may_hold_big_int", "orjson"]

orjson: Any
"""The :mod:`orjson` module when installed, else ``None``."""
try:
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    orjson = None

MISS: Final = object()
"""What :func:`fast_loads` returns when the text must be decoded by :mod:`json`."""

_DIGITS_AS_ZERO: Final = str.maketrans("123456789", "000000000")
_LONG_NUMBER: Final = "0" * 19
"""19 digits in a row (after mapping digits to 0): maybe an integer beyond 64 bits."""


def may_hold_big_int(text: str) -> bool:
    """Whether ``text`` has 19 digits in a row, so maybe an integer orjson would turn into a float.

    Costs about 0.5 ns per character.

    Example:
        >>> may_hold_big_int('{"n": 12345678901234567890}'), may_hold_big_int('{"n": 42}')
        (True, False)
    """
    return _LONG_NUMBER in text.translate(_DIGITS_AS_ZERO)


def fast_loads(text: str, *, big_ints: bool = True) -> Any:
    """Decode ``text`` with orjson where that gives what :func:`json.loads` gives, else return :data:`MISS`.

    Args:
        text: JSON text.
        big_ints: Whether the text may hold integers beyond 64 bits (then
            text with a long run of digits is left to :mod:`json`).

    Example:
        >>> fast_loads('{"id": "p1"}') == {"id": "p1"}, fast_loads("NaN") is MISS
        (True, True)
    """
    if orjson is None or (big_ints and may_hold_big_int(text)):
        return MISS
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return MISS
