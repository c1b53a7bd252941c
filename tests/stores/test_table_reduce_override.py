"""A TableStore that overrides ``reduce`` (the seed's handleRealtimePostUpdate) sees every event in it."""

from __future__ import annotations

import json
from typing import Any

import attrs

from rxstore import Event, EventKind, TableState, TableStore
from rxstore.client.metrics import Metrics
from rxstore.client.router import Router
from rxstore.protocol.events import BATCH, RESET
from rxstore.protocol.frames import decode_json
from rxstore.testing import Frame, marbles, snapshot_frame


@attrs.frozen
class Post:
    id: str
    title: str


class ShoutingPosts(TableStore[Post]):
    """Keeps every title upper-cased: its own handling of a change, then the store's."""

    table = "posts"
    record_type = Post
    seen: list[int]

    def reduce(self, state: TableState[Post], event: Event) -> TableState[Post]:
        self.seen.append(event.seq or -1)
        if event.kind is EventKind.CHANGE and event.data.get("record"):
            record = {**event.data["record"], "title": event.data["record"]["title"].upper()}
            event = Event(event.name, {**event.data, "record": record}, event.kind, event.seq)
        return super().reduce(state, event)


def envelope(seq: int, key: str, title: str) -> dict[str, Any]:
    return {"seq": seq, "topic": "posts", "op": "INSERT", "record": {"id": key, "title": title}, "old": None}


def test_a_checked_batch_from_the_gateway_goes_through_the_overridden_reduce_one_event_at_a_time() -> None:
    posts = ShoutingPosts()
    posts.seen = []
    router = Router(metrics=Metrics(), report=print)
    posts.setup_realtime_handlers(router.events)
    text = '["rxstore:batch",{"events":[["post_update",%s],["post_update",%s]]}]'
    frame = decode_json(text % (json.dumps(envelope(1, "p1", "hi")), json.dumps(envelope(2, "p2", "yo"))))
    router.on_frame(*frame)
    assert posts.seen == [1, 2]
    assert {key: post.title for key, post in posts.value.items()} == {"p1": "HI", "p2": "YO"}
    assert posts.value.seq == 2 and frame[0] == BATCH


def test_a_store_without_an_override_folds_the_frame_in_one_pass() -> None:
    assert ShoutingPosts.reduce_batch is TableStore._reduce_each  # event by event, every kind

    class Plain(TableStore[Post]):
        table = "posts"
        record_type = Post

    assert Plain.reduce_batch is TableStore.reduce_batch  # the frame in one pass


def test_the_overridden_reduce_of_a_table_store_also_gets_its_snapshots_and_resets() -> None:
    """Unlike a plain DomainStore's reduce: ``super().reduce`` applies them as the table would."""
    with marbles() as m:
        posts = ShoutingPosts()
        posts.seen = []
        m.root(
            [posts],
            server="-s-r-t",
            values={
                "s": snapshot_frame("posts", 3, [{"id": "p1", "title": "hi"}]),
                "r": Frame(RESET, {"reason": "cursor_expired"}),
                "t": snapshot_frame("posts", 9, [{"id": "p2", "title": "yo"}]),
            },
        )
        m.run()
    assert posts.seen == [3, -1, 9]
    assert list(posts.value) == ["p2"] and posts.value.seq == 9
