"""rxstore.client.snapshots.chunks: a snapshot in chunks is shown whole, once, and only then."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from rxstore import EventKind, ProtocolError, TableStore
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


@attrs.frozen
class Post:
    id: int
    title: str = ""


class Posts(TableStore[Post]):
    table = "posts"
    record_type = Post


class RawPosts(TableStore[Any]):
    table = "posts"


def test_the_maps_of_the_stores_that_follow_a_snapshot_are_built_as_its_chunks_arrive() -> None:
    """The whole snapshot carries each store's map, and the store takes it: no build after the last chunk."""
    posts, raw, other = Posts(), RawPosts(), Posts(event="other_posts")
    chunks = SnapshotChunks([posts, raw, other])
    chunks.whole(chunk(7, [1, 2], more=True))
    chunks.whole(chunk(7, [3, 1], more=True))  # a key twice: the later row wins, as in one frame
    event = chunks.whole(chunk(7, [4], more=False))
    assert event is not None and [row["id"] for row in event.data.records] == [1, 2, 3, 1, 4]
    maps = event.data.records.maps
    assert set(maps) == {("id", Post), ("id", None)}  # not the store of another subscription
    assert dict(maps[("id", Post)]) == {i: Post(i) for i in (1, 2, 3, 4)}
    posts.apply([event])
    raw.apply([event])
    assert posts.value.rows is maps[("id", Post)] and raw.value.rows is maps[("id", None)]
    assert posts.value.seq == 7 and dict(raw.value.rows) == {i: {"id": i} for i in (1, 2, 3, 4)}


def test_a_chunk_whose_row_does_not_fit_leaves_the_store_to_build_its_map_and_report_the_row() -> None:
    """A bad row drops the chunked build of that record type; the store builds its map, reporting the row."""
    posts, raw = Posts(), RawPosts()
    errors: list[Any] = []
    posts.errors.subscribe(errors.append)
    chunks = SnapshotChunks([posts, raw])
    chunks.whole(chunk(7, [1], more=True))
    bad = {**chunk(7, [2], more=True), "records": [{"id": 2}, {"id": 3, "title": 5}]}
    chunks.whole(bad)
    event = chunks.whole(chunk(7, [4], more=False))
    assert event is not None and set(event.data.records.maps) == {("id", None)}
    posts.apply([event])
    assert dict(posts.value.rows) == {1: Post(1), 2: Post(2), 4: Post(4)} and len(errors) == 1


def test_no_store_sees_a_snapshot_before_its_last_chunk() -> None:
    """The maps are built ahead, never shown: the store's state is unchanged until the snapshot is whole."""
    posts = Posts()
    states: list[Any] = []
    posts.state.subscribe(states.append)
    chunks = SnapshotChunks([posts])
    for ids in ([1], [2]):
        assert chunks.whole(chunk(7, ids, more=True)) is None
    assert len(states) == 1 and len(posts.value) == 0
