"""rxstore.testing's virtual gateway serves windows and claims, so a window is marble-testable.

A window store (the newest 2 of the user's own messages, ``{"claim": "sub"}``
filled from ``claims=``) in virtual time: a newer row comes in with the last one
``out`` in the same frame, a deleted row brings the next one back (a refill,
a snapshot at that write's seq), and the store never holds more than 2 rows.
"""

from __future__ import annotations

from typing import Any

from rxstore import TableStore
from rxstore.protocol.subsets import MAX_LIMIT, Claim, SubsetError
from rxstore.testing import marbles, on_next, write


class Inbox(TableStore[dict[str, Any]]):
    table = "messages"


ROWS = [
    {"id": 1, "owner": "ann", "ts": 1},
    {"id": 2, "owner": "ann", "ts": 2},
    {"id": 3, "owner": "bob", "ts": 9},
    {"id": 4, "owner": "ann", "ts": 3},
]


def test_a_window_of_my_rows_moves_rows_out_and_refills_in_virtual_time() -> None:
    """INSERT with out at tick 2, a refill after a delete at tick 4, an UPDATE in place at tick 6."""
    with marbles() as m:
        inbox = Inbox(where=[("owner", "=", Claim("sub"))], order_by=[("ts", "desc")], limit=2, event="mine")
        m.root(
            [inbox],
            tables={"messages": ROWS},
            claims={"sub": "ann"},
            server="--a-b-c-d",
            values={
                "a": write("messages", "INSERT", {"id": 5, "owner": "ann", "ts": 7}),  # 2 moves out
                "b": write("messages", "DELETE", {"id": 5}),  # leaves the full window: 2 comes back
                "c": write("messages", "UPDATE", {"id": 4, "owner": "ann", "ts": 4}),  # stays first
                "d": write("messages", "INSERT", {"id": 6, "owner": "bob", "ts": 8}),  # not mine
            },
        )
        ids = m.record(inbox.select(lambda state: [r["id"] for r in state.ordered()]))
        sizes = m.record(inbox.select(len))
        m.run()
    assert ids == [on_next(0, []), on_next(0, [4, 2]), on_next(2, [5, 4]), on_next(4, [4, 2])]
    assert sizes and all(size in [on_next(size.time, n) for n in range(3)] for size in sizes)  # <= 2 rows
    assert inbox.value[4]["ts"] == 4
    gateway = m.gateway
    assert gateway is not None and gateway.windows["mine"] == [4, 2]


def test_an_insert_into_a_full_window_carries_out_and_a_refill_is_a_snapshot() -> None:
    """The frames the virtual gateway sends a window: INSERT + out, then rxstore:snapshot (not a DELETE)."""
    with marbles() as m:
        inbox = Inbox(order_by=[("ts", "desc")], limit=2, event="newest")
        root = m.root(
            [inbox],
            tables={"messages": ROWS[:2]},
            server="-a-b",
            values={
                "a": write("messages", "INSERT", {"id": 7, "owner": "ann", "ts": 5}),
                "b": write("messages", "DELETE", {"id": 7}),
            },
        )
        seen: list[tuple[str, Any]] = []
        root.events_named("newest").subscribe(
            lambda frame: seen.extend((e.kind.value, e.data.get("out") if e.change else None) for e in frame)
        )
        m.run()
    assert seen == [("snapshot", None), ("change", [{"id": 1}]), ("snapshot", None)]
    assert [r["id"] for r in inbox.value.ordered()] == [2, 1]


def test_more_adds_a_page_of_the_rows_after_the_last_and_a_newer_row_then_moves_the_new_last_out() -> None:
    """more(2) at tick 2: a page of the next rows only; at tick 4 a newer row enters the window of 4."""
    with marbles() as m:
        inbox = Inbox(order_by=[("ts", "desc")], limit=2, event="newest")
        root = m.root(
            [inbox],
            tables={"messages": ROWS},
            server="----a",
            values={"a": write("messages", "INSERT", {"id": 8, "owner": "ann", "ts": 10})},
        )
        added = m.call(2, lambda: inbox.more(2))
        seen: list[tuple[str, Any]] = []
        root.events_named("newest").subscribe(
            lambda frame: seen.extend(
                (e.kind.value, [r["id"] for r in e.data.records]) for e in frame if not e.change
            )
        )
        ids = m.record(inbox.select(lambda state: [r["id"] for r in state.ordered()]))
        m.run()
    assert ids == [on_next(0, []), on_next(0, [3, 4]), on_next(2, [3, 4, 2, 1]), on_next(4, [8, 3, 4, 2])]
    assert added == [2] and inbox.subset.limit == 4
    assert seen == [("snapshot", [3, 4]), ("page", [2, 1])], "the page holds only the rows after the last"


def test_more_past_the_end_adds_what_is_left_and_a_bad_n_changes_nothing() -> None:
    """more(5) on 4 rows adds 2 (the limit is 7); more(0) and a limit over MAX_LIMIT are bad_request."""
    with marbles() as m:
        inbox = Inbox(order_by=[("ts", "desc")], limit=2, event="newest")
        m.root([inbox], tables={"messages": ROWS})
        added = m.call(1, lambda: inbox.more(5))
        zero = m.call(2, lambda: inbox.more(0))
        over = m.call(3, lambda: inbox.more(MAX_LIMIT))
        m.run()
    assert added == [2] and inbox.subset.limit == 7 and len(inbox.value) == 4
    for failed in (zero, over):
        assert len(failed) == 1 and isinstance(failed[0], SubsetError) and failed[0].code == "bad_request"
    assert "over 1000 (MAX_LIMIT)" in str(over[0])
