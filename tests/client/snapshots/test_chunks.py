"""rxstore.client.snapshots.chunks: a snapshot in chunks is shown whole, once, and only then."""

from __future__ import annotations

from typing import Any

import pytest

from rxstore import EventKind, ProtocolError
from rxstore.client.snapshots.chunks import SnapshotChunks


def chunk(seq: int, ids: list[int], *, more: bool, event: str = "post_update") -> dict[str, Any]:
    return {"topic": "posts", "event": event, "seq": seq, "records": [{"id": i} for i in ids], "more": more}


def test_chunks_are_held_until_the_last_one_then_shown_whole_in_order() -> None:
    chunks = SnapshotChunks()
    assert chunks.whole(chunk(7, [1, 2], more=True)) is None
    assert chunks.whole(chunk(7, [3], more=True)) is None
    event = chunks.whole(chunk(7, [4], more=False))
    assert event is not None and event.kind is EventKind.SNAPSHOT and event.seq == 7
    assert [row["id"] for row in event.data.records] == [1, 2, 3, 4]
    alone = chunks.whole(chunk(7, [5], more=False))  # nothing left held
    assert alone is not None and alone.data.records == ({"id": 5},)


def test_a_new_snapshot_at_another_seq_voids_the_chunks_held() -> None:
    """A reset between chunks starts a new snapshot: the old chunks never reach a store."""
    chunks = SnapshotChunks()
    chunks.whole(chunk(7, [1], more=True))
    event = chunks.whole(chunk(9, [2], more=False))
    assert event is not None and [row["id"] for row in event.data.records] == [2]


def test_chunks_are_held_per_subscription_id() -> None:
    chunks = SnapshotChunks()
    chunks.whole(chunk(7, [1], more=True, event="a"))
    chunks.whole(chunk(7, [2], more=True, event="b"))
    a = chunks.whole(chunk(7, [3], more=False, event="a"))
    assert a is not None and [row["id"] for row in a.data.records] == [1, 3]


def test_clear_drops_what_a_lost_link_cut_short() -> None:
    chunks = SnapshotChunks()
    chunks.whole(chunk(7, [1], more=True))
    chunks.clear()
    event = chunks.whole(chunk(7, [2], more=False))
    assert event is not None and [row["id"] for row in event.data.records] == [2]


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("nope", "must be an object"),
        ({"topic": "posts", "seq": 1, "records": []}, "'topic' and 'event'"),
        ({"topic": "posts", "event": "e", "seq": -1, "records": []}, "non-negative int 'seq'"),
        ({"topic": "posts", "event": "e", "seq": 1, "records": [1]}, "list of objects"),
        (
            {"topic": "posts", "event": "e", "seq": 1, "records": [], "more": "yes"},
            "'more' must be a boolean",
        ),
    ],
)
def test_a_malformed_snapshot_frame_is_refused_naming_what_is_wrong(frame: Any, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        SnapshotChunks().whole(frame)
