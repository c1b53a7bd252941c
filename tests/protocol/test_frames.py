"""Incoming frames: the checked decoder agrees with plain JSON; a ChangeFrame with its events."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxstore import Event, EventKind, RootStore, TableStore
from rxstore.client.transport import _JSONPacket, _msgpack_packet
from rxstore.protocol.events import BATCH
from rxstore.protocol.frames import ChangeFrame, CheckedBatch, decode_json
from rxstore.protocol.json_fast import orjson
from rxstore.testing import VirtualLink, batch_frame, change_frame
from tests.bad_input.strategies import json_values, texts

KEYS = st.sampled_from(["p1", "p2", "p3", "p4"])
ROWS = st.fixed_dictionaries({"id": KEYS}, optional={"title": texts, "likes": st.integers(-5, 5)})


@st.composite
def changes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """INSERT/UPDATE (some moving the key)/DELETE envelopes, with duplicates, stragglers, another topic."""
    envelopes = []
    for _ in range(draw(st.integers(1, 25))):
        op = draw(st.sampled_from(["INSERT", "UPDATE", "DELETE"]))
        seq = draw(st.integers(1, 30))
        topic = draw(st.sampled_from(["posts"] * 9 + ["comments"]))
        row = draw(ROWS)
        old = {"id": draw(KEYS)} if op != "INSERT" else None
        envelopes.append(change_frame(topic, seq, op, row, old=old).data)
    return envelopes


class Posts(TableStore[dict[str, Any]]):
    table = "posts"


@given(changes())
def test_a_change_frame_leaves_a_table_as_its_events_do(envelopes: list[dict[str, Any]]) -> None:
    """Duplicates skipped, keys moved, deletes, another topic's change reported: the same state and errors."""
    by_events, by_frame = Posts(), Posts()
    errors: list[list[Exception]] = [[], []]
    by_events.errors.subscribe(errors[0].append)
    by_frame.errors.subscribe(errors[1].append)
    events = [Event("post_update", e, EventKind.CHANGE, e["seq"]) for e in envelopes]
    by_events.apply(events)
    state = by_frame.reduce_batch(by_frame.value, ChangeFrame("post_update", envelopes))
    assert state.to_dict() == by_events.value.to_dict() and state.seq == by_events.value.seq
    assert [str(e) for e in errors[1]] == [str(e) for e in errors[0]]


def test_a_change_frame_is_a_sequence_of_its_events() -> None:
    envelopes = [change_frame("posts", seq, "INSERT", {"id": f"p{seq}"}).data for seq in (3, 4)]
    frame = ChangeFrame("post_update", envelopes)
    events = [Event("post_update", e, EventKind.CHANGE, e["seq"]) for e in envelopes]
    assert len(frame) == 2 and list(frame) == events and frame[-1] == events[-1] and frame[:1] == events[:1]
    assert frame == events and frame[1].change is not None and frame[1].change.seq == 4
    assert repr(frame) == "ChangeFrame('post_update', 2 changes)"


@given(json_values)
def test_any_other_frame_decodes_as_json_loads_does(payload: Any) -> None:
    text = json.dumps(["post_liked", payload])
    decoded = decode_json(text)
    assert decoded == json.loads(text) and repr(decoded) == repr(json.loads(text))  # types too: 1 is not 1.0


@pytest.mark.parametrize(
    "text", ['["x", NaN]', '["x", 1e999]', '["x", "\\ud800"]', '["x", ' + "[" * 900 + "]" * 900 + "]"]
)
def test_text_msgspec_refuses_still_decodes_as_python_socketio_would(text: str) -> None:
    assert repr(decode_json(text)) == repr(json.loads(text))


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_the_transport_decodes_a_well_formed_batch_checked_and_a_malformed_one_plain(serializer: str) -> None:
    inserted, deleted = (
        change_frame("posts", 1, "INSERT", {"id": "p1"}),
        change_frame("posts", 2, "DELETE", {"id": "p1"}),
    )
    good = batch_frame([inserted, deleted])
    bad = batch_frame([change_frame("posts", 3, "INSERT", {"id": "p1"})])
    bad.data["events"][0][1]["seq"] = -3
    kinds = []
    for name, data in ((good.name, good.data), (bad.name, bad.data)):
        if serializer == "json":
            decoded = _JSONPacket(encoded_packet="2" + json.dumps([name, data])).data
        else:
            decoded = _msgpack_packet()(
                encoded_packet=msgpack.packb({"type": 2, "data": [name, data], "nsp": "/"})
            ).data
        assert decoded[0] == BATCH
        kinds.append(type(decoded[1]))
    assert kinds == [CheckedBatch, dict]


def test_a_checked_batch_reaches_a_root_store_with_no_event_objects_made() -> None:
    """The router hands the table a ChangeFrame; nothing asks for its events, so none are made."""
    posts = Posts()
    root = RootStore(stores=[posts], transport=VirtualLink())
    root.setup_domain_event_handlers()
    frames: list[Any] = []
    root.events_named("post_update").subscribe(frames.append)
    batch = batch_frame([change_frame("posts", seq, "INSERT", {"id": f"p{seq}"}) for seq in (1, 2, 3)])
    root.router.on_frame(*decode_json(json.dumps([batch.name, batch.data])))
    assert posts.value.to_dict() == {f"p{seq}": {"id": f"p{seq}"} for seq in (1, 2, 3)} and root.cursor == 3
    (frame,) = frames
    assert type(frame) is ChangeFrame and frame._events is None


def test_the_checked_decoder_keeps_a_windows_out_and_refuses_a_bad_one_to_the_plain_path() -> None:
    """An INSERT's ``out`` (keys a window moves out) survives the checked decoder; a bad one goes plain."""
    entry = ["chat", {"seq": 5, "topic": "messages", "op": "INSERT", "record": {"id": 9}, "out": [{"id": 2}]}]
    name, batch = decode_json(json.dumps([BATCH, {"events": [entry]}]))
    assert name == BATCH and type(batch) is CheckedBatch
    assert batch.events[0][1]["out"] == [{"id": 2}]
    entry[1]["out"] = [2]  # type: ignore[index]
    assert type(decode_json(json.dumps([BATCH, {"events": [entry]}]))[1]) is dict


def test_a_snapshot_frame_decodes_as_json_loads_does_with_its_rows_sharing_their_keys() -> None:
    """orjson where installed and exact: the same values, and one string per column name, not per row."""
    rows = [
        {"id": f"p{i}", "title": "t", "n": i, "ts": i / 8, "big": 2**70 if i == 3 else None} for i in range(5)
    ]
    text = json.dumps(
        ["rxstore:snapshot", {"topic": "posts", "event": "e", "seq": 1, "records": rows, "more": True}]
    )
    name, payload = decode_json(text)
    assert [name, payload] == json.loads(text) and payload["records"][3]["big"] == 2**70
    plain = text.replace(str(2**70), "1")  # no integer beyond 64 bits: orjson decodes it
    first, second = decode_json(plain)[1]["records"][:2]
    if orjson is not None:
        assert all(a is b for a, b in zip(first, second, strict=True))
    odd = text.replace('"t"', "NaN", 1)  # not strict JSON: python-socketio's json, as before
    assert math.isnan(decode_json(odd)[1]["records"][0]["title"])
