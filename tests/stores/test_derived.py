"""Derived stores, as marble diagrams in virtual time: once per change for everyone, distinct, disposable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
import reactivex
from reactivex import Observable
from reactivex import operators as ops

from rxstore import Derived, DomainStore, Event, StoreError, TableState, TableStore, derived
from rxstore.testing import batch_frame, change, change_frame, marbles, message_frame
from tests.recorded import value_of


@attrs.frozen
class Post:
    id: str
    author: str


@attrs.frozen
class User:
    id: str
    name: str


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


class UserStore(TableStore[User]):
    table = "users"
    record_type = User


def post(seq: int, key: str, author: str, op: str = "INSERT") -> Any:
    return change_frame("posts", seq, op, {"id": key, "author": author})


def user(seq: int, key: str, name: str, op: str = "INSERT") -> Any:
    return change_frame("users", seq, op, {"id": key, "name": name})


class Counted:
    """``fn`` of a derived store, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, posts: TableState[Post], users: TableState[User]) -> tuple[str, ...]:
        """The author names of the posts, in key order (``?`` for an author not known yet)."""
        self.calls += 1
        return tuple(users[p.author].name if p.author in users else "?" for _, p in sorted(posts.items()))


class PerSubscriber:
    """The naive derived state: ``combine_latest`` + ``map``, which runs once per subscriber."""

    def __init__(self, posts: PostStore, users: UserStore, fn: Counted) -> None:
        def call(both: tuple[TableState[Post], TableState[User]]) -> tuple[str, ...]:
            return fn(*both)

        self.state: Observable[tuple[str, ...]] = reactivex.combine_latest(posts.state, users.state).pipe(
            ops.map(call), ops.distinct_until_changed()
        )


def shared(posts: PostStore, users: UserStore, fn: Counted) -> Derived[tuple[str, ...]]:
    return derived(posts, users, fn=fn)


@pytest.mark.parametrize(
    "make",
    [
        shared,
        pytest.param(
            PerSubscriber,
            marks=pytest.mark.xfail(
                strict=True, reason="combine_latest per subscriber: fn runs per subscriber"
            ),
        ),
    ],
)
def test_fn_runs_once_per_input_change_whatever_the_number_of_subscribers(make: Callable[..., Any]) -> None:
    with marbles() as m:
        posts, users, fn = PostStore(), UserStore(), Counted()
        m.root(
            [posts, users],
            server="-a-b-c",
            values={
                "a": user(1, "u1", "Ann"),
                "b": post(2, "p1", "u1"),
                "c": user(3, "u1", "Anna", "UPDATE"),
            },
        )
        names = make(posts, users, fn)
        seen = [m.record(names.state) for _ in range(3)]
        m.run()
    expected = m.expected("a--b-c", {"a": (), "b": ("Ann",), "c": ("Anna",)})
    assert seen == [expected] * 3
    assert fn.calls == 1 + 3  # the first value, then one per input change: not one per subscriber


def test_emits_only_distinct_values_and_value_is_current_at_every_tick() -> None:
    """A change that leaves the result equal (a user no post names) emits nothing; ``.value`` follows."""
    with marbles() as m:
        posts, users, fn = PostStore(), UserStore(), Counted()
        m.root(
            [posts, users],
            server="-a-b-c-d",
            values={
                "a": user(1, "u1", "Ann"),
                "b": post(2, "p1", "u1"),
                "c": user(3, "u2", "Bob"),
                "d": user(4, "u1", "Anna", "UPDATE"),
            },
        )
        names = derived(posts, users, fn=fn)
        seen = m.record(names.state)
        values: list[tuple[str, ...]] = []
        for tick in range(9):
            m.at(tick, lambda: values.append(names.value))
        m.run()
    assert seen == m.expected("a--b---d", {"a": (), "b": ("Ann",), "d": ("Anna",)})
    assert fn.calls == 5  # computed at tick 5 too, equal to the value before: not emitted
    assert values == [(), (), (), ("Ann",), ("Ann",), ("Ann",), ("Ann",), ("Anna",), ("Anna",)]


def test_dispose_stops_computing_and_completes_the_state() -> None:
    with marbles() as m:
        posts, users, fn = PostStore(), UserStore(), Counted()
        m.root(
            [posts, users],
            server="-a-b-c",
            values={"a": user(1, "u1", "Ann"), "b": post(2, "p1", "u1"), "c": post(3, "p2", "u1")},
        )
        names = derived(posts, users, fn=fn)
        seen = m.record(names.state)
        m.at(4, names.dispose)
        m.run()
    assert seen == m.expected("a--b|", {"a": (), "b": ("Ann",)})
    assert fn.calls == 3 and names.value == ("Ann",) and len(posts.value) == 2


#: One frame from the gateway that changes two inputs: a post and its author, inserted together.
POST_AND_AUTHOR = batch_frame([post(1, "p1", "u1"), user(2, "u1", "Ann")])


def test_without_a_scheduler_a_frame_changing_two_inputs_computes_twice_with_a_transient_value() -> None:
    """The glitch ``derived`` documents: the post is there before its author, for one computation."""
    with marbles() as m:
        posts, users, fn = PostStore(), UserStore(), Counted()
        m.root([posts, users], server="-x", values={"x": POST_AND_AUTHOR})
        seen = m.record(derived(posts, users, fn=fn).state)
        m.run()
    assert seen == m.expected("a(bc)", {"a": (), "b": ("?",), "c": ("Ann",)})
    assert fn.calls == 3


def test_with_a_scheduler_a_frame_changing_two_inputs_computes_once_with_no_transient_value() -> None:
    with marbles() as m:
        posts, users, fn = PostStore(), UserStore(), Counted()
        m.root([posts, users], server="-x--y", values={"x": POST_AND_AUTHOR, "y": post(3, "p2", "u1")})
        names = derived(posts, users, fn=fn, scheduler=m.scheduler)
        seen = m.record(names.state)
        m.run()
    assert seen == m.expected("ab--c", {"a": (), "b": ("Ann",), "c": ("Ann", "Ann")})
    assert fn.calls == 3  # the first value, one per frame


def test_with_a_scheduler_value_is_computed_when_read_before_the_scheduler_runs() -> None:
    with marbles() as m:
        posts, users, fn = PostStore(), UserStore(), Counted()
        names = derived(posts, users, fn=fn, scheduler=m.scheduler)
        seen = m.record(names.state)
        users.apply([change("users", 1, "INSERT", {"id": "u1", "name": "Ann"})])
        posts.apply([change("posts", 2, "INSERT", {"id": "p1", "author": "u1"})])
        assert names.value == ("Ann",) and fn.calls == 2 and seen == m.expected("a", {"a": ()})
        m.run()
    assert seen == m.expected("(ab)", {"a": (), "b": ("Ann",)}) and fn.calls == 2


@attrs.frozen
class Count:
    n: int = 0


class Counter(DomainStore[Count]):
    accepts = ("tick",)
    initial = Count()

    def reduce(self, state: Count, event: Event) -> Count:
        return Count(state.n + 1)


def test_a_derived_store_is_an_input_of_another_and_fn_failures_keep_the_last_value() -> None:
    with marbles() as m:
        ticks = Counter()
        m.root([ticks], server="-t-t-t", values={"t": message_frame("tick")})
        doubled = derived(ticks, fn=lambda c: c.n * 2)
        fragile = derived(doubled, fn=lambda n: 10 // (4 - n), name="fragile")  # 4: ZeroDivisionError
        seen = m.record(fragile.state)
        errors = m.record(fragile.errors)
        m.run()
    assert seen == m.expected("ab---c", {"a": 2, "b": 5, "c": -5})
    error = value_of(errors[0])
    assert [r.time for r in errors] == [3] and isinstance(error, StoreError) and error.store == "fragile"
    assert isinstance(error.__cause__, ZeroDivisionError)


def test_equals_decides_what_counts_as_a_change_and_the_earlier_object_is_kept() -> None:
    with marbles() as m:
        ticks = Counter()
        m.root([ticks], server="-t-t-t", values={"t": message_frame("tick")})
        pairs = derived(ticks, fn=lambda c: [c.n], equals=lambda x, y: x[0] // 2 == y[0] // 2)
        first = pairs.value
        seen = m.record(pairs.state)
        m.run()
    assert seen == m.expected("a--b", {"a": [0], "b": [2]})  # [1] and [3] are "equal" to the one before
    assert value_of(seen[0]) is first and pairs.value == [2]


def test_inputs_are_needed_and_must_give_their_state_on_subscription() -> None:
    with pytest.raises(ValueError, match="at least one input"):
        Derived([], lambda: 1)
    ticks = Counter()

    class Silent:
        state: Observable[int] = reactivex.never()

    with pytest.raises(ValueError, match="current value on subscription"):
        derived(ticks, Silent(), fn=lambda c, n: n)


def typed(posts: PostStore, users: UserStore) -> Derived[int]:
    """mypy (strict) checks the overloads: ``fn`` gets each input's state type."""
    return derived(posts, users, fn=lambda p, u: len(p.rows) + len(u.rows))


def mistyped(posts: PostStore, users: UserStore) -> None:
    """Never called: mypy must flag each line (strict warns of an unused ``type: ignore``)."""
    derived(posts, users, fn=lambda p, u: p.authors)  # type: ignore[attr-defined]
    derived(posts, fn=lambda p, u: 0)  # type: ignore[arg-type,misc]  # fn takes one state per input


def test_the_typed_overloads_build_a_working_store() -> None:
    posts, users = PostStore(), UserStore()
    with typed(posts, users) as total:
        users.apply([change("users", 1, "INSERT", {"id": "u1", "name": "Ann"})])
        assert total.value == 1
    users.apply([change("users", 2, "INSERT", {"id": "u2", "name": "Bob"})])
    assert total.value == 1  # disposed on leaving the with block
