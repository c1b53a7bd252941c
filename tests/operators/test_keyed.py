"""rxstore.operators.keyed: the root's stream and its keyed views (one view per set of names)."""

from __future__ import annotations

from typing import Any

from rxstore import Event, StoreError
from rxstore.client.metrics import Metrics
from rxstore.operators.keyed import EventStream, KeyedView, named


def stream(errors: list[Any] | None = None) -> EventStream:
    return EventStream(Metrics(), (errors if errors is not None else []).append)


def test_views_of_the_same_names_are_one_view_routed_by_each_name() -> None:
    events = stream()
    view = events.named("a", "b")
    assert events.named("b", "a") is view
    assert events.routes["a"] == (view,) and events.routes["b"] == (view,)
    assert events.views() == (view,)


def test_a_raising_subscriber_is_reported_and_the_others_still_get_the_frame() -> None:
    errors: list[Any] = []
    events = stream(errors)
    view = events.named("a")
    assert isinstance(view, KeyedView)
    got: list[Any] = []

    def boom(frame: Any) -> None:
        raise KeyError("x")

    view.subscribe(boom)
    view.subscribe(got.append)
    frame = (Event("a", 1),)
    view.emit(frame)
    assert got == [frame] and len(errors) == 1 and isinstance(errors[0], StoreError)


def test_named_on_any_other_stream_makes_one_frame_per_event() -> None:
    from reactivex.subject import Subject

    source: Subject[Event] = Subject()
    frames: list[Any] = []
    source.pipe(named("a")).subscribe(frames.append)
    for name in "abca":
        source.on_next(Event(name, None))
    assert [[e.name for e in frame] for frame in frames] == [["a"], ["a"]]
