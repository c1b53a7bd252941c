"""Hypothesis strategies shared by the client and gateway bad-input properties."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = [
    "EDGE_TEXT",
    "big_ints",
    "json_scalars",
    "json_values",
    "message_data",
    "non_dicts",
    "not_envelope",
    "not_int",
    "not_str",
    "texts",
]

EDGE_TEXT = (
    "",
    "\x00",
    "a\x00b",
    "📮",
    "👩‍👩‍👧‍👦",  # ZWJ sequence
    "🇺🇦",  # regional indicators
    "שלום עולם",  # RTL
    "مرحبا\u200f",  # RTL with a right-to-left mark
    "\u202eevil\u202c",  # RTL override
    "e\u0301\u0301\u0301",  # combining accents
    "Z\u0351\u0352\u0357\u0350\u035b",  # zalgo-ish
    "\ufeffbom",
    "\u2028line\u2029para",
    "\U0010ffff",
    "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48",  # fullwidth "fullwidth"
    "null",
    "None",
    "rxstore:",
    "__proto__",
    "constructor",
)
"""Text that breaks naive code: NUL, emoji, ZWJ, RTL, combining marks, separators."""

texts = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=20),  # hypothesis' default alphabet: all of Unicode except surrogates
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
)
"""Surrogate-free Unicode text (valid UTF-8), with the edge cases above over-represented."""

big_ints = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-(10**99) + 1, max_value=10**99),  # python-socketio decodes up to 100 characters
    st.sampled_from([2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**99, -(10**99) + 1]),
)
"""Integers a JSON frame can carry (python-socketio decodes at most 100 characters, sign included)."""

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    big_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)

json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts, children, max_size=4),
    ),
    max_leaves=12,
)
"""Any JSON value (no NaN/inf: they are not JSON and NaN != NaN breaks equality checks)."""

non_dicts = json_values.filter(lambda v: not isinstance(v, dict))


def not_envelope(value: Any) -> bool:
    """Whether ``value`` would not be taken for a change envelope (an object with ``op`` and ``seq``)."""
    return not (isinstance(value, dict) and "op" in value and "seq" in value)


message_data = json_values.filter(not_envelope)
"""Payloads of plain messages: anything but an object with both ``op`` and ``seq``."""

not_int = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.sampled_from([1.0, 0.0, -0.0, 2.5, float("inf")]),
    texts,
    st.sampled_from(["1", "0x10", "1e3"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(texts, st.integers(), max_size=2),
)
"""Values that are not an ``int`` (``bool`` included: ``True`` is no seq)."""

not_str = st.one_of(
    st.none(),
    st.booleans(),
    big_ints,
    st.floats(allow_nan=False),
    st.lists(texts, max_size=2),
    st.dictionaries(texts, texts, max_size=2),
)
"""Values that are not a ``str``."""
