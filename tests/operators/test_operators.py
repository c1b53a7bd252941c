"""rxstore.operators and the keyed views of rxstore.client.router: stores as filter + scan pipelines."""

from __future__ import annotations

from typing import Any

import attrs
from reactivex.subject import BehaviorSubject, Subject

from rxstore import DomainStore, Event, RootStore, StoreError, TableStore
from rxstore.operators import filter_events, named, safe_scan, safe_scan_frames
from rxstore.protocol.errors import RxStoreError
from rxstore.testing import VirtualLink, batch_frame, change_frame, marbles, message_frame


@attrs.frozen
class Count:
    n: int = 0


class Counter(DomainStore[Count]):
    accepts = ("tick",)
    initial = Count()

    def reduce(self, state: Count, event: Event) -> Count:
        if event.data == "boom":
            raise ValueError("boom")
        return Count(state.n + 1)


class Posts(TableStore[dict[str, Any]]):
    table = "posts"


def connected(*stores: Any) -> RootStore:
    link = VirtualLink()
    root = RootStore("virtual://", stores=stores, transport=link)
    link.root = root
    root.setup_domain_event_handlers()
    link.accept()
    return root


def test_a_batch_of_a_store_s_events_is_one_notification_of_its_state() -> None:
    counter = Counter()
    root = connected(counter)
    seen: list[Count] = []
    counter.state.subscribe(seen.append)
    root.router.on_frame(
        "rxstore:batch", batch_frame([message_frame("tick")] * 5 + [message_frame("x")]).data
    )
    root.router.on_frame("rxstore:batch", batch_frame([message_frame("tick")] * 3).data)
    assert seen == [Count(0), Count(5), Count(8)]


def test_a_keyed_view_emits_one_frame_of_its_names_per_incoming_frame() -> None:
    root = connected()
    frames: list[tuple[str, ...]] = []
    root.events_named("a", "b").subscribe(lambda frame: frames.append(tuple(e.name for e in frame)))
    batch = batch_frame([message_frame(n) for n in ("a", "c", "b", "a")])
    root.router.on_frame(batch.name, batch.data)
    root.router.on_frame("c", None)
    root.router.on_frame("b", None)
    assert frames == [("a", "b", "a"), ("b",)]


def test_stores_of_other_names_are_never_asked_about_an_event() -> None:
    """O(1) in the number of stores: 100 idle stores are not called for the hot store's events."""
    folded: list[str] = []

    class Idle(DomainStore[int]):
        initial = 0

        def reduce_batch(self, state: int, events: Any) -> int:
            folded.append(self.name)
            return state

    idle = [type(f"Idle{i}", (Idle,), {"accepts": (f"idle{i}",)})() for i in range(100)]
    counter = Counter()
    root = connected(counter, *idle)
    for _ in range(3):
        root.router.on_frame("tick", None)
    assert counter.value == Count(3) and folded == []
    assert len(root.router.events.routes["tick"]) == 1


def test_stores_with_the_same_names_share_one_view_and_both_fold() -> None:
    first, second = Counter(name="first"), Counter(name="second")
    root = connected(first, second)
    root.router.on_frame("tick", None)
    assert first.value == second.value == Count(1)
    assert len(root.router.events.views()) == 1


def test_a_raising_reducer_is_reported_on_store_and_root_errors_and_the_pipeline_goes_on() -> None:
    counter = Counter()
    root = connected(counter)
    store_errors: list[RxStoreError] = []
    root_errors: list[RxStoreError] = []
    counter.errors.subscribe(store_errors.append)
    root.errors.subscribe(root_errors.append)
    for data in (None, "boom", None):
        root.router.on_frame("tick", data)
    assert counter.value == Count(2)
    assert [type(e) for e in store_errors] == [StoreError] and root_errors == store_errors


def test_a_raising_state_subscriber_is_reported_and_other_stores_still_get_the_frame() -> None:
    first, second = Counter(name="first"), Counter(name="second")
    root = connected(first, second)
    errors: list[RxStoreError] = []
    root.errors.subscribe(errors.append)

    def explode(state: Count) -> None:
        if state.n:
            raise RuntimeError("subscriber")

    first.state.subscribe(explode)
    root.router.on_frame("tick", None)
    assert second.value == Count(1) and first.value == Count(1)
    assert [str(error.__cause__) for error in errors] == ["subscriber"]


def test_reset_and_apply_reseed_the_scan() -> None:
    """The scan continues from the state that reset() or apply() left, not from its own last one."""
    counter = Counter()
    root = connected(counter)
    root.router.on_frame("tick", None)
    counter.reset()
    root.router.on_frame("tick", None)
    assert counter.value == Count(1)
    counter.apply([Event("tick")] * 3)
    root.router.on_frame("tick", None)
    assert counter.value == Count(5)


def test_table_store_reset_reseeds_its_scan() -> None:
    posts = Posts()
    root = connected(posts)
    for seq, key in ((1, "a"), (2, "b")):
        frame = change_frame("posts", seq, "INSERT", {"id": key})
        root.router.on_frame(frame.name, frame.data)
        if seq == 1:
            posts.reset()
    assert list(posts.value) == ["b"]


async def test_after_teardown_the_views_have_no_subscriber() -> None:
    counter = Counter()
    root = connected(counter)
    assert [len(view.observers) for view in root.router.events.views()] == [1]
    await root.teardown_realtime()
    assert [len(view.observers) for view in root.router.events.views()] == [0]


def test_named_on_any_stream_makes_each_event_its_own_frame() -> None:
    events: Subject[Event] = Subject()
    frames: list[Any] = []
    events.pipe(named("a")).subscribe(frames.append)
    for name in ("a", "b", "a"):
        events.on_next(Event(name))
    assert frames == [(Event("a"),), (Event("a"),)]


def test_safe_scan_skips_the_event_that_raises_and_emits_once_per_frame() -> None:
    """Marble: frames -a-(b x)-c- with x raising give states -A-B---C-."""
    errors: list[RxStoreError] = []

    def add(total: int, event: Event) -> int:
        return total + int(event.data)

    values = {"a": (Event("n", 1),), "b": (Event("n", 2), Event("n", "x")), "c": (Event("n", 4),)}
    with marbles() as m:
        states = m.record(m.hot("-a-b-c", values).pipe(safe_scan(add, 0, on_error=errors.append)))
        m.run()
    assert states == m.expected("-a-b-c", {"a": 1, "b": 3, "c": 7})
    assert len(errors) == 1 and isinstance(errors[0], StoreError) and errors[0].event == Event("n", "x")


def test_safe_scan_frames_leaves_the_state_when_the_fold_raises_and_goes_on() -> None:
    def fold(total: int, frame: Any) -> int:
        if frame[0].data is None:
            raise KeyError("no data")
        return total + len(frame)

    errors: list[RxStoreError] = []
    state = BehaviorSubject(0)
    frames: Subject[Any] = Subject()
    frames.pipe(safe_scan_frames(fold, 0, on_error=errors.append)).subscribe(state.on_next)
    frames.on_next((Event("n", 1), Event("n", 2)))
    frames.on_next((Event("n"),))
    frames.on_next((Event("n", 3),))
    assert state.value == 3 and len(errors) == 1


def test_filter_events_keeps_what_the_predicate_accepts_and_reports_what_raises() -> None:
    errors: list[RxStoreError] = []
    kept: list[Any] = []
    frames: Subject[Any] = Subject()
    frames.pipe(filter_events(lambda e: e.data["ok"], on_error=errors.append)).subscribe(kept.append)
    frames.on_next((Event("n", {"ok": True}), Event("n", {}), Event("n", {"ok": False})))
    frames.on_next((Event("n", {"ok": False}),))
    assert kept == [[Event("n", {"ok": True})]] and len(errors) == 1


def test_safe_scan_on_a_keyed_view_reports_to_root_errors_by_default() -> None:
    root = connected()
    errors: list[RxStoreError] = []
    root.errors.subscribe(errors.append)
    state = BehaviorSubject(0)
    root.events_named("n").pipe(safe_scan(lambda total, e: total + e.data, 0)).subscribe(state.on_next)
    for data in (1, "x", 2):
        root.router.on_frame("n", data)
    assert state.value == 3 and [type(e) for e in errors] == [StoreError]


def test_a_store_on_a_stream_that_errors_keeps_its_state_and_raises_nothing() -> None:
    """Marble: events -t-# keep the state of t; the error is logged, not raised into the scheduler."""
    with marbles() as m:
        counter = Counter()
        counter.setup_realtime_handlers(m.hot("-t-#", {"t": Event("tick")}, error=ValueError("gone")))
        states = m.record(counter.state)
        m.run()
    assert states == m.expected("01", {"0": Count(0), "1": Count(1)})
