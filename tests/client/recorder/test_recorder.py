"""rxstore.client.recorder.Recorder: every frame as delivered, every state with its frame, bounded."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rxstore.client.recorder import FrameEntry, LinkEntry, Recorder, RecordLimits, StateEntry
from rxstore.testing import change_frame, marbles, message_frame, snapshot_frame
from tests.client.recorder.stores import Likes, LikeStore, PostStore

ROW = {"id": "p1", "title": "a", "body": "", "author": "ann"}
VALUES: dict[str, Any] = {
    "l": message_frame("post_liked", {"from": "bob", "topic": "posts", "data": None}),
    "s": snapshot_frame("posts", 1, [ROW]),
    "u": change_frame("posts", 2, "UPDATE", {**ROW, "title": "b"}),
    "x": message_frame("unrelated", {"n": 1}),
}


def test_frames_are_kept_as_delivered_and_states_name_the_frame_that_caused_them() -> None:
    """Each frame (event name, payload), in order; each store's states, the first as held at the start."""
    with marbles() as m:
        likes, posts = LikeStore(), PostStore()
        root = m.root([likes, posts], server="-l-s-x-u", values=VALUES)
        with root.record() as recorder:
            m.run()
        recording = recorder.recording
    frames = recording.frames
    assert [f.name for f in frames] == [
        "rxstore:live",
        "post_liked",
        "rxstore:snapshot",
        "unrelated",
        "post_update",
    ]
    assert frames[4].data == VALUES["u"].data and [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.time for f in frames] == sorted(f.time for f in frames)
    like_states = recording.states("LikeStore")
    assert [(s.after, s.initial, s.value["count"]) for s in like_states] == [(None, True, 0), (1, False, 1)]
    assert [(s.after, s.value["$table"]["seq"]) for s in recording.states("PostStore")] == [
        (None, None),
        (2, 1),
        (4, 2),
    ]
    assert isinstance(recording.entries[2], LinkEntry) and recording.entries[2].status == "up"
    assert recording.end == "stopped" and root.router.recorder is None


def test_a_stopped_recording_keeps_nothing_more_and_the_stores_go_on() -> None:
    """After stop (or the with block), frames reach the stores but not the recording."""
    with marbles() as m:
        likes = LikeStore()
        root = m.root([likes], server="-l-l-l", values=VALUES)
        recorder = root.record()
        m.at(2, recorder.stop)
        m.run()
    frames = recorder.recording.frames
    assert [f.name for f in frames] == ["rxstore:live", "post_liked"]
    assert likes.value == Likes(3, "bob")


@pytest.mark.parametrize(
    ("bound", "value"),
    [("max_frames", 3), ("max_bytes", 1500)],
)
def test_a_bound_stops_the_recording_once_and_it_never_grows_past_it(
    bound: str, value: int, caplog: pytest.LogCaptureFixture
) -> None:
    """At its bound the recording ends (named), one warning says so, the stores still get every frame."""
    with marbles() as m, caplog.at_level(logging.WARNING, logger="rxstore.recorder"):
        likes = LikeStore()
        root = m.root([likes], server="-" + "l" * 20, values=VALUES)
        recorder = root.record(max_frames=value) if bound == "max_frames" else root.record(max_bytes=value)
        m.run()
    frames, size = recorder.size
    assert recorder.end == bound and root.router.recorder is None
    assert (frames <= value) if bound == "max_frames" else (size <= value)
    assert len(recorder.recording.dumps().encode()) <= size + 100  # the end line only
    assert len(caplog.records) == 1 and bound in caplog.records[0].getMessage()
    assert likes.value.count == 20


def test_max_seconds_stops_at_the_first_entry_past_it() -> None:
    """Time is the recorder's clock (monotonic): the first frame or state past the bound ends it."""
    now = [0.0]
    with marbles() as m:
        likes = LikeStore()
        root = m.root([likes], server="-l-l-l", values=VALUES)
        recorder = Recorder(
            root.router,
            root.stores,
            root.connection,
            limits=RecordLimits(max_seconds=10),
            clock=lambda: now[0],
        )
        m.at(2, lambda: now.__setitem__(0, 11.0))
        m.run()
    assert recorder.end == "max_seconds"
    assert [f.name for f in recorder.recording.frames] == ["rxstore:live", "post_liked"]


def test_only_the_chosen_stores_states_are_recorded() -> None:
    """``stores=`` picks the states recorded; every frame is recorded all the same."""
    with marbles() as m:
        likes, posts = LikeStore(), PostStore()
        root = m.root([likes, posts], server="-l-s", values=VALUES)
        recorder = root.record(stores=[posts])
        m.run()
    recording = recorder.stop()
    assert [s.name for s in recording.stores] == ["PostStore"]
    assert {type(e) for e in recording.entries} == {FrameEntry, StateEntry, LinkEntry}
    assert all(e.store == "PostStore" for e in recording.entries if isinstance(e, StateEntry))


def test_one_recording_at_a_time() -> None:
    """A second ``record()`` while one goes on is refused; after stop, another may begin."""
    with marbles() as m:
        root = m.root([LikeStore()])
        first = root.record()
        with pytest.raises(RuntimeError, match="recording already"):
            root.record()
        first.stop()
        root.record().stop()


def test_stores_of_one_name_are_told_apart() -> None:
    """Two stores named alike are recorded as ``name`` and ``name#2``, with their class by module path."""
    with marbles() as m:
        root = m.root([LikeStore(), LikeStore()])
        recording = root.record().stop()
    assert [(s.name, s.cls) for s in recording.stores] == [
        ("LikeStore", "tests.client.recorder.stores:LikeStore"),
        ("LikeStore#2", "tests.client.recorder.stores:LikeStore"),
    ]


def test_a_batch_the_transport_decoded_is_kept_as_json_and_replays() -> None:
    """A CheckedBatch (the socket transport's decoding of rxstore:batch) is kept as {"events": [...]}."""
    from rxstore.protocol.frames import CheckedBatch
    from rxstore.testing import Replay

    changes = [
        change_frame("posts", 1, "INSERT", ROW),
        change_frame("posts", 2, "UPDATE", {**ROW, "title": "b"}),
    ]
    with marbles() as m:
        posts = PostStore()
        root = m.root([posts])
        recorder = root.record()
        decoded = CheckedBatch(events=[(f.name, f.data) for f in changes])
        m.at(1, lambda: root.router.on_frame("rxstore:batch", decoded))
        m.run()
    recording = recorder.stop()
    assert recording.frames[-1].data == {"events": [[f.name, f.data] for f in changes]}
    assert posts.value["p1"].title == "b"
    Replay(recording, [PostStore()]).check()
