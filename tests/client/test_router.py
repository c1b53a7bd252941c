"""rxstore.client.router: the per-change rules (row present, cursor dedupe) for every kind of frame."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from rxstore import ProtocolError
from rxstore.client.metrics import Metrics
from rxstore.client.router import Router
from rxstore.protocol.events import BATCH
from rxstore.protocol.frames import CheckedBatch


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
