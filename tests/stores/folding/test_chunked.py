"""rxstore.stores.folding.chunked: a map built chunk by chunk is the map the store builds from the whole."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from rxstore import Event, EventKind
from rxstore.protocol.events import Snapshot
from rxstore.stores.folding.built_rows import BuiltRows
from rxstore.stores.folding.chunked import ChunkedBuild
from rxstore.stores.folding.fold import rows_of
from rxstore.stores.folding.fold_spec import TableFold


@attrs.frozen
class Post:
    id: int
    title: str = ""


def fold(record_type: type[Any] | None, *, own: bool = True) -> TableFold[Any]:
    to_record: Any = dict if record_type is None else (lambda row: record_type(**row))
    return TableFold("Posts", "posts", "id", record_type, own, to_record, lambda e, x: None, print)


def built(chunks: list[list[dict[str, Any]]], record_type: type[Any] | None) -> BuiltRows:
    build = ChunkedBuild([("id", record_type)])
    for rows in chunks:
        build.add(rows)
    return build.rows_of([row for rows in chunks for row in rows])


def event_of(records: tuple[Any, ...]) -> Event:
    return Event("post_update", Snapshot("posts", 3, records), EventKind.SNAPSHOT, 3)


chunk_lists = st.lists(
    st.lists(st.builds(lambda i, t: {"id": i, "title": t}, st.integers(0, 20), st.sampled_from("abc"))),
    max_size=6,
)


@given(chunk_lists, st.sampled_from([None, Post]))
def test_the_chunked_map_equals_the_map_of_the_whole_snapshot(
    chunks: list[list[dict[str, Any]]], record_type: type[Any] | None
) -> None:
    """Whatever the chunks (a key again in a later chunk), the map is the one built from all rows at once."""
    rows = built(chunks, record_type)
    spec = fold(record_type)
    assert rows.maps[("id", record_type)] == rows_of(spec, Snapshot("posts", 3, tuple(rows)), event_of(()))


def test_the_store_takes_the_map_of_its_own_key_and_record_type_only() -> None:
    """A fold whose rows go through its own ``to_record``, or of another type, builds its map itself."""
    rows = built([[{"id": 1}], [{"id": 2}]], Post)
    snapshot = Snapshot("posts", 3, rows)
    assert rows_of(fold(Post), snapshot, event_of(rows)) is rows.maps[("id", Post)]
    assert rows_of(fold(Post, own=False), snapshot, event_of(rows)) is not rows.maps[("id", Post)]
    assert dict(rows_of(fold(None), snapshot, event_of(rows))) == {1: {"id": 1}, 2: {"id": 2}}


def test_a_chunk_that_does_not_fit_drops_the_build_of_that_spec_only() -> None:
    """A row without its key, or one its record type refuses, leaves that spec to the store's own build."""
    build = ChunkedBuild([("id", None), ("id", Post)])
    build.add([{"id": 1, "title": 2}])  # no Post: title is not a str
    build.add([{"id": 2}])
    assert set(build.rows_of([]).maps) == {("id", None)}
    keyless = ChunkedBuild([("id", None)])
    keyless.add([{"title": "no key"}])
    assert keyless.rows_of([]).maps == {} and keyless.rows == 1


def test_a_copy_or_a_pickle_of_the_rows_is_the_plain_rows() -> None:
    """An app that copies (or pickles) a snapshot event gets its rows: the maps are not part of the value."""
    rows = built([[{"id": 1}], [{"id": 2}]], None)
    for again in (copy.copy(rows), copy.deepcopy(rows), pickle.loads(pickle.dumps(rows))):
        assert type(again) is tuple and again == ({"id": 1}, {"id": 2})
