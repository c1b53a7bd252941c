"""rxstore.stores.folding.fold: both forms agree, changes around snapshots and resets, failures isolated."""

from __future__ import annotations

import gc
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rxstore import Event, EventKind, RxStoreError
from rxstore.protocol.events import RESET, Snapshot
from rxstore.protocol.frames import ChangeFrame
from rxstore.stores.folding.fold import reduce_envelopes, reduce_events
from rxstore.stores.folding.fold_spec import TableFold
from rxstore.stores.state import TableState


def spec(failures: list[Any] | None = None) -> TableFold[dict[str, Any]]:
    sink = failures if failures is not None else []
    return TableFold(
        "Posts",
        "posts",
        "id",
        None,
        True,
        dict,
        lambda event, exc: sink.append((event.seq, exc)),
        sink.append,
    )


def envelope(seq: int, op: str, key: Any, title: str = "t", old_key: Any = None) -> dict[str, Any]:
    row = {"id": key, "title": title}
    if op == "DELETE":
        return {"seq": seq, "topic": "posts", "op": op, "record": None, "old": {"id": key}}
    old = {"id": old_key} if old_key is not None else None
    return {"seq": seq, "topic": "posts", "op": op, "record": row, "old": old}


def change(env: dict[str, Any]) -> Event:
    return Event("post_update", env, EventKind.CHANGE, env["seq"])


ops = st.sampled_from(["INSERT", "UPDATE", "DELETE"])
changes = st.lists(st.tuples(ops, st.integers(0, 5), st.integers(0, 5) | st.none()), max_size=30)


@given(changes, st.integers(0, 10))
def test_the_envelope_fold_and_the_event_fold_agree(
    plan: list[tuple[str, int, int | None]], start: int
) -> None:
    """Whatever the changes (moves of keys, deletes, seqs at or below the state's), both forms end equal."""
    envelopes = [envelope(start + i - 3, op, key, f"v{i}", old) for i, (op, key, old) in enumerate(plan)]
    initial: TableState[Any] = TableState()
    by_frame = (
        reduce_envelopes(spec(), initial, ChangeFrame("post_update", envelopes)) if envelopes else initial
    )
    by_events = reduce_events(spec(), initial, [change(e) for e in envelopes])
    assert dict(by_frame.rows) == dict(by_events.rows) and by_frame.seq == by_events.seq


def test_changes_around_a_snapshot_and_a_reset_apply_in_order() -> None:
    snapshot = Event("post_update", Snapshot("posts", 10, ({"id": 1, "title": "s"},)), EventKind.SNAPSHOT, 10)
    events = [
        change(envelope(3, "INSERT", 9)),
        snapshot,
        change(envelope(9, "INSERT", 8)),  # at or below the snapshot: already in it
        change(envelope(11, "INSERT", 2)),
        Event(RESET, {}, EventKind.RESET),
        change(envelope(1, "INSERT", 5)),
    ]
    after = reduce_events(spec(), TableState(), events)
    assert dict(after.rows) == {5: {"id": 5, "title": "t"}} and after.seq == 1
    before_reset = reduce_events(spec(), TableState(), events[:4])
    assert set(before_reset.rows) == {1, 2} and before_reset.seq == 11


def test_a_frame_of_only_old_changes_returns_the_same_state_object() -> None:
    """A no-op notifies nobody: the state is the very same object."""
    state = reduce_events(spec(), TableState(), [change(envelope(5, "INSERT", 1))])
    assert reduce_events(spec(), state, [change(envelope(4, "INSERT", 2))]) is state
    assert reduce_envelopes(spec(), state, ChangeFrame("post_update", [envelope(5, "INSERT", 3)])) is state


def test_a_failing_change_is_reported_and_the_others_apply() -> None:
    failures: list[Any] = []
    bad = {"seq": 2, "topic": "comments", "op": "INSERT", "record": {"id": 7}, "old": None}
    frame = ChangeFrame("post_update", [envelope(1, "INSERT", 1), bad, envelope(3, "INSERT", [])])
    after = reduce_envelopes(spec(failures), TableState(), frame)
    assert dict(after.rows) == {1: {"id": 1, "title": "t"}} and after.seq == 1
    assert [seq for seq, _ in failures] == [2, 3]
    assert "not a 'posts' change" in str(failures[0][1])


def test_a_message_under_the_tables_name_is_reported_not_applied() -> None:
    failures: list[Any] = []
    after = reduce_events(spec(failures), TableState(), [Event("post_update", {"hello": 1})])
    assert len(after.rows) == 0 and len(failures) == 1 and isinstance(failures[0], RxStoreError)


def snapshot_event(seq: int, rows: list[Any]) -> Event:
    return Event("post_update", Snapshot("posts", seq, tuple(rows)), EventKind.SNAPSHOT, seq)


def test_a_snapshot_row_without_its_key_is_reported_and_the_other_rows_are_kept() -> None:
    """The snapshot goes into the map in one pass; a bad row makes it go a row at a time, reporting it."""
    failures: list[Any] = []
    good = [{"id": i, "title": str(i)} for i in range(5)]
    state = reduce_events(
        spec(failures), TableState(), [snapshot_event(9, [*good[:2], {"title": "?"}, *good[2:]])]
    )
    assert state.to_dict() == {row["id"]: row for row in good} and state.seq == 9
    assert [seq for seq, _ in failures] == [9]
    again = reduce_events(spec(failures), state, [snapshot_event(10, [*good, {"id": ["unhashable"]}])])
    assert len(again) == 5 and [seq for seq, _ in failures] == [9, 10]


def test_the_garbage_collector_is_paused_while_a_snapshot_is_built_and_restored_as_it_was() -> None:
    """The build of a big snapshot's map spent most of its time in the cyclic collector (issue 27)."""
    during: list[bool] = []

    def to_record(row: Any) -> Any:
        during.append(gc.isenabled())
        return row

    fold = TableFold("Posts", "posts", "id", None, False, to_record, lambda e, x: None, print)
    enabled = gc.isenabled()
    try:
        for app_enabled in (True, False):
            (gc.enable if app_enabled else gc.disable)()
            state = reduce_events(fold, TableState(), [snapshot_event(1, [{"id": 1}, {"id": 2}])])
            assert len(state) == 2 and during == [False, False]
            assert gc.isenabled() is app_enabled
            during.clear()
    finally:
        (gc.enable if enabled else gc.disable)()
