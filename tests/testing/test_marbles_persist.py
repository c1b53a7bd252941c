"""A root started from its state file in virtual time: ``m.root(..., persist=..., gateway=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from reactivex import operators as ops

from rxstore import SyncStatus, TableStore
from rxstore.testing import VirtualGateway, marbles, write


@attrs.frozen
class Post:
    id: str
    title: str = ""


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


class Recent(TableStore[dict[str, Any]]):
    table = "posts"
    event = "recent"


class ByAnn(TableStore[dict[str, Any]]):
    table = "posts"
    event = "by_ann"


def newest() -> Recent:
    """A window: the 2 posts with the highest ids."""
    return Recent(order_by=[("id", "desc")], limit=2)


ROWS = [{"id": "p1", "title": "a"}, {"id": "p2", "title": "b"}]


def titles(state: Any) -> tuple[str, ...]:
    return tuple(sorted(post.title for post in state.values()))


def sync(status: SyncStatus) -> tuple[str, bool]:
    return status.state.value, status.from_disk


def first_run(state: Path) -> VirtualGateway:
    """A root follows the virtual gateway's posts (one update live), is torn down: its file written."""
    with marbles() as m:
        posts = PostStore()
        root = m.root([posts], tables={"posts": ROWS}, persist=state, server="-u", values={
            "u": write("posts", "UPDATE", {"id": "p1", "title": "a2"}),
        })  # fmt: skip
        m.call(3, root.teardown_realtime)
        m.run()
        assert titles(posts.value) == ("a2", "b")
    assert m.gateway is not None
    return m.gateway


def test_a_restarted_root_shows_its_file_at_tick_0_and_the_gateway_resumes_from_its_cursor(
    tmp_path: Path,
) -> None:
    """The state file of a first run (cursor 1) and a change written while the app was down
    (seq 2): the restarted root shows the file's rows at tick 0, marked ``from_disk``, before any
    connect; when the link comes up (tick 2) it sends cursor 1 and gets only the missed change,
    no snapshot, and is live, no longer from disk."""
    state = tmp_path / "state.db"
    gateway = first_run(state)
    gateway.write(write("posts", "INSERT", {"id": "p3", "title": "while down"}))  # nobody connected

    with marbles() as m:
        posts = PostStore()
        root = m.root([posts], gateway=gateway, persist=state, link="--c")
        cursors: list[int | None] = []
        m.link.attempts.subscribe(lambda auth: cursors.append(auth["cursor"]))
        shown = m.record(posts.state.pipe(ops.map(titles)))
        status = m.record(posts.status.pipe(ops.map(sync)))
        m.call(4, root.teardown_realtime)
        m.run()

    assert shown == m.expected("(ab)-c", {"a": (), "b": ("a2", "b"), "c": ("a2", "b", "while down")})
    assert status == m.expected("(ab)-(cd)-e", {
        "a": ("stale", False), "b": ("stale", True), "c": ("replaying", True), "d": ("live", False),
        "e": ("stale", False),  # torn down
    })  # fmt: skip
    assert cursors == [1]
    assert not [f for f in m.link.sent if f.name == "rxstore:snapshot"]


def test_a_third_start_resumes_from_what_the_second_wrote(tmp_path: Path) -> None:
    """The restarted root writes its file too: a third start shows the rows the second one
    ended with, and connects with the second run's cursor."""
    state = tmp_path / "state.db"
    gateway = first_run(state)
    gateway.write(write("posts", "DELETE", {"id": "p2"}))
    with marbles() as m:
        second = m.root([PostStore()], gateway=gateway, persist=state)
        m.call(2, second.teardown_realtime)
        m.run()
    with marbles() as m:
        posts = PostStore()
        third = m.root([posts], gateway=gateway, persist=state, link="-c")
        cursors: list[int | None] = []
        m.link.attempts.subscribe(lambda auth: cursors.append(auth["cursor"]))
        m.at(0, lambda: shown.append(titles(posts.value)))
        shown: list[tuple[str, ...]] = []
        m.call(3, third.teardown_realtime)
        m.run()
    assert shown == [("a2",)] and cursors == [2]


def test_tables_and_gateway_together_are_refused() -> None:
    """``tables=`` makes a new virtual gateway, ``gateway=`` reuses one: not both."""
    with marbles() as m, pytest.raises(ValueError, match="not both"):
        m.root([PostStore()], tables={"posts": ROWS}, gateway=VirtualGateway(m.loop, {}))  # type: ignore[arg-type]


def test_a_window_and_a_subset_restart_from_disk_and_follow_the_gateway_after(tmp_path: Path) -> None:
    """A window (the 2 newest posts) and a subset (author ann) come back from the file at tick 0,
    in the window's order; a post written while the app was down enters the window (the
    gateway reads a window fresh on a reconnect) and the subset, and the oldest leaves the window."""
    rows = [{"id": f"p{i}", "title": f"t{i}", "author": "ann" if i % 2 else "bob"} for i in range(1, 5)]
    state = tmp_path / "state.db"
    with marbles() as m:
        first = m.root([newest(), ByAnn(where={"author": "ann"})], tables={"posts": rows}, persist=state)
        m.call(1, first.teardown_realtime)
        m.run()
    gateway = m.gateway
    assert gateway is not None
    gateway.write(write("posts", "INSERT", {"id": "p5", "title": "t5", "author": "ann"}))

    with marbles() as m:
        recent, by_ann = newest(), ByAnn(where={"author": "ann"})
        root = m.root([recent, by_ann], gateway=gateway, persist=state, link="--c")
        at_start: list[tuple[list[str], list[str]]] = []
        m.at(0, lambda: at_start.append(([p["id"] for p in recent.value.ordered()], sorted(by_ann.value))))
        m.call(3, root.teardown_realtime)
        m.run()
    assert at_start == [(["p4", "p3"], ["p1", "p3"])]
    assert [p["id"] for p in recent.value.ordered()] == ["p5", "p4"]
    assert sorted(by_ann.value) == ["p1", "p3", "p5"]
