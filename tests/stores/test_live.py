"""Waiting until live in virtual time: ``when_live`` of stores and roots under marbles (issue 13, item 2).

The observables behind ``await store.live()`` and ``await root.live()``; the
timeout runs on the marble test's scheduler, so one tick is one second.
"""

from __future__ import annotations

from typing import Any

import attrs
from reactivex import operators as ops
from reactivex.notification import OnError

from rxstore import LiveTimeout, SyncState, TableStore
from rxstore.testing import change_frame, marbles, snapshot_frame


@attrs.frozen
class Post:
    id: str
    title: str


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


class NoteStore(TableStore[dict[str, Any]]):
    table = "notes"


def state_of(status: Any) -> SyncState:
    return status.state  # type: ignore[no-any-return]


def failure(recorded: list[Any]) -> tuple[float, Exception]:
    """The time and exception of the only notification, an error."""
    assert len(recorded) == 1 and isinstance(recorded[0].value, OnError)
    return recorded[0].time, recorded[0].value.exception


def test_a_store_becomes_live_when_the_gateway_has_sent_what_it_missed() -> None:
    """Connected at tick 3: ``when_live`` emits the live status at tick 3 and completes."""
    with marbles() as m:
        posts = PostStore()
        root = m.root([posts], link="---c", server="s", values={"s": snapshot_frame("posts", 1, [])})
        store_live = m.record(posts.when_live(timeout=10).pipe(ops.map(state_of)))
        root_live = m.record(root.when_live(timeout=10))
        m.run()
    assert store_live == m.expected("---(l|)", {"l": SyncState.LIVE})
    assert root_live == m.expected("---(n|)", {"n": None})


def test_a_store_that_is_live_already_emits_at_once() -> None:
    """Subscribed while live: the status comes at the same tick."""
    with marbles() as m:
        posts = PostStore()
        root = m.root(
            [posts], server="-a", values={"a": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "t"})}
        )
        later: list[Any] = []
        m.at(5, lambda: later.append(m.record(root.when_live(timeout=1))))
        m.run()
    assert later[0] == m.expected("-----(n|)", {"n": None})
    assert "p1" in posts.value


def test_waiting_across_a_dropped_link_ends_when_the_root_is_back_and_live() -> None:
    """Link up, down at 2, up at 6: a wait that starts at 3 ends at 6 (the replay is in)."""
    with marbles() as m:
        posts = PostStore()
        root = m.root(
            [posts],
            link="c-x---c",
            server="---a",
            values={"a": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "t"})},
        )
        waits: list[Any] = []
        m.at(3, lambda: waits.append(m.record(root.when_live(timeout=10))))
        m.run()
    assert waits[0] == m.expected("------(n|)", {"n": None})
    assert "p1" in posts.value  # sent while down, replayed on the way back


def test_not_live_in_time_fails_with_live_timeout_at_the_timeout_tick() -> None:
    """Never connected: after 4 virtual seconds the store's wait fails with ``LiveTimeout``
    naming the store and its state; the root's also names the connection."""
    with marbles() as m:
        posts, notes = PostStore(), NoteStore()
        root = m.root([posts, notes], link="--------c")
        store_wait = m.record(posts.when_live(timeout=4))
        root_wait = m.record(root.when_live(timeout=4))
        m.run()
    at, error = failure(store_wait)
    assert at == 4 and isinstance(error, LiveTimeout) and isinstance(error, TimeoutError)
    assert str(error) == "not live after 4 s: PostStore stale (no snapshot yet)"
    at, error = failure(root_wait)
    assert at == 4 and isinstance(error, LiveTimeout)
    assert error.waiting == {"PostStore": "stale (no snapshot yet)", "NoteStore": "stale (no snapshot yet)"}
    assert error.connection == "connecting"  # the gateway has not answered the root's first attempt


def test_a_refused_root_names_the_reason_in_its_timeout() -> None:
    """Refused at tick 1: the root's wait fails at its timeout, naming the refusal."""
    with marbles() as m:
        posts = PostStore()
        root = m.root([posts], link="-r")
        root_wait = m.record(root.when_live(timeout=3))
        m.run()
    at, error = failure(root_wait)
    assert at == 3 and isinstance(error, LiveTimeout)
    assert str(error) == (
        "not live after 3 s: PostStore stale (no snapshot yet); connection disconnected (invalid_token)"
    )


def test_without_a_timeout_the_wait_just_waits() -> None:
    """``timeout=None``: nothing happens until live, then one value."""
    with marbles() as m:
        posts = PostStore()
        m.root([posts], link="----------------------c")
        waited = m.record(posts.when_live(timeout=None).pipe(ops.map(state_of)))
        m.run()
    assert waited == m.expected("----------------------(l|)", {"l": SyncState.LIVE})
