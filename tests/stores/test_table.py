"""TableStore: snapshot, changes, exactly-once by seq, validation, ordering."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from rxstore import DomainStore, EventKind, RxStoreError, TableState, TableStore, ValidationError
from rxstore.protocol.events import Event
from rxstore.testing import (
    batch_frame,
    change,
    change_frame,
    marbles,
    message_frame,
    snapshot,
    snapshot_frame,
)
from tests.logs import Counted, debug_lines, debug_records_made


@attrs.frozen
class Post:
    id: str
    title: str
    likes: int = 0


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


def rows(store: PostStore) -> dict[str, Post]:
    return store.value.to_dict()


def test_table_store_routes_on_the_seed_event_name():
    assert PostStore.event == "post_update"
    assert PostStore.accepts == ("post_update",)


def test_snapshot_then_changes_in_marbles():
    with marbles() as m:
        posts = PostStore()
        posts.setup_realtime_handlers(
            m.hot(
                "-s-i-u-d",
                {
                    "s": snapshot("posts", 10, [{"id": "p1", "title": "one"}]),
                    "i": change("posts", 11, "INSERT", {"id": "p2", "title": "two"}),
                    "u": change("posts", 12, "UPDATE", {"id": "p1", "title": "ONE", "likes": 3}),
                    "d": change("posts", 13, "DELETE", {"id": "p2", "title": "two"}),
                },
            )
        )
        seen = m.record(posts.select(lambda s: (s.seq, sorted((p.id, p.title, p.likes) for p in s.values()))))
        m.run()
    assert seen == m.expected(
        "es-i-u-d",
        {
            "e": (None, []),
            "s": (10, [("p1", "one", 0)]),
            "i": (11, [("p1", "one", 0), ("p2", "two", 0)]),
            "u": (12, [("p1", "ONE", 3), ("p2", "two", 0)]),
            "d": (13, [("p1", "ONE", 3)]),
        },
    )


def test_change_not_newer_than_cursor_is_applied_once():
    with marbles() as m:
        posts = PostStore()
        insert = change("posts", 5, "INSERT", {"id": "p1", "title": "a"})
        posts.setup_realtime_handlers(
            m.hot(
                "-a-a-o-b",
                {
                    "a": insert,
                    "o": change("posts", 4, "UPDATE", {"id": "p1", "title": "stale"}),
                    "b": change("posts", 6, "UPDATE", {"id": "p1", "title": "b"}),
                },
            )
        )
        titles = m.record(posts.select(lambda s: s.get("p1") and s["p1"].title))
        m.run()
    assert titles == m.expected("na-----b", {"n": None, "a": "a", "b": "b"})
    assert posts.seq == 6


def test_changes_older_than_the_snapshot_are_ignored():
    posts = PostStore()
    posts.apply(
        [
            snapshot("posts", 20, [{"id": "p1", "title": "new"}]),
            change("posts", 19, "UPDATE", {"id": "p1", "title": "old"}),
        ]
    )
    assert rows(posts) == {"p1": Post("p1", "new")}


def test_reset_empties_the_table_and_a_following_snapshot_refills_it():
    posts = PostStore()
    posts.apply([change("posts", 1, "INSERT", {"id": "p1", "title": "a"})])
    posts.apply([Event("rxstore:reset", {"reason": "cursor_expired"}, EventKind.RESET)])
    assert len(posts.value) == 0 and posts.seq is None
    posts.apply([snapshot("posts", 50, [{"id": "p9", "title": "z"}])])
    assert rows(posts) == {"p9": Post("p9", "z")} and posts.seq == 50


def test_bad_record_is_reported_with_the_field_named_and_skipped():
    posts = PostStore()
    errors: list[RxStoreError] = []
    posts.errors.subscribe(errors.append)
    posts.apply(
        [
            change("posts", 1, "INSERT", {"id": "p1", "title": "ok"}),
            change("posts", 2, "INSERT", {"id": "p2", "title": "bad", "likes": "lots"}),
            change("posts", 3, "INSERT", {"id": "p3"}),
            change("posts", 4, "INSERT", {"id": "p4", "title": "fine"}),
        ]
    )
    assert set(rows(posts)) == {"p1", "p4"}
    assert len(errors) == 2
    first, second = (e.__cause__ for e in errors)
    assert isinstance(first, ValidationError) and "$.likes" in str(first)
    assert isinstance(second, ValidationError) and "title" in str(second)


def test_a_batch_notifies_once():
    posts = PostStore()
    seen: list[TableState[Post]] = []
    posts.state.subscribe(seen.append)
    posts.apply([change("posts", i, "INSERT", {"id": f"p{i}", "title": "t"}) for i in range(1, 101)])
    assert len(seen) == 2 and len(seen[-1]) == 100


def test_ordering_is_memoized_per_state():
    posts = PostStore()
    posts.apply(
        [change("posts", i, "INSERT", {"id": f"p{i}", "title": "t", "likes": i % 7}) for i in range(1, 30)]
    )

    def by_likes(p: Post) -> int:
        return p.likes

    first = posts.value.ordered(by_likes)
    assert first is posts.value.ordered(by_likes)
    assert [p.likes for p in first] == sorted(p.likes for p in posts.value.values())
    posts.apply([change("posts", 30, "UPDATE", {"id": "p1", "title": "t", "likes": 100})])
    assert posts.value.ordered(by_likes, reverse=True)[0].id == "p1"


class DictStore(TableStore[dict[str, Any]]):
    table = "notes"


def test_without_record_type_rows_stay_dicts():
    notes = DictStore()
    notes.apply([change("notes", 1, "INSERT", {"id": 7, "text": "hi"})])
    assert notes.value[7] == {"id": 7, "text": "hi"}
    assert DictStore.event == "note_update"


ops = st.lists(
    st.tuples(
        st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
        st.sampled_from([f"p{i}" for i in range(8)]),
        st.text(max_size=5),
        st.integers(min_value=0, max_value=10**6),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(min_value=1, max_value=10))
def test_any_change_sequence_equals_the_same_sequence_on_a_dict(sequence, batch_size):
    """Whatever the ops and however they are batched, the store equals a plain dict."""
    posts = PostStore()
    expected: dict[str, Post] = {}
    events = []
    for seq, (op, key, title, likes) in enumerate(sequence, start=1):
        row = {"id": key, "title": title, "likes": likes}
        if op == "DELETE":
            expected.pop(key, None)
        else:
            expected[key] = Post(key, title, likes)
        events.append(change("posts", seq, op, row))
    for start in range(0, len(events), batch_size):
        posts.apply(events[start : start + batch_size])
    assert rows(posts) == expected
    assert posts.seq == (len(sequence) or None)


def test_an_update_that_changes_the_primary_key_moves_the_row():
    posts = PostStore()
    posts.apply([change("posts", 1, "INSERT", {"id": "p1", "title": "a"})])
    posts.apply([change("posts", 2, "UPDATE", {"id": "p9", "title": "a"}, old={"id": "p1", "title": "a"})])
    assert rows(posts) == {"p9": Post("p9", "a")}
    # In one batch with other changes, and back again.
    posts.apply(
        [
            change("posts", 3, "INSERT", {"id": "p2", "title": "b"}),
            change("posts", 4, "UPDATE", {"id": "p1", "title": "a"}, old={"id": "p9", "title": "a"}),
        ]
    )
    assert rows(posts) == {"p1": Post("p1", "a"), "p2": Post("p2", "b")}


def test_an_update_whose_old_row_has_an_unhashable_key_is_reported_and_skipped():
    posts = PostStore()
    errors: list[RxStoreError] = []
    posts.errors.subscribe(errors.append)
    posts.apply([change("posts", 1, "INSERT", {"id": "p1", "title": "a"})])
    posts.apply([change("posts", 2, "UPDATE", {"id": "p1", "title": "b"}, old={"id": ["x"], "title": "a"})])
    assert rows(posts) == {"p1": Post("p1", "a")} and len(errors) == 1


# -- the DEBUG line: one per store per frame -----------------------------------------------------


class PostChanges(DomainStore[int]):
    """Counts the frames of post changes it folds (a domain store beside the table, on its event)."""

    accepts = ("post_update",)
    initial = 0

    def reduce(self, state: int, event: Event) -> int:
        return state + 1


def frames_through_a_root(posts: PostStore, changes: PostChanges) -> None:
    """A snapshot, an INSERT, a batch (one change already applied, an UPDATE, a DELETE), an UPDATE
    that leaves its row as it was, and a message neither store accepts."""
    with marbles() as m:
        m.root(
            [posts, changes],
            server="-s-i-b-e-m",
            values={
                "s": snapshot_frame("posts", 3, [{"id": "p1", "title": "one"}, {"id": "p2", "title": "two"}]),
                "i": change_frame("posts", 4, "INSERT", {"id": "p3", "title": "three"}),
                "b": batch_frame(
                    [
                        change_frame("posts", 4, "INSERT", {"id": "p3", "title": "three"}),
                        change_frame("posts", 5, "UPDATE", {"id": "p1", "title": "ONE"}),
                        change_frame("posts", 6, "DELETE", {"id": "p2", "title": "two"}),
                    ]
                ),
                "e": change_frame("posts", 7, "UPDATE", {"id": "p3", "title": "three"}),
                "m": message_frame("post_liked", {"post": "p1"}),
            },
        )
        m.run()


def test_at_debug_each_store_logs_one_line_per_frame_it_applies_and_when_off_formats_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """rxstore.store.<name> at DEBUG: one [PostStore] line per frame applied (events, rows changed, seq,
    rows), one line of the domain store beside it; at INFO no record is made and the store's name is
    never formatted."""
    caplog.set_level(logging.INFO, logger="rxstore")
    posts = PostStore(name=Counted("PostStore"))
    Counted.formatted = 0
    with debug_records_made() as made:
        frames_through_a_root(posts, PostChanges())
    assert made == [] and Counted.formatted == 0
    assert rows(posts) == {"p1": Post("p1", "ONE"), "p3": Post("p3", "three")}
    caplog.set_level(logging.DEBUG, logger="rxstore.store")
    frames_through_a_root(PostStore(name=Counted("PostStore")), PostChanges())
    assert Counted.formatted > 0  # formatted when logged: the probe above can see formatting
    assert debug_lines(caplog, "rxstore.store.PostStore") == [
        "[PostStore] frame applied: events=1 rows_changed=2 seq=None->3 rows=2",
        "[PostStore] frame applied: events=1 rows_changed=1 seq=3->4 rows=3",
        "[PostStore] frame applied: events=2 rows_changed=2 seq=4->6 rows=2",  # seq 4: the router's duplicate
        "[PostStore] frame applied: events=1 rows_changed=0 seq=6->7 rows=2",
    ]
    assert debug_lines(caplog, "rxstore.store.PostChanges") == [
        "[PostChanges] frame applied: events=1 state=unchanged",  # the snapshot: reduce_snapshot's default
        "[PostChanges] frame applied: events=1 state=changed",
        "[PostChanges] frame applied: events=2 state=changed",
        "[PostChanges] frame applied: events=1 state=changed",
    ]
