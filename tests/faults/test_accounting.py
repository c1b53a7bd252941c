"""The suite's own counters: each kind of fault in a client's timeline is counted, and only it."""

from __future__ import annotations

from rxstore.gateway.demo import Post
from tests.faults.harness import account

ROWS = {"p1": Post(id="p1", title="t")}
STATE = {
    "p1": {
        "id": "p1",
        "title": "t",
        "body": "",
        "author": "",
        "private": False,
        "likes": 0,
        "updated_at": 0.0,
    }
}


def report(timeline, received=None, seq=None, resets=0):
    changes = [seq for kind, seq in timeline if kind == "chg"]
    return {
        "name": "c",
        "timeline": timeline,
        "received": changes if received is None else received,
        "resets": resets,
        "root_duplicates": 0,
        "reconnects": 0,
        "errors": [],
        "seq": seq if seq is not None else max(s for _, s in timeline),
        "state": STATE,
    }


def test_a_clean_timeline_counts_nothing():
    counts = account(report([("snap", 2), ("chg", 3), ("chg", 4), ("chg", 5)]), [1, 2, 3, 4, 5], ROWS)
    assert counts.clean and counts.expected == 3 and counts.applied == 3


def test_a_missing_change_is_lost():
    counts = account(report([("snap", 2), ("chg", 3), ("chg", 5)]), [1, 2, 3, 4, 5], ROWS)
    assert (counts.lost, counts.duplicated, counts.out_of_order) == (1, 0, 0)


def test_a_change_applied_twice_is_duplicated_and_out_of_order():
    counts = account(report([("snap", 2), ("chg", 3), ("chg", 4), ("chg", 4), ("chg", 5)]), [3, 4, 5], ROWS)
    assert (counts.lost, counts.duplicated, counts.out_of_order) == (0, 1, 1)


def test_swapped_changes_are_out_of_order():
    counts = account(report([("snap", 2), ("chg", 4), ("chg", 3), ("chg", 5)]), [3, 4, 5], ROWS)
    assert (counts.lost, counts.duplicated, counts.out_of_order) == (0, 0, 1)


def test_a_snapshot_after_a_reset_covers_the_changes_it_folds():
    timeline = [("snap", 2), ("chg", 3), ("snap", 9), ("chg", 10)]
    counts = account(report(timeline, resets=1), list(range(1, 11)), ROWS)
    assert counts.clean and counts.resets == 1 and counts.snapshots == 2


def test_a_change_received_twice_on_the_wire_is_redelivered():
    counts = account(report([("snap", 2), ("chg", 3)], received=[3, 3]), [3], ROWS)
    assert counts.redelivered == 1 and not counts.clean


def test_a_client_behind_the_log_or_unequal_to_the_database_is_not_clean():
    behind = account(report([("snap", 2), ("chg", 3)], seq=3), [3, 4], ROWS)
    assert behind.lost == 1 and not behind.caught_up
    unequal = account(report([("snap", 2)]), [], {"p2": Post(id="p2", title="x")})
    assert not unequal.state_equal and not unequal.clean
