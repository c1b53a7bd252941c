"""Pending writes: a table store (and each row) says whether it shows optimistic rows not yet confirmed."""

from __future__ import annotations

from typing import Any

import attrs

from rxstore import Event, EventKind, TableStore
from rxstore.protocol.events import parse_change
from rxstore.testing import change_frame, snapshot


@attrs.frozen
class Post:
    id: str
    title: str = ""


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


def confirmed(seq: int, key: str, title: str, mutation: str | None = None) -> Event:
    """The change of ``key`` as the log sends it back (carrying the mutation's id when it wrote it)."""
    data = dict(change_frame("posts", seq, "UPDATE", {"id": key, "title": title}).data)
    if mutation is not None:
        data["mutation"] = mutation
    return Event("post_update", data, EventKind.CHANGE, seq, parse_change(data))


def recorded(store: PostStore) -> list[tuple[str, Any]]:
    """The store's states and pending-writes flags, interleaved as they are emitted."""
    seen: list[tuple[str, Any]] = []
    store.state.subscribe(lambda s: seen.append(("state", s.get("p1"))))
    store.pending_writes.subscribe(lambda p: seen.append(("pending", p)))
    seen.clear()
    return seen


def test_the_flag_turns_on_with_the_optimistic_state_and_off_after_the_confirmed_one() -> None:
    """``pending_writes`` emits ``True`` right after the state showing the optimistic row, and
    ``False`` right after the state in which the mutation's change replaced it: a UI bound to
    it never shows "saved" beside the optimistic value."""
    posts = PostStore()
    posts.apply([snapshot("posts", 1, [{"id": "p1", "title": "old"}])])
    seen = recorded(posts)
    assert not posts.has_pending_writes

    posts.add_pending("m1", {"p1": Post("p1", "mine")})
    assert posts.has_pending_writes and posts.has_pending_write("p1") and not posts.has_pending_write("p2")
    posts.apply([confirmed(2, "p1", "logged", mutation="m1")])

    assert seen == [
        ("state", Post("p1", "mine")),
        ("pending", True),
        ("state", Post("p1", "logged")),
        ("pending", False),
    ]
    assert not posts.has_pending_writes and not posts.has_pending_write("p1")


def test_the_flag_emits_only_when_it_changes_and_a_row_stays_pending_while_any_mutation_writes_it() -> None:
    """Two mutations write ``p1``, one also ``p2``: settling one leaves ``p1`` pending (the other
    still writes it) and emits nothing; the flag goes off with the last one; a change of another
    mutation settles nothing."""
    posts = PostStore()
    seen = recorded(posts)
    posts.add_pending("m1", {"p1": Post("p1", "a"), "p2": Post("p2", "a")})
    posts.add_pending("m2", {"p1": Post("p1", "b")})
    assert [flag for what, flag in seen if what == "pending"] == [True]

    posts.apply([confirmed(1, "p1", "a", mutation="m1")])
    assert posts.has_pending_write("p1") and not posts.has_pending_write("p2")
    posts.apply([confirmed(2, "p9", "x", mutation="other")])
    assert posts.pending == ("m2",)
    posts.apply([confirmed(3, "p1", "b", mutation="m2")])
    assert [flag for what, flag in seen if what == "pending"] == [True, False]
    assert not posts.has_pending_write("p1")


def test_a_rollback_and_a_reset_turn_the_flag_off() -> None:
    """A mutation dropped (refused, timed out) and a reset clear the pending rows and the flag."""
    posts = PostStore()
    flags: list[bool] = []
    posts.pending_writes.subscribe(flags.append)
    posts.add_pending("m1", {"p1": None})  # an optimistic delete
    assert posts.has_pending_write("p1")
    posts.drop_pending("m1")
    posts.add_pending("m2", {"p2": Post("p2")})
    posts.reset()
    assert flags == [False, True, False, True, False]
    assert not posts.has_pending_writes and not posts.has_pending_write("p2")


def test_the_same_mutation_id_shown_again_replaces_its_rows() -> None:
    """A mutation re-added with other rows (a recovered one) counts its rows once."""
    posts = PostStore()
    posts.add_pending("m1", {"p1": Post("p1")})
    posts.add_pending("m1", {"p2": Post("p2")})
    assert not posts.has_pending_write("p1") and posts.has_pending_write("p2")
    posts.drop_pending("m1")
    assert not posts.has_pending_writes and not posts.has_pending_write("p2")


def test_a_mutations_change_settles_the_earlier_ones_whose_changes_came_inside_a_snapshot() -> None:
    """m1 and m2 write p1 in turn; a snapshot read after m1 holds its row (no id travels in a
    snapshot), then m2's change comes: m1 settles with it, so its older row does not cover m2's."""
    posts = PostStore()
    posts.add_pending("m1", {"p1": Post("p1", "first")})
    posts.add_pending("m2", {"p1": Post("p1", "second")})
    posts.add_pending("m3", {"p2": Post("p2", "third")})
    posts.apply([snapshot("posts", 1, [{"id": "p1", "title": "first"}])])
    posts.apply([confirmed(2, "p1", "second", mutation="m2")])

    assert posts.value["p1"] == Post("p1", "second")
    assert posts.pending == ("m3",) and not posts.has_pending_write("p1") and posts.has_pending_write("p2")


def test_a_late_subscriber_gets_the_current_flag() -> None:
    """Subscribing to ``pending_writes`` while a write is pending gives ``True`` at once."""
    posts = PostStore()
    posts.add_pending("m1", {"p1": Post("p1")})
    flags: list[bool] = []
    posts.pending_writes.subscribe(flags.append)
    posts.drop_pending("m1")
    assert flags == [True, False]
