"""DomainStore behaviour, as marble diagrams in virtual time."""

from __future__ import annotations

import attrs
import immutables
import pytest
from reactivex import operators as ops

from rxstore import DomainStore, Event, Snapshot, StoreError, TableStore
from rxstore.protocol.events import RESET
from rxstore.testing import Frame, change_frame, marbles, message, message_frame, snapshot_frame
from tests.recorded import value_of


@attrs.frozen
class Likes:
    count: int = 0
    last: str | None = None


class LikeStore(DomainStore[Likes]):
    accepts = ("post_liked", "post_unliked")
    initial = Likes()

    def reduce(self, state: Likes, event: Event) -> Likes:
        step = 1 if event.name == "post_liked" else -1
        return Likes(state.count + step, event.data["post"])


class EvenOnly(LikeStore):
    def accept(self, event: Event) -> bool:
        return int(event.data["post"][1:]) % 2 == 0


def ev(name: str, post: str) -> Event:
    return message(name, {"post": post})


def test_store_folds_only_accepted_events_and_emits_once_per_change():
    with marbles() as m:
        likes = LikeStore()
        events = m.hot(
            "-a-x-b-u",
            {
                "a": ev("post_liked", "p1"),
                "x": ev("post_created", "p9"),
                "b": ev("post_liked", "p2"),
                "u": ev("post_unliked", "p2"),
            },
        )
        likes.setup_realtime_handlers(events)
        states = m.record(likes.state)
        m.run()
    assert states == m.expected(
        "sa---b-u",
        {
            "s": Likes(),
            "a": Likes(1, "p1"),
            "b": Likes(2, "p2"),
            "u": Likes(1, "p2"),
        },
    )


def test_accept_predicate_narrows_events_further():
    with marbles() as m:
        store = EvenOnly()
        store.setup_realtime_handlers(
            m.hot(
                "-a-b-c",
                {
                    "a": ev("post_liked", "p1"),
                    "b": ev("post_liked", "p2"),
                    "c": ev("post_liked", "p4"),
                },
            )
        )
        states = m.record(store.state)
        m.run()
    assert states == m.expected("s--b-c", {"s": Likes(), "b": Likes(1, "p2"), "c": Likes(2, "p4")})


def test_select_emits_only_when_the_projection_changes():
    with marbles() as m:
        likes = LikeStore()
        likes.setup_realtime_handlers(
            m.hot(
                "-a-b-c",
                {
                    "a": ev("post_liked", "p1"),
                    "b": ev("post_liked", "p1"),
                    "c": ev("post_liked", "p2"),
                },
            )
        )
        last_post = m.record(likes.select(lambda s: s.last))
        m.run()
    assert last_post == m.expected("na---c", {"n": None, "a": "p1", "c": "p2"})


def test_select_with_custom_equality_skips_projections_it_calls_equal():
    """``equals`` decides what counts as a change: counts in the same pair (0-1, 2-3) are not."""
    with marbles() as m:
        likes = LikeStore()
        likes.setup_realtime_handlers(
            m.hot(
                "-a-b-c",
                {
                    "a": ev("post_liked", "p1"),
                    "b": ev("post_liked", "p1"),
                    "c": ev("post_liked", "p2"),
                },
            )
        )
        pairs = m.record(likes.select(lambda s: s.count, equals=lambda x, y: x // 2 == y // 2))
        m.run()
    # With plain ==, 1 (tick 1) and 3 (tick 5) would be emitted too.
    assert pairs == m.expected("0--2", {"0": 0, "2": 2})


class Fragile(LikeStore):
    def reduce(self, state: Likes, event: Event) -> Likes:
        if event.data["post"] == "bad":
            raise KeyError("no such post")
        return super().reduce(state, event)


def test_failing_reducer_keeps_state_reports_error_and_store_keeps_running():
    with marbles() as m:
        store = Fragile()
        store.setup_realtime_handlers(
            m.hot(
                "-a-x-b",
                {
                    "a": ev("post_liked", "p1"),
                    "x": ev("post_liked", "bad"),
                    "b": ev("post_liked", "p2"),
                },
            )
        )
        states = m.record(store.state)
        errors = m.record(store.errors)
        m.run()
    assert states == m.expected("sa---b", {"s": Likes(), "a": Likes(1, "p1"), "b": Likes(2, "p2")})
    assert [r.time for r in errors] == [3]
    error = value_of(errors[0])
    assert isinstance(error, StoreError) and isinstance(error, RuntimeError)
    assert error.store == "Fragile" and error.event.data == {"post": "bad"}
    assert isinstance(error.__cause__, KeyError)


def test_batch_is_folded_in_one_step_with_one_notification():
    likes = LikeStore()
    seen: list[Likes] = []
    likes.state.subscribe(seen.append)
    likes.apply([ev("post_liked", f"p{i}") for i in range(100)])
    assert seen == [Likes(), Likes(100, "p99")]


def test_failure_inside_a_batch_skips_only_that_event():
    store = Fragile()
    errors: list[Exception] = []
    store.errors.subscribe(errors.append)
    store.apply([ev("post_liked", "p1"), ev("post_liked", "bad"), ev("post_liked", "p3")])
    assert store.value == Likes(2, "p3")
    assert len(errors) == 1


def test_store_without_initial_state_says_what_to_do():
    class NoInitial(DomainStore[int]):
        accepts = ("x",)

    with pytest.raises(TypeError, match="initial"):
        NoInitial()


def test_store_with_initial_override_and_reset():
    likes = LikeStore(initial=Likes(5), name="custom")
    assert likes.name == "custom" and likes.value == Likes(5)
    likes.apply([ev("post_liked", "p1")])
    likes.reset()
    assert likes.value == Likes()


Counts = immutables.Map[str, int]


class AuthorCounts(DomainStore[Counts]):
    """Posts per author, from the posts table's events: its snapshot, then its changes."""

    accepts = ("post_update",)
    initial: Counts = immutables.Map()

    def reduce_snapshot(self, state: Counts, snapshot: Snapshot) -> Counts:
        counts: dict[str, int] = {}
        for row in snapshot.records:
            counts[row["author"]] = counts.get(row["author"], 0) + 1
        return immutables.Map(counts)

    def reduce(self, state: Counts, event: Event) -> Counts:
        change = event.change
        if change is None:  # a message under the table's event name
            return state
        if change.old is not None:
            author = change.old["author"]
            state = state.set(author, state[author] - 1)
        if change.record is not None:
            author = change.record["author"]
            state = state.set(author, state.get(author, 0) + 1)
        return state


class PostStore(TableStore[dict[str, str]]):
    table = "posts"


def test_a_store_accepting_a_table_gets_its_snapshots_in_reduce_snapshot_and_its_changes_in_reduce():
    """First connect, a change, a reset and the snapshot after it: counts right throughout, no error."""
    with marbles() as m:
        posts, authors = PostStore(), AuthorCounts()
        root = m.root(
            [posts, authors],
            server="-s-c-r-t",
            values={
                "s": snapshot_frame(
                    "posts", 3, [{"id": "p1", "author": "ann"}, {"id": "p2", "author": "bob"}]
                ),
                "c": change_frame("posts", 4, "INSERT", {"id": "p3", "author": "ann"}),
                "r": Frame(RESET, {"reason": "cursor_expired"}),
                "t": snapshot_frame("posts", 9, [{"id": "p3", "author": "ann"}]),
            },
        )
        counts = m.record(authors.state.pipe(ops.map(dict)))
        errors = m.record(root.errors)
        m.run()
    assert counts == m.expected(
        "ab-c---d",
        {"a": {}, "b": {"ann": 1, "bob": 1}, "c": {"ann": 2, "bob": 1}, "d": {"ann": 1}},
    )
    assert errors == []


class NewPosts(DomainStore[tuple[str, ...]]):
    """The ids INSERTed after the snapshot: folds changes only, so keeps reduce_snapshot's default."""

    accepts = ("post_update",)
    initial = ()

    def reduce(self, state: tuple[str, ...], event: Event) -> tuple[str, ...]:
        change = event.change
        assert change is not None, "reduce gets no snapshot"
        return (*state, change.key("id")) if change.record is not None and change.old is None else state


def unchecked(state: int, event: Event) -> int:
    """Never called: mypy (strict) flags a reducer that reads ``event.change`` without handling ``None``."""
    return event.change.seq  # type: ignore[union-attr]  # (an unused ignore fails mypy)


def test_by_default_a_snapshot_changes_nothing_and_never_reaches_reduce():
    with marbles() as m:
        posts, new = PostStore(), NewPosts()
        root = m.root(
            [posts, new],
            server="-s-c",
            values={
                "s": snapshot_frame("posts", 3, [{"id": "p1", "author": "ann"}]),
                "c": change_frame("posts", 4, "INSERT", {"id": "p2", "author": "bob"}),
            },
        )
        states = m.record(new.state)
        errors = m.record(root.errors)
        m.run()
    assert states == m.expected("a--b", {"a": (), "b": ("p2",)})
    assert errors == [] and len(posts.value) == 2


@pytest.mark.parametrize("store", [LikeStore, EvenOnly])
def test_a_reset_is_not_an_event_to_accept_or_reduce(store: type[LikeStore]):
    """The root hands a RESET to every store: a like counter does not count it, nor its accept read it."""
    with marbles() as m:
        likes = store()
        m.root(
            [likes],
            server="-a-r-b",
            values={
                "a": message_frame("post_liked", {"post": "p2"}),
                "r": Frame(RESET, {"reason": "cursor_expired"}),
                "b": message_frame("post_liked", {"post": "p4"}),
            },
        )
        states = m.record(likes.state)
        errors = m.record(likes.errors)
        m.run()
    assert states == m.expected("sa---b", {"s": Likes(), "a": Likes(1, "p2"), "b": Likes(2, "p4")})
    assert errors == []
