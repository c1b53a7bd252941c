"""FrameLine: each kind of frame summarized on one line, as the router receives it."""

from __future__ import annotations

import json

from rxstore.devtools.frame_line import SUMMARY_CHARS, FrameLine
from rxstore.protocol.frames import CheckedBatch, decode_json


def summary(name: object, data: object) -> str:
    return FrameLine.of(1.0, name, data).summary


def test_a_decoded_batch_counts_its_changes_by_event_and_op_with_its_seqs() -> None:
    """The transport's CheckedBatch (decoded by msgspec) and a plain batch read alike."""
    events = [
        ["post_update", {"seq": 5, "topic": "posts", "op": "INSERT", "record": {"id": "a"}, "old": None}],
        ["post_update", {"seq": 6, "topic": "posts", "op": "DELETE", "record": None, "old": {"id": "a"}}],
        ["chat", {"seq": 7, "topic": "messages", "op": "INSERT", "record": {"id": 1}, "old": None}],
    ]
    name, checked = decode_json(json.dumps(["rxstore:batch", {"events": events}]))
    assert type(checked) is CheckedBatch
    expected = "3 changes, seq 5-7: post_update INSERT x1, post_update DELETE x1, chat INSERT x1"
    assert summary(name, checked) == expected == summary(name, {"events": events})
    assert summary(name, {"events": events[1:2]}) == 'post_update DELETE seq 6 {"id":"a"}'


def test_control_frames_say_what_they_carry() -> None:
    snapshot = {"topic": "posts", "event": "post_update", "seq": 9, "records": [{}, {}], "more": True}
    assert summary("rxstore:snapshot", snapshot) == "post_update: 2 rows at seq 9 (more follows)"
    page = {"topic": "posts", "event": "w1", "seq": 9, "records": [{}]}
    assert summary("rxstore:page", page) == "w1: 1 rows at seq 9"
    live = {"seq": 9, "epoch": "0123456789abcdef"}
    assert summary("rxstore:live", live) == "live at seq 9, epoch 01234567"
    reset = {"reason": "cursor_expired", "cursor": 1, "horizon": 40}
    assert summary("rxstore:reset", reset) == "reset: cursor_expired (horizon 40)"
    assert summary("rxstore:closing", {"reason": "token_expired"}) == '{"reason":"token_expired"}'


def test_a_change_shows_its_row_and_anything_else_its_json_clipped_to_one_line() -> None:
    change = {"seq": 3, "op": "UPDATE", "record": {"id": "p1", "title": "x"}, "old": {"id": "p1"}}
    assert summary("post_update", change) == 'UPDATE seq 3 {"id":"p1","title":"x"}'
    assert summary("post_liked", [1, 2]) == "[1,2]"
    long = summary("post_liked", {"text": "x" * 1000})
    assert len(long) == SUMMARY_CHARS and long.endswith("…")
    assert summary("post_liked", {1, 2}) == '"{1, 2}"'  # not JSON: its repr
