"""Who sees what, without a server: :mod:`rxstore.gateway.queries.visibility`'s pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from rxstore.gateway.access.auth import User
from rxstore.gateway.queries.visibility import events_for, fail_closed, visible_change
from rxstore.protocol.events import Change, Op

ALICE = User("alice")


def public(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """The row filter of these tests: a row is visible unless it is private."""
    return not row.get("private")


def change(op: Op, record: dict[str, Any] | None, old: dict[str, Any] | None, seq: int = 1) -> Change:
    return Change(seq=seq, topic="posts", op=op, record=record, old=old, ts=0.0)


SHOWN = {"id": "p1", "title": "a", "private": False}
HIDDEN = {"id": "p1", "title": "a", "private": True}


@pytest.mark.parametrize(
    ("op", "record", "old"),
    [(Op.INSERT, HIDDEN, None), (Op.UPDATE, HIDDEN, HIDDEN), (Op.DELETE, None, HIDDEN)],
)
def test_a_change_of_a_row_hidden_before_and_after_vanishes(
    op: Op, record: dict[str, Any] | None, old: dict[str, Any] | None
) -> None:
    assert visible_change(public, ALICE, change(op, record, old), "id") is None


@pytest.mark.parametrize(
    ("op", "record", "old"),
    [(Op.INSERT, SHOWN, None), (Op.UPDATE, SHOWN, SHOWN), (Op.DELETE, None, SHOWN)],
)
def test_a_change_of_a_row_visible_before_and_after_is_sent_as_it_is(
    op: Op, record: dict[str, Any] | None, old: dict[str, Any] | None
) -> None:
    original = change(op, record, old)
    assert visible_change(public, ALICE, original, "id") is original


def test_an_update_that_reveals_a_row_is_sent_as_an_insert_without_the_old_row() -> None:
    seen = visible_change(public, ALICE, change(Op.UPDATE, SHOWN, HIDDEN), "id")
    assert seen is not None
    assert (seen.op, seen.record, seen.old) == (Op.INSERT, SHOWN, None)


def test_an_update_that_hides_a_row_is_sent_as_a_delete_of_the_old_row() -> None:
    seen = visible_change(public, ALICE, change(Op.UPDATE, HIDDEN, SHOWN), "id")
    assert seen is not None
    assert (seen.op, seen.record, seen.old) == (Op.DELETE, None, SHOWN)


def test_an_update_hiding_a_row_without_its_old_row_is_a_delete_of_its_key() -> None:
    seen = visible_change(public, ALICE, change(Op.UPDATE, {**HIDDEN, "id": "p9"}, None), "id")
    assert seen is not None
    assert (seen.op, seen.record, seen.old) == (Op.DELETE, None, {"id": "p9"})


NAMES = {"posts": "post_update", "notes": "note_update"}
KEYS = {"posts": "id", "notes": "id"}


def events(changes: list[Change], **options: Any) -> list[Any]:
    """``events_for`` with these tests' topics; ``options`` override its defaults."""
    arguments: dict[str, Any] = {
        "user": ALICE,
        "topics": frozenset({"posts"}),
        "cursor": 0,
        "skip": frozenset(),
        "authorize": None,
        "names": NAMES,
        "primary_keys": KEYS,
        "key_only": {},
    }
    return events_for(changes, **(arguments | options))


def test_events_leave_out_what_the_client_has_other_topics_and_its_snapshots_rows() -> None:
    changes = [
        change(Op.INSERT, SHOWN, None, seq=1),  # at the cursor: the client has it
        change(Op.UPDATE, SHOWN, SHOWN, seq=2),  # in the skip set: in its snapshot already
        Change(seq=3, topic="notes", op=Op.INSERT, record={"id": "n1"}, old=None, ts=0.0),
        change(Op.DELETE, None, SHOWN, seq=4),
    ]
    sent = events(changes, cursor=1, skip=frozenset({2}))
    assert [(name, payload["seq"]) for name, payload in sent] == [("post_update", 4)]


def test_events_apply_the_row_filter_and_send_a_hidden_row_as_a_delete() -> None:
    changes = [change(Op.INSERT, HIDDEN, None, seq=1), change(Op.UPDATE, HIDDEN, SHOWN, seq=2)]
    sent = events(changes, authorize=public)
    assert [(payload["seq"], payload["op"], payload["record"]) for _, payload in sent] == [
        (2, "DELETE", None)
    ]


def test_events_of_a_key_only_topic_carry_only_the_old_rows_key() -> None:
    sent = events([change(Op.UPDATE, SHOWN, HIDDEN | {"body": "x" * 100})], key_only={"posts": "id"})
    assert sent[0][1]["old"] == {"id": "p1"}
    assert events([change(Op.UPDATE, SHOWN, HIDDEN)])[0][1]["old"] == HIDDEN  # "full": all of it


def test_a_row_filter_that_raises_denies_the_row_and_reports_it() -> None:
    failures: list[tuple[str, str, str]] = []

    def broken(user: User, topic: str, row: Mapping[str, Any]) -> bool:
        if row.get("private"):
            raise KeyError("tenant")
        return True

    guarded = fail_closed(broken, lambda user, topic, exc: failures.append((user.id, topic, repr(exc))))
    assert guarded(ALICE, "posts", SHOWN) is True
    assert guarded(ALICE, "posts", HIDDEN) is False
    assert failures == [("alice", "posts", "KeyError('tenant')")]
    assert events([change(Op.INSERT, HIDDEN, None)], authorize=guarded) == []
