"""RootStore routing, exactly-once, reconnect and errors, in virtual time."""

from __future__ import annotations

import asyncio

import attrs
import pytest
from reactivex import operators as ops

from rxstore import (
    Backoff,
    ConnectionState,
    ConnectionStatus,
    DomainStore,
    Event,
    NotConnected,
    ProtocolError,
    RootStore,
    TableStore,
)
from rxstore.client.connection import Retry
from rxstore.protocol.events import BATCH, RESET, SNAPSHOT
from rxstore.testing import (
    VirtualLink,
    batch_frame,
    change_frame,
    marbles,
    message_frame,
    snapshot_frame,
)
from tests.recorded import value_of


@attrs.frozen
class Post:
    id: str
    title: str


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


@attrs.frozen
class Likes:
    count: int = 0


class LikeStore(DomainStore[Likes]):
    accepts = ("post_liked",)
    initial = Likes()

    def reduce(self, state: Likes, event: Event) -> Likes:
        return Likes(state.count + 1)


def event_name(event: Event) -> str:
    return event.name


def status_value(state: ConnectionState) -> str:
    return state.status.value


class Recorder:
    """A plain RealtimeStore (not a DomainStore): gets the whole hot stream."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def setup_realtime_handlers(self, events):
        return events.pipe(ops.map(event_name)).subscribe(self.names.append)


def titles(store: PostStore) -> dict[str, str]:
    return {p.id: p.title for p in store.value.values()}


def test_events_are_routed_by_name_to_the_stores_that_accept_them():
    with marbles() as m:
        posts, likes, recorder = PostStore(), LikeStore(), Recorder()
        m.root(
            [posts, likes, recorder],
            server="-a-l-b-l-z",
            values={
                "a": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "one"}),
                "b": change_frame("posts", 2, "UPDATE", {"id": "p1", "title": "uno"}),
                "l": message_frame("post_liked", {"post": "p1"}),
                "z": message_frame("unrelated", 1),
            },
        )
        like_counts = m.record(likes.select(lambda s: s.count))
        m.run()
    assert titles(posts) == {"p1": "uno"}
    assert like_counts == m.expected("0--1---2", {"0": 0, "1": 1, "2": 2})
    assert recorder.names == ["post_update", "post_liked", "post_update", "post_liked", "unrelated"]


def test_a_batch_frame_costs_each_store_one_notification():
    with marbles() as m:
        posts = PostStore()
        frames = [change_frame("posts", i, "INSERT", {"id": f"p{i}", "title": "t"}) for i in range(1, 101)]
        m.root([posts], server="-b", values={"b": batch_frame(frames)})
        sizes = m.record(posts.select(len))
        m.run()
    assert sizes == m.expected("0b", {"0": 0, "b": 100})


def test_a_control_frame_inside_a_batch_is_reported_not_delivered():
    with marbles() as m:
        posts, recorder = PostStore(), Recorder()
        frames = [
            change_frame("posts", 1, "INSERT", {"id": "p1", "title": "t"}),
            message_frame("rxstore:reset", {"reason": "forged"}),
            change_frame("posts", 2, "INSERT", {"id": "p2", "title": "t"}),
        ]
        root = m.root([posts, recorder], server="-b", values={"b": batch_frame(frames)})
        errors = m.record(root.errors.pipe(ops.map(str)))
        m.run()
    assert sorted(titles(posts)) == ["p1", "p2"]
    assert recorder.names == ["post_update", "post_update"]
    assert len(errors) == 1 and "'rxstore:reset' inside a batch" in value_of(errors[0])


def test_duplicate_seqs_are_dropped_before_the_stores():
    with marbles() as m:
        posts = PostStore()
        root = m.root(
            [posts],
            server="-a-a-b-a",
            values={
                "a": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "one"}),
                "b": change_frame("posts", 2, "UPDATE", {"id": "p1", "title": "two"}),
            },
        )
        m.run()
    assert titles(posts) == {"p1": "two"}
    assert root.cursor == 2 and root.metrics.duplicates == 2 and root.metrics.changes_applied == 2


def test_changes_missed_while_disconnected_are_replayed_once_on_reconnect():
    with marbles() as m:
        posts = PostStore()
        values = {
            "s": snapshot_frame("posts", 0, []),
            **{
                str(i): change_frame("posts", i, "INSERT", {"id": f"p{i}", "title": str(i)})
                for i in range(1, 7)
            },
        }
        root = m.root(
            [posts],
            server="s1-2-3-4-5-6",
            link="c---x---c",
            values=values,
        )
        states = m.record(root.connection.pipe(ops.map(status_value)))
        sizes = m.record(posts.select(len))
        m.run()
    assert titles(posts) == {f"p{i}": str(i) for i in range(1, 7)}
    assert states == m.expected(
        "(ioc)---r---c", {"i": "idle", "o": "connecting", "c": "connected", "r": "reconnecting"}
    )
    # 1 and 2 live, 3 and 4 missed, replayed at tick 8 in one batch, then 5, 6 live.
    assert sizes == m.expected("01-2----45-6", {"0": 0, "1": 1, "2": 2, "4": 4, "5": 5, "6": 6})
    assert root.metrics.duplicates == 0 and root.cursor == 6


def test_an_outage_is_one_reconnecting_state_and_each_retry_is_on_root_retries():
    """Dropped at tick 2, unreachable until tick 8, retried every second: ``root.connection`` emits
    ``reconnecting`` once (a change of status), ``root.retries`` each of the 6 failed attempts."""
    with marbles() as m:
        root = m.root(
            [PostStore()], link="c-(xu)-----c", backoff=Backoff(initial=1.0, factor=1.0, jitter=0.0)
        )
        states = m.record(root.connection.pipe(ops.map(status_value)))
        retries = m.record(root.retries)
        m.run()
    assert states == m.expected(
        "(ioc)-r-----c", {"i": "idle", "o": "connecting", "c": "connected", "r": "reconnecting"}
    )
    url = "virtual://gateway"
    reason = f"cannot connect to {url}: unreachable (VirtualLink)"
    assert retries == m.expected(
        "--123456", {str(n): Retry(attempt=n, delay=1.0, reason=reason, url=url) for n in range(1, 7)}
    )
    assert value_of(states[-2]) == "reconnecting" and root.connection_state == ConnectionState(
        ConnectionStatus.CONNECTED, url=url
    )


def test_refused_connection_says_why():
    with marbles() as m:
        root = m.root([PostStore()], link="-r")
        states = m.record(root.connection)
        errors = m.record(root.errors)
        m.run()
    assert value_of(states[-1]) == ConnectionState(
        ConnectionStatus.DISCONNECTED, reason="invalid_token", url="virtual://gateway"
    )
    assert value_of(errors[0]).reason == "invalid_token"


def test_malformed_frames_are_reported_and_nothing_else_is_affected():
    with marbles() as m:
        posts, likes = PostStore(), LikeStore()
        root = m.root(
            [posts, likes],
            server="-a-x-y-z-w-b-l",
            values={
                "a": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "one"}),
                "x": message_frame("post_update", {"seq": "seven", "op": "INSERT", "topic": "posts"}),
                "y": message_frame("rxstore:batch", {"events": "nope"}),
                "z": message_frame("rxstore:batch", {"events": [["post_update"], 5]}),
                "w": message_frame("rxstore:snapshot", {"topic": "posts", "seq": -1}),
                "b": change_frame("posts", 2, "INSERT", {"id": "p2", "title": "two"}),
                "l": message_frame("post_liked", None),
            },
        )
        errors = m.record(root.errors)
        m.run()
    assert titles(posts) == {"p1": "one", "p2": "two"}
    assert likes.value == Likes(1)
    assert [r.time for r in errors] == [3, 5, 7, 7, 9]
    assert all(isinstance(value_of(r), ProtocolError) for r in errors)


def test_store_failures_reach_root_errors_with_the_store_name():
    with marbles() as m:
        posts = PostStore()
        root = m.root(
            [posts],
            server="-a",
            values={
                "a": change_frame("posts", 1, "INSERT", {"id": "p1"}),
            },
        )
        errors = m.record(root.errors)
        m.run()
    assert value_of(errors[0]).store == "PostStore"
    assert "title" in str(value_of(errors[0]).__cause__)


def test_handlers_are_never_registered_twice():
    posts = PostStore()
    root = RootStore("virtual://", stores=[posts], transport=VirtualLink())
    root.setup_domain_event_handlers()
    root.setup_domain_event_handlers()
    root.router.on_frame("post_update", change_frame("posts", 1, "INSERT", {"id": "p", "title": "t"}).data)
    assert [(view.names, len(view.observers)) for view in root.router.events.views()] == [
        (frozenset({"post_update"}), 1)
    ]
    assert len(posts._errors.observers) == 1


def test_topics_come_from_table_stores_and_are_sent_with_the_cursor_its_ts_and_its_epoch():
    root = RootStore("virtual://", stores=[PostStore(), LikeStore()], topics=["comments", "posts"])
    assert root.auth_payload("tok")["epoch"] is None
    root.cursor, root.cursor_ts, root.epoch = 41, 1733580000.125, "e1"
    assert root.auth_payload("tok") == {
        "token": "tok",
        "topics": ["posts", "comments"],
        "cursor": 41,
        "cursor_ts": 1733580000.125,
        "epoch": "e1",
    }


def test_the_cursor_ts_is_the_ts_of_the_change_or_snapshot_that_set_the_cursor():
    """Kept once per frame from its last applied change; a snapshot's ``ts`` when the snapshot
    sets the cursor; forgotten by a reset and by a cursor set by hand."""
    root = RootStore("virtual://", stores=[PostStore()])
    router = root.router
    router.on_frame(SNAPSHOT, {"topic": "posts", "event": "post_update", "seq": 3, "ts": 7.5, "records": []})
    assert (root.cursor, root.cursor_ts) == (3, 7.5)
    first = change_frame("posts", 4, "INSERT", {"id": "p", "title": "t"}).data
    second = change_frame("posts", 5, "UPDATE", {"id": "p", "title": "u"}).data
    router.on_frame(
        BATCH, {"events": [["post_update", {**first, "ts": 8.25}], ["post_update", {**second, "ts": 9}]]}
    )
    assert (root.cursor, root.cursor_ts) == (5, 9.0)
    router.on_frame(BATCH, {"events": [["post_update", {**first, "ts": 1.0}]]})  # a duplicate: kept as it was
    assert (root.cursor, root.cursor_ts) == (5, 9.0)
    router.on_frame(RESET, {"reason": "cursor_unknown", "cursor": 5, "horizon": 0, "epoch": "e"})
    assert (root.cursor, root.cursor_ts) == (None, None)
    router.on_frame(SNAPSHOT, {"topic": "posts", "event": "post_update", "seq": 6, "records": []})
    assert (root.cursor, root.cursor_ts) == (6, None)  # an older gateway sends no ts
    root.cursor_ts = 2.0
    root.cursor = 6
    assert root.cursor_ts is None and root.auth_payload(None)["cursor_ts"] is None


async def test_teardown_leaves_no_task_or_subscription_and_fails_queued_calls():
    posts, recorder = PostStore(), Recorder()
    link = VirtualLink()
    root = RootStore("virtual://", stores=[posts, recorder], transport=link)
    link.root = root
    async with root:
        assert root.connection_state.connected
        link.unreachable()
        link.drop()
        pending = asyncio.ensure_future(root.call("create_post", {"title": "x"}))
        await asyncio.sleep(0)
        assert root.metrics.outbox_depth == 1
    assert not root.running and all(not view.observers for view in root.router.events.views())
    assert not posts._errors.observers and not root.router.events.subject.observers
    assert root.connection_state.status is ConnectionStatus.DISCONNECTED
    with pytest.raises(NotConnected):
        await pending
    assert [t for t in asyncio.all_tasks() if t.get_name() == "rxstore-root"] == []
