"""rxstore.client.recorder.Recording: the JSON lines file, read back as written; clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from rxstore import RecordingError
from rxstore.client.recorder import Recording
from rxstore.testing import marbles, message_frame
from tests.client.recorder.stores import LikeStore


def recorded() -> Recording:
    with marbles() as m:
        root = m.root(
            [LikeStore()], server="-l-l", values={"l": message_frame("post_liked", {"from": "ann"})}
        )
        recorder = root.record()
        m.run()
    return recorder.stop()


def test_a_saved_recording_loads_back_equal(tmp_path: Path) -> None:
    """save then load gives the same stores, entries and end; the file is JSON lines, header first."""
    recording = recorded()
    path = recording.save(tmp_path / "session.jsonl")
    assert Recording.load(path) == recording
    first = path.read_text().splitlines()[0]
    assert first.startswith('{"rxstore":"recording","version":1,')
    assert path.read_text().splitlines()[-1].startswith('{"end":"stopped"')


def test_a_store_timeline_steps_back_and_forth_over_its_recorded_states() -> None:
    """``timeline(store)``: at(i), next(), prev() over the states in the order published."""
    timeline = recorded().timeline("LikeStore")
    assert [s.value["count"] for s in timeline] == [0, 1, 2]
    assert timeline.next().value["count"] == 1 and timeline.next().value["count"] == 2
    assert timeline.prev().after == 1 and timeline.at(0).initial
    with pytest.raises(KeyError, match="no store 'nope'"):
        recorded().timeline("nope")


@pytest.mark.parametrize(
    ("text", "reason", "says"),
    [
        ("hello\n", "not_a_recording", "line 1 is not JSON"),
        ('{"a": 1}\n', "not_a_recording", "not an rxstore recording"),
        ('{"rxstore": "recording", "version": 9}\n', "version", "recording format 9; this rxstore reads 1"),
        ('{"rxstore": "recording", "version": 1}\n{"frame": 0}\n', "not_a_recording", "lacks"),
    ],
)
def test_a_file_that_is_not_a_recording_is_refused_with_its_reason(text: str, reason: str, says: str) -> None:
    """Garbage, another file, another version, a broken line: a RecordingError naming the source."""
    with pytest.raises(RecordingError, match=says) as refused:
        Recording.loads(text, source="x.jsonl")
    assert refused.value.reason == reason and str(refused.value).startswith("x.jsonl: ")
