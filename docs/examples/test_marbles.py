"""Five marble tests: the worked examples of docs/testing.md, run by pytest as shown.

Run them with ``pytest docs/examples/test_marbles.py``. The ``--8<--`` comments
mark the parts the documentation page includes.
"""

# --8<-- [start:setup]
from __future__ import annotations

from typing import Any

import attrs
from reactivex import operators as ops
from reactivex.notification import OnNext
from reactivex.testing.recorded import Recorded

from rxstore import ConnectionRefused, ConnectionState, DomainStore, Event, StoreError, SyncStatus, TableStore
from rxstore.testing import change_frame, marbles, message, message_frame, snapshot_frame


@attrs.frozen
class Post:
    id: str
    title: str


class PostStore(TableStore[Post]):
    table = "posts"  # its changes arrive as "post_update" events
    record_type = Post


@attrs.frozen
class Likes:
    count: int = 0


class LikeStore(DomainStore[Likes]):
    accepts = ("post_liked",)
    initial = Likes()

    def reduce(self, state: Likes, event: Event) -> Likes:
        return Likes(state.count + 1)


def link_status(state: ConnectionState) -> str:
    return state.status.value  # "idle", "connected", "reconnecting", ...


def sync_state(status: SyncStatus) -> str:
    return status.state.value  # "stale", "replaying" or "live"


def values(recorded: list[Recorded[Any]]) -> list[Any]:
    """The values a recording saw, without their times."""
    return [r.value.value for r in recorded if isinstance(r.value, OnNext)]


# --8<-- [end:setup]


# --8<-- [start:fold]
def test_a_store_folds_only_the_events_it_accepts() -> None:
    with marbles() as m:
        likes = LikeStore()
        events = m.hot(
            "-l-x-l-l",
            {
                "l": message("post_liked", {"post": "p1"}),
                "x": message("post_created", {"id": "p2"}),
            },
        )
        # filter(accepts) + scan(reduce), on any stream, without a root:
        likes.setup_realtime_handlers(events)
        counts = m.record(likes.select(lambda s: s.count))
        m.run()
    # 0 at once (the BehaviorSubject's current state), then one per accepted event.
    assert counts == m.expected("01---2-3", {"0": 0, "1": 1, "2": 2, "3": 3})


# --8<-- [end:fold]


# --8<-- [start:table]
def test_a_table_store_mirrors_a_snapshot_then_every_change() -> None:
    p1, p2 = {"id": "p1", "title": "Hello"}, {"id": "p2", "title": "Draft"}
    with marbles() as m:
        posts = PostStore()
        m.root(
            [posts],
            server="-s-a-b-c-d",
            values={
                "s": snapshot_frame("posts", 10, [p1]),
                "a": change_frame("posts", 11, "INSERT", p2),
                "b": change_frame("posts", 12, "UPDATE", {**p2, "title": "Second"}),
                "c": change_frame("posts", 13, "UPDATE", {**p1, "title": "Hi"}),
                "d": change_frame("posts", 14, "DELETE", {**p2, "title": "Second"}),
            },
        )
        sizes = m.record(posts.select(len))
        first = m.record(posts.select(lambda s: s.get("p1")))
        m.run()
    assert sizes == m.expected("01-2-----1", {"0": 0, "1": 1, "2": 2})
    # select() is map + distinct_until_changed: p1's view ignores p2's changes.
    assert first == m.expected(
        "nh-----c", {"n": None, "h": Post("p1", "Hello"), "c": Post("p1", "Hi")}
    )
    assert posts.seq == 14


# --8<-- [end:table]


# --8<-- [start:reconnect]
def test_changes_missed_while_offline_are_replayed_once_on_reconnect() -> None:
    frames = {
        str(seq): change_frame("posts", seq, "INSERT", {"id": f"p{seq}", "title": "t"})
        for seq in range(1, 5)
    }
    with marbles() as m:
        posts = PostStore()
        root = m.root(
            [posts],
            server="s1-2-3-4",  # 2 (tick 3) and 3 (tick 5) are sent while down
            link="c--x--c",
            values={"s": snapshot_frame("posts", 0, []), **frames},
        )
        links = m.record(root.connection.pipe(ops.map(link_status)))
        syncs = m.record(posts.status.pipe(ops.map(sync_state)))
        sizes = m.record(posts.select(len))
        m.run()
    # The root starts at tick 0: idle, connecting, and at once connected.
    assert links == m.expected(
        "(ioc)--r--c", {"i": "idle", "o": "connecting", "c": "connected", "r": "reconnecting"}
    )
    assert syncs == m.expected(
        "(srl)--s--(rl)", {"s": "stale", "r": "replaying", "l": "live"}
    )
    # 2 and 3 arrive at tick 6 in one replayed batch: one new state, not two.
    assert sizes == m.expected("01----34", {"0": 0, "1": 1, "3": 3, "4": 4})
    assert root.metrics.duplicates == 0 and root.cursor == 4


# --8<-- [end:reconnect]


# --8<-- [start:refused]
def test_a_refused_connection_says_why() -> None:
    with marbles() as m:
        posts = PostStore()
        root = m.root([posts], link="-r")  # the gateway refuses: invalid_token
        links = m.record(root.connection.pipe(ops.map(link_status)))
        errors = m.record(root.errors)
        m.run()
    assert links == m.expected("(io)d", {"i": "idle", "o": "connecting", "d": "disconnected"})
    assert root.connection_state.reason == "invalid_token"
    [refusal] = values(errors)
    assert isinstance(refusal, ConnectionRefused)
    assert refusal.reason == "invalid_token"
    assert sync_state(posts.sync) == "stale"


# --8<-- [end:refused]


# --8<-- [start:errors]
def test_bad_input_is_reported_and_changes_nothing_else() -> None:
    with marbles() as m:
        posts, likes = PostStore(), LikeStore()
        root = m.root(
            [posts, likes],
            server="-a-b-a-l-c",
            values={
                "a": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "one"}),
                "b": change_frame("posts", 2, "INSERT", {"id": "p2"}),  # no title
                "l": message_frame("post_liked", {"post": "p1"}),
                "c": change_frame("posts", 3, "INSERT", {"id": "p3", "title": "3"}),
            },
        )
        sizes = m.record(posts.select(len))
        errors = m.record(root.errors)
        m.run()
    assert sizes == m.expected("01-------2", {"0": 0, "1": 1, "2": 2})
    # One error, at tick 3; "a" again at tick 5 (seq 1 again) is a silent duplicate.
    assert [r.time for r in errors] == [3]
    [error] = values(errors)
    assert isinstance(error, StoreError) and error.store == "PostStore"
    assert "title" in str(error.__cause__)  # ValidationError: "... @ $.title"
    assert likes.value == Likes(1) and root.metrics.duplicates == 1


# --8<-- [end:errors]
