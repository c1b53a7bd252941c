"""rxstore.client.metrics: the counters a root keeps, their snapshots, percentiles and the snapshot stream."""

from __future__ import annotations

import time

import attrs
import pytest
from reactivex import operators as ops

from rxstore import Backoff, RootStore, TableStore
from rxstore.client.metrics import Metrics, MetricsSnapshot, percentile
from rxstore.testing import Frame, VirtualLink, batch_frame, change_frame, marbles, message_frame, on_next
from tests.waiting import wait_for


@attrs.frozen
class Post:
    id: str
    title: str = ""


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


def linked_root() -> tuple[RootStore, VirtualLink]:
    """A root on a VirtualLink, connected and live."""
    link = VirtualLink()
    root = RootStore("virtual://gateway", stores=[PostStore()], transport=link)
    link.root = root
    root.setup_domain_event_handlers()
    link.accept()
    return root, link


def insert(seq: int) -> Frame:
    return change_frame("posts", seq, "INSERT", {"id": f"p{seq}", "title": "t"})


# -- percentile -----------------------------------------------------------------------------------


def test_percentile_is_the_nearest_rank_of_the_sorted_values() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert [percentile(values, q) for q in (0.0, 0.01, 0.5, 0.99, 1.0)] == [1.0, 1.0, 50.0, 99.0, 100.0]
    assert percentile([7.0], 0.99) == 7.0


# -- Metrics on its own ---------------------------------------------------------------------------


def test_a_fresh_snapshot_is_all_zero_with_no_lag_and_no_cursor() -> None:
    assert Metrics().snapshot() == MetricsSnapshot(
        events=0,
        frames=0,
        changes_applied=0,
        duplicates=0,
        errors=0,
        reconnects=0,
        replayed=0,
        outbox_depth=0,
        events_per_second=0.0,
        lag_seconds=None,
        lag_p99_seconds=None,
        cursor=None,
    )


def test_reduce_time_starts_at_the_first_sample_per_event_then_moves_a_tenth_towards_each_new_one() -> None:
    metrics = Metrics()
    metrics.record_reduce("posts", 0.010, 10)  # 1 ms per event
    assert metrics.snapshot().reduce_seconds == {"posts": pytest.approx(0.001)}
    metrics.record_reduce("posts", 0.011, 1)  # 11 ms: the mean moves 1 ms
    metrics.record_reduce("users", 0.002, 1)
    assert metrics.snapshot().reduce_seconds == {"posts": pytest.approx(0.002), "users": pytest.approx(0.002)}


def test_lag_is_the_last_commit_to_receive_time_and_p99_the_recent_tail() -> None:
    metrics = Metrics()
    now = time.time()
    for seconds in [0.1] * 97 + [5.0, 5.0, 0.2]:  # the 99th of 100 by rank is 5 s
        metrics.record_lag(now - seconds)
    snapshot = metrics.snapshot()
    assert snapshot.lag_seconds == pytest.approx(0.2, abs=0.5)
    assert snapshot.lag_p99_seconds == pytest.approx(5.0, abs=0.5)


def test_the_event_rate_is_measured_between_two_snapshots() -> None:
    metrics = Metrics()
    started = time.monotonic()
    metrics.snapshot()
    metrics.events += 100
    time.sleep(0.1)  # the point: the interval the rate is measured over
    rate = metrics.snapshot().events_per_second
    elapsed = time.monotonic() - started
    assert 100 / elapsed <= rate <= 100 / 0.1


def events_of(snapshot: MetricsSnapshot) -> int:
    return snapshot.events


def test_snapshots_emit_every_interval_on_the_given_scheduler() -> None:
    with marbles() as m:
        metrics = Metrics()
        m.at(3, lambda: setattr(metrics, "events", 1))
        m.at(12, lambda: setattr(metrics, "events", 5))
        counts = m.record(metrics.snapshots(5.0, scheduler=m.scheduler).pipe(ops.map(events_of), ops.take(3)))
        m.run()
    assert counts[:3] == [on_next(5, 1), on_next(10, 1), on_next(15, 5)]


# -- the counters a root keeps ---------------------------------------------------------------------


def test_a_root_counts_frames_events_changes_and_duplicates() -> None:
    root, link = linked_root()
    link.send(insert(1))
    link.send(batch_frame([insert(2), insert(3), message_frame("post_liked", {"id": "p1"})]))
    link.send(insert(2))  # already applied: a duplicate
    link.send(message_frame("post_liked", {"id": "p2"}))
    snapshot = root.metrics.snapshot()
    assert (snapshot.frames, snapshot.events) == (5, 6)  # frames: rxstore:live at accept too
    assert (snapshot.changes_applied, snapshot.duplicates) == (3, 1)
    assert snapshot.errors == 0


def test_the_metrics_cursor_follows_a_batch_that_ends_with_a_message() -> None:
    root, link = linked_root()
    link.send(insert(1))
    link.send(batch_frame([insert(2), insert(3), message_frame("post_liked", {"id": "p1"})]))
    assert root.cursor == 3
    assert root.metrics.snapshot().cursor == 3


async def test_a_root_counts_reconnects_and_the_changes_replayed_after_one() -> None:
    link = VirtualLink()
    root = RootStore(
        "virtual://gateway", stores=[PostStore()], transport=link, backoff=Backoff(initial=0.01, jitter=0)
    )
    link.root = root
    async with root:
        link.send(insert(1))
        link.drop()
        link.send(insert(2))  # while down: replayed on the next accept
        link.send(insert(3))
        await wait_for(lambda: root.metrics.reconnects == 1 and root.cursor == 3, 5, "the reconnect")
        snapshot = root.metrics.snapshot()
    assert (snapshot.reconnects, snapshot.replayed, snapshot.cursor) == (1, 2, 3)


def test_a_root_counts_a_malformed_change_as_an_error() -> None:
    root, link = linked_root()
    link.send(message_frame("post_update", {"seq": 1, "topic": "posts", "op": "DROP"}))
    assert root.metrics.snapshot().errors == 1


def test_metrics_sample_reduce_time_per_store() -> None:
    root, link = linked_root()
    for seq in range(1, 65):
        link.send(insert(seq))
    snapshot = root.metrics.snapshot()
    assert snapshot.changes_applied == 64 and snapshot.cursor == 64
    assert 0 < snapshot.reduce_seconds["PostStore"] < 0.1
