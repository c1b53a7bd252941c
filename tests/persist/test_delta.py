"""The changes gathered between two writes: each row's last JSON text, by key, and what is cleared."""

from __future__ import annotations

import json

import pytest

from rxstore import Event, EventKind
from rxstore.persist.delta import Delta
from rxstore.protocol.errors import PersistError
from rxstore.protocol.events import Snapshot
from rxstore.testing import change, snapshot


def test_a_row_changed_many_times_is_kept_once_as_its_last_text() -> None:
    """Ten updates of one row, an insert and a delete: three keys, the last text of each, and ten
    plus two changes counted; ``take`` hands them over and starts afresh."""
    delta = Delta({"post_update": "id"})
    delta.add([change("posts", i, "UPDATE", {"id": "p1", "n": i}, old={"id": "p1"}) for i in range(1, 11)])
    delta.add([change("posts", 11, "INSERT", {"id": "p2"}), change("posts", 12, "DELETE", {"id": "p3"})])
    cleared, rows, changes = delta.take()
    assert not cleared and changes == 12
    assert {k: v and json.loads(v) for k, v in rows["post_update"].items()} == {
        "p1": {"id": "p1", "n": 10}, "p2": {"id": "p2"}, "p3": None,
    }  # fmt: skip
    assert delta.take() == (frozenset(), {}, 0)


def test_an_update_that_moves_a_row_to_another_key_deletes_the_old_key() -> None:
    delta = Delta({"post_update": "id"})
    delta.add([change("posts", 1, "UPDATE", {"id": "p2", "t": "x"}, old={"id": "p1", "t": "x"})])
    assert dict(delta.rows["post_update"]) == {"p1": None, "p2": '{"id":"p2","t":"x"}'}


def test_a_snapshot_replaces_what_was_gathered_for_its_table() -> None:
    delta = Delta({"post_update": "id"})
    delta.add([change("posts", 1, "INSERT", {"id": "p9"})])
    delta.add([snapshot("posts", 5, [{"id": "p1"}, {"id": "p2"}])])
    cleared, rows, _ = delta.take()
    assert cleared == {"post_update"} and sorted(rows["post_update"]) == ["p1", "p2"]


def test_a_row_that_is_not_json_is_refused_not_skipped() -> None:
    """A row built by hand holding a value that is not JSON: ``PersistError`` (the root then stops
    writing, with one warning), never a row silently left out of the file."""
    delta = Delta({"post_update": "id"})
    with pytest.raises(PersistError, match="not JSON") as refused:
        delta.add([change("posts", 1, "INSERT", {"id": "p1", "when": object()})])
    assert refused.value.reason == "write_failed"


def test_a_page_adds_its_rows_and_an_inserts_out_deletes_the_rows_it_moved_out() -> None:
    """A window's rows as the store holds them: ``store.more(n)``'s page adds rows without clearing
    the table, and an INSERT's ``out`` takes the rows it pushed past the window's end off the file."""
    delta = Delta({"post_update": "id"})
    delta.add([snapshot("posts", 5, [{"id": "p1"}, {"id": "p2"}])])
    delta.add([Event("post_update", Snapshot("posts", 5, ({"id": "p3"},)), EventKind.PAGE, 5)])
    inserted = change("posts", 6, "INSERT", {"id": "p0"})
    delta.add([Event(inserted.name, {**inserted.data, "out": [{"id": "p3"}]}, EventKind.CHANGE, 6)])
    cleared, rows, _ = delta.take()
    assert cleared == {"post_update"}
    assert {k: v and json.loads(v) for k, v in rows["post_update"].items()} == {
        "p1": {"id": "p1"}, "p2": {"id": "p2"}, "p3": None, "p0": {"id": "p0"},
    }  # fmt: skip
