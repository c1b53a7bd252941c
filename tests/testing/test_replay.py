"""rxstore.testing.Replay: a recorded session through new stores in virtual time, every state checked."""

from __future__ import annotations

from typing import Any

import pytest

from rxstore import Backoff, Event, RecordingError
from rxstore.client.recorder import LinkEntry, Recording
from rxstore.protocol.errors import ReplayMismatch
from rxstore.testing import Replay, batch_frame, change_frame, marbles, message_frame, snapshot_frame
from tests.client.recorder.stores import Likes, LikeStore, PostStore

ROW = {"id": "p1", "title": "a", "body": "", "author": "ann"}
VALUES: dict[str, Any] = {
    "l": message_frame("post_liked", {"from": "bob"}),
    "s": snapshot_frame("posts", 1, [ROW]),
    "b": batch_frame(
        [
            change_frame("posts", 2, "UPDATE", {**ROW, "title": "b"}),
            change_frame("posts", 3, "INSERT", {**ROW, "id": "p2"}),
        ]
    ),
    "d": change_frame("posts", 4, "DELETE", ROW),
}


def session(server: str = "-l-s-l-b-d", **record: Any) -> Recording:
    """A session of a LikeStore and a PostStore, recorded from before the connection."""
    with marbles() as m:
        root = m.root([LikeStore(), PostStore()], server=server, values=VALUES)
        recorder = root.record(**record)
        m.run()
    return recorder.stop()


class CountsTwice(LikeStore):
    """A broken reducer: two likes a message."""

    def reduce(self, state: Likes, event: Event) -> Likes:
        return Likes(state.count + 2, state.last)


class Deaf(LikeStore):
    """Folds nothing: publishes no state after the first."""

    accepts = ("nothing",)


def test_the_recorded_states_replay_through_new_stores() -> None:
    """Same classes, same frames at the same times: each store publishes the recorded states."""
    recording = session()
    replay = Replay(recording, [LikeStore(), PostStore()])
    replay.check()
    assert [state.count for _, state in replay.states("LikeStore")] == [0, 1, 2]
    assert [frame for frame, _ in replay.states("PostStore")] == [None, 2, 4, 5]
    assert replay.errors == []


def test_a_broken_reducer_fails_naming_the_first_differing_state() -> None:
    """The mismatch names the store, the state's number, the frame that caused it and the field."""
    with pytest.raises(ReplayMismatch) as failed:
        Replay(session(), [CountsTwice(), PostStore()]).check()
    mismatch = failed.value
    assert (mismatch.store, mismatch.state, mismatch.frame) == ("LikeStore", 1, 1)
    assert str(mismatch).startswith("CountsTwice 'LikeStore': state 1 (after frame 1, post_liked at ")
    assert str(mismatch).endswith(" s) differs from the recording: state.count: recorded 1, replayed 2")
    assert isinstance(mismatch, AssertionError)


def test_a_state_the_replay_does_not_publish_is_named() -> None:
    """One state fewer: the first missing one is named, as recorded but not published."""
    with pytest.raises(
        ReplayMismatch, match=r"state 1 \(after frame 1, post_liked .*\) recorded, but the replay"
    ):
        Replay(session(), [Deaf(), PostStore()]).check()


def test_a_table_store_row_that_differs_is_named_by_its_key() -> None:
    """A TableState compares by rows and seq: the differing row is named by its primary key."""

    class Renamed(PostStore):
        def to_record(self, row: Any) -> Any:
            return super().to_record({**row, "title": row["title"].upper()})

    with pytest.raises(
        ReplayMismatch, match=r'state 1 .* state.\$table.rows."p1".title: recorded "a", replayed "A"'
    ):
        Replay(session(), [LikeStore(), Renamed()]).check()


def test_a_recording_cut_at_a_bound_checks_what_it_kept() -> None:
    """Stopped at max_frames: the states it kept are checked; later ones are not asked for."""
    recording = session(max_frames=3)
    assert recording.end == "max_frames"
    Replay(recording, [LikeStore(), PostStore()]).check()
    with pytest.raises(ReplayMismatch):
        Replay(recording, [CountsTwice(), PostStore()]).check()


def test_a_recording_begun_mid_session_says_so() -> None:
    """Stores holding state when recording began: state 0 differs, and the message says why."""
    with marbles() as m:
        likes = LikeStore()
        root = m.root([likes, PostStore()], server="-l-l", values=VALUES)
        m.run(until=2)
        recorder = root.record()
        m.run()
    with pytest.raises(ReplayMismatch, match=r"state 0 .* begin it before connecting"):
        Replay(recorder.stop(), [LikeStore(), PostStore()]).check()


def test_what_cannot_be_replayed_is_refused_with_its_reason() -> None:
    """A state not comparable by value, a state published outside any frame, a missing store."""
    with marbles() as m:
        likes = LikeStore()
        root = m.root([likes], server="-l", values=VALUES)
        recorder = root.record()
        m.at(2, lambda: likes.restore(Likes(7, object())))  # type: ignore[arg-type]
        m.run()
    recording = recorder.stop()
    with pytest.raises(
        RecordingError, match=r"state 2 cannot be replayed: state.last is a builtins.object"
    ) as bad:
        Replay(recording, [LikeStore()])
    assert bad.value.reason == "unreplayable"
    with marbles() as m:
        likes = LikeStore()
        root = m.root([likes], server="-l", values=VALUES)
        recorder = root.record()
        m.at(2, likes.reset)
        m.run()
    with pytest.raises(RecordingError, match="state 2 was published outside any frame") as local:
        Replay(recorder.stop(), [LikeStore()])
    assert local.value.reason == "local_state"
    with pytest.raises(RecordingError, match=r"the recording has 2 store\(s\), \['LikeStore', 'PostStore'\]"):
        Replay(session(), [LikeStore()])


def test_seek_puts_every_store_as_it_was_after_a_frame() -> None:
    """Time travel: seek(i) restores each store's state after frame i; seek(None), the start."""
    likes, posts = LikeStore(), PostStore()
    replay = Replay(session(), [likes, posts]).run()
    assert likes.value.count == 2 and len(posts.value) == 1 and posts.value.seq == 4
    replay.seek(4)
    assert likes.value.count == 2 and sorted(posts.value) == ["p1", "p2"] and posts.value["p1"].title == "b"
    replay.seek(2)
    assert likes.value.count == 1 and posts.value["p1"].title == "a"
    replay.seek(None)
    assert likes.value == Likes() and len(posts.value) == 0


def test_a_store_timeline_moves_the_store_back_and_forth() -> None:
    """timeline(store): next(), prev() and at(i) put the store in that state; its subscribers see it."""
    likes = LikeStore()
    replay = Replay(session(), [likes, PostStore()])
    seen: list[int] = []
    timeline = replay.timeline("LikeStore")
    likes.state.subscribe(lambda state: seen.append(state.count))
    assert timeline.at(-1).count == 2 and likes.value.count == 2
    assert timeline.prev().count == 1 and likes.value.count == 1
    assert timeline.prev().count == 0 and likes.value == Likes()
    with pytest.raises(IndexError, match="at the first step"):
        timeline.prev()
    assert timeline.next().count == 1 and seen[-4:] == [2, 1, 0, 1]


def test_a_session_with_a_dropped_link_replays() -> None:
    """Down and up again: the link entries are kept, the missed changes come as a batch, the states check."""
    with marbles() as m:
        root = m.root(
            [LikeStore(), PostStore()],
            server="-s--u----d",
            link="c--x--c",
            values={**VALUES, "u": change_frame("posts", 2, "UPDATE", {**ROW, "title": "b"})},
            backoff=Backoff(initial=0.5, jitter=0.0),
        )
        recorder = root.record()
        m.run(until=12)
    recording = recorder.stop()
    assert [e.status for e in recording.entries if isinstance(e, LinkEntry)] == ["up", "lost", "up"]
    names = ["rxstore:live", "rxstore:snapshot", "rxstore:batch", "rxstore:live", "post_update"]
    assert [f.name for f in recording.frames] == names
    replay = Replay(recording, [LikeStore(), PostStore()])
    replay.check()
    seqs = [(frame, state.seq) for frame, state in replay.states("PostStore")]
    assert seqs == [(None, None), (1, 1), (2, 2), (4, 4)]
