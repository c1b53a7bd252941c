"""rxstore.client.router: the per-change rules (row present, cursor dedupe) for every kind of frame."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import pytest

from rxstore import ProtocolError, TableStore
from rxstore.client.metrics import Metrics
from rxstore.client.router import Router
from rxstore.protocol.events import BATCH
from rxstore.protocol.frames import CheckedBatch
from rxstore.testing import batch_frame, change_frame, marbles, message_frame
from tests.logs import debug_lines, debug_records_made


def change(seq: int, key: int = 1, op: str = "INSERT") -> dict[str, Any]:
    if op == "DELETE":
        return {"seq": seq, "topic": "posts", "op": op, "record": None, "old": {"id": key}}
    return {"seq": seq, "topic": "posts", "op": op, "record": {"id": key}, "old": None}


def router() -> tuple[Router, list[Any], list[Any]]:
    errors: list[Any] = []
    route = Router(metrics=Metrics(), report=errors.append)
    seen: list[Any] = []
    for name in ("a", "b"):
        route.events.named(name).subscribe(partial(record, seen, name))
    return route, seen, errors


def record(seen: list[Any], name: str, frame: Any) -> None:
    seen.extend((name, event.seq) for event in frame)


def send(route: Router, kind: str, entries: list[tuple[str, dict[str, Any]]]) -> None:
    """The same changes as single frames, as a batch of JSON, or as a batch the decoder checked."""
    if kind == "single":
        for name, payload in entries:
            route.on_frame(name, payload)
    elif kind == "batch":
        route.on_frame(BATCH, {"events": [[name, payload] for name, payload in entries]})
    else:
        route.on_frame(BATCH, CheckedBatch(events=entries))  # type: ignore[arg-type]  # the decoder's shape


KINDS = ["single", "batch", "checked"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_seq_at_or_below_the_cursor_under_the_same_name_is_a_duplicate(kind: str) -> None:
    route, seen, errors = router()
    send(route, kind, [("a", change(5)), ("a", change(5)), ("a", change(4)), ("a", change(6))])
    assert seen == [("a", 5), ("a", 6)] and route.cursor == 6 and errors == []
    assert route.metrics.duplicates == 2 and route.metrics.changes_applied == 2


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seq_under_another_subscription_id_is_applied(kind: str) -> None:
    """One change matching two subscriptions arrives once under each id, with one seq."""
    route, seen, _ = router()
    send(route, kind, [("a", change(5)), ("b", change(5)), ("b", change(5))])
    assert seen == [("a", 5), ("b", 5)] and route.cursor_event == "b" and route.metrics.duplicates == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_change_without_its_row_is_reported_and_the_cursor_stays(kind: str) -> None:
    route, seen, errors = router()
    no_row = {"seq": 3, "topic": "posts", "op": "UPDATE", "record": None, "old": None}
    send(route, kind, [("a", change(2)), ("a", no_row)])
    assert seen == [("a", 2)] and route.cursor == 2
    assert len(errors) == 1 and isinstance(errors[0], ProtocolError) and "needs 'record'" in str(errors[0])


# -- the DEBUG line: one per frame ---------------------------------------------------------------


class PostStore(TableStore[dict[str, Any]]):
    table = "posts"


FRAMES = {
    "c": change_frame("posts", 4, "INSERT", {"id": "p1"}),
    "b": batch_frame(
        [
            change_frame("posts", 4, "INSERT", {"id": "p1"}),
            change_frame("posts", 5, "UPDATE", {"id": "p1", "title": "edited"}),
            change_frame("posts", 6, "INSERT", {"id": "p2"}),
        ]
    ),
    "d": change_frame("posts", 6, "INSERT", {"id": "p2"}),
    "l": message_frame("post_liked", {"post": "p1"}),
}


def through_a_root() -> None:
    """Four frames (a change, a batch with a duplicate, a duplicate, a message) through a marble root."""
    with marbles() as m:
        m.root([PostStore()], server="-c-b-d-l", values=FRAMES)
        m.run()


def test_at_debug_each_frame_through_a_root_is_one_rootstore_line_and_when_off_no_record_is_made(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """rxstore.router at DEBUG: one [RootStore] line per frame received (name, events, seqs, applied,
    duplicates dropped, cursor); at INFO the same frames make no DEBUG record at all."""
    caplog.set_level(logging.INFO, logger="rxstore")
    with debug_records_made() as made:
        through_a_root()
    assert made == []
    caplog.set_level(logging.DEBUG, logger="rxstore.router")
    through_a_root()
    lines = debug_lines(caplog, "rxstore.router")
    assert all(line.startswith("[RootStore] ") for line in lines)
    assert [line for line in lines if "(control)" not in line] == [
        "[RootStore] post_update frame: events=1 seq=4 applied=1 duplicates=0 cursor=4",
        "[RootStore] rxstore:batch frame: events=3 seq=4-6 applied=2 duplicates=1 cursor=6",
        "[RootStore] post_update frame: events=1 seq=6 applied=0 duplicates=1 cursor=6",
        "[RootStore] post_liked frame: events=1 seq=- applied=0 duplicates=0 cursor=6",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_at_debug_the_router_logs_one_line_per_frame_of_every_kind(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Single changes, a batch of JSON, a batch the decoder checked: one line per frame, counts right."""
    caplog.set_level(logging.DEBUG, logger="rxstore.router")
    route, _, _ = router()
    send(route, kind, [("a", change(5)), ("a", change(5)), ("a", change(6))])
    lines = debug_lines(caplog, "rxstore.router")
    if kind == "single":
        assert lines == [
            "[RootStore] a frame: events=1 seq=5 applied=1 duplicates=0 cursor=5",
            "[RootStore] a frame: events=1 seq=5 applied=0 duplicates=1 cursor=5",
            "[RootStore] a frame: events=1 seq=6 applied=1 duplicates=0 cursor=6",
        ]
    else:
        assert lines == ["[RootStore] rxstore:batch frame: events=3 seq=5-6 applied=2 duplicates=1 cursor=6"]
