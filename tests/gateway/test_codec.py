"""The gateway's fast JSON gives exactly what the standard library gives, as strict JSON (RFC 8259)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxstore.gateway.codec import ExactRow, GatewayJSON, LogFrame, load_json, pack_msgpack
from rxstore.gateway.demo import Post, all_posts, save_post
from tests.gateway.harness import root_for, start_gateway
from tests.waiting import wait_for

TEXTS = [
    '{"id": "p1", "likes": 3, "score": 0.1}',
    '{"x": 9e999, "y": -9e999}',  # SQLite's infinite REALs
    '{"big": 123456789012345678901234567890}',  # orjson would make this a float
    '{"max": 9223372036854775807, "min": -9223372036854775808}',
    '{"lone": "\\ud800"}',
    '{"text": "h\\u00e9llo \\ud83d\\ude00 \\u2028", "nested": {"a": [1, 2.5, null, true]}}',
    "[1, 2, 3]",
    '"just a string"',
    "null",
]


def _strict(value: Any) -> Any:
    """What the gateway makes of a value the stdlib decoded: non-finite floats as their JSON strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


@pytest.mark.parametrize("text", TEXTS)
def test_load_json_equals_the_standard_library(text: str) -> None:
    """Same values as json.loads, except that non-finite numbers become "Infinity"/"-Infinity"/"NaN"."""
    decoded = load_json(text)
    expected = _strict(json.loads(text))
    assert repr(decoded) == repr(expected) or type(decoded) is ExactRow
    assert json.dumps(decoded, allow_nan=False) == json.dumps(expected)


def test_non_finite_numbers_from_the_database_read_as_postgresql_writes_them() -> None:
    """SQLite's 9e999 and Python's Infinity/NaN literals read as to_jsonb's strings."""
    assert load_json('{"a": 9e999, "b": -9e999, "c": 1.5}') == {"a": "Infinity", "b": "-Infinity", "c": 1.5}
    assert load_json('{"a": Infinity, "b": NaN}') == {"a": "Infinity", "b": "NaN"}


def test_rows_orjson_cannot_hold_exactly_are_marked() -> None:
    assert type(load_json('{"x": 9e999}')) is ExactRow
    assert type(load_json('{"big": 123456789012345678901234567890}')) is ExactRow
    assert type(load_json('{"x": 1.5}')) is dict


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(),
)
rows = st.dictionaries(st.text(), st.one_of(json_scalars, st.lists(json_scalars, max_size=3)), max_size=6)


@given(st.lists(rows, max_size=5))
def test_log_frames_decode_to_what_the_stdlib_encoding_decodes_to(records: list[dict[str, Any]]) -> None:
    """Whatever the rows hold (infinities, 70-bit integers, any unicode), a client decodes the same values."""
    marked = [load_json(json.dumps(row)) for row in records]
    frame = ["rxstore:batch", LogFrame(events=[["post_update", {"record": row}] for row in marked])]
    fast = GatewayJSON.dumps(frame, separators=(",", ":"))
    slow = json.dumps(frame, separators=(",", ":"))
    assert repr(json.loads(fast)) == repr(json.loads(slow))


def test_other_packets_are_encoded_by_the_standard_library_as_strict_json() -> None:
    """Acks and the like: the stdlib's bytes; a non-finite number travels as its string, never Infinity."""
    ack = {"ok": True, "result": [1.5, "x", None]}
    assert GatewayJSON.dumps(ack, separators=(",", ":")) == json.dumps(ack, separators=(",", ":"))
    odd = {"ok": False, "values": [math.inf, -math.inf, math.nan, {"deep": (math.inf,)}]}
    text = GatewayJSON.dumps(odd, separators=(",", ":"))
    assert text == '{"ok":false,"values":["Infinity","-Infinity","NaN",{"deep":["Infinity"]}]}'
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a frame"))


async def test_an_infinite_real_reaches_the_client_as_infinity(tmp_path: Path) -> None:
    """SQLite's inf: the log holds 9e999, the frame "Infinity" (not orjson's null), a Post reads inf."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        root, posts = root_for(gateway)
        async with root:
            await wait_for(lambda: posts.value is not None, what="snapshot")
            await save_post(gateway.log, Post(id="p1", title="été 😀", updated_at=math.inf))
            await save_post(gateway.log, Post(id="p2", title="plain", updated_at=1.5))
            await wait_for(lambda: len(posts.value) == 2, what="both changes")
            assert posts.value["p1"].updated_at == math.inf
            assert posts.value["p1"].title == "été 😀"
            assert posts.value["p2"].updated_at == 1.5
            assert {k: v for k, v in posts.value.to_dict().items()} == await all_posts(gateway.log)
    finally:
        await gateway.stop()


msgpack_rows = st.dictionaries(
    st.text(),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(),
        st.text(),
        st.binary(max_size=8),
    ),
    max_size=6,
)


@given(st.lists(msgpack_rows, max_size=5))
def test_msgpack_frames_decode_to_what_msgpack_python_packs(records: list[dict[str, Any]]) -> None:
    import msgpack

    frame = {"type": 2, "data": ["rxstore:batch", LogFrame(events=[["e", {"record": r}] for r in records])]}
    fast = msgpack.unpackb(pack_msgpack(frame))
    slow = msgpack.unpackb(msgpack.packb(frame))
    assert repr(fast) == repr(slow)
