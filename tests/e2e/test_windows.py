"""A RootStore follows a window end to end: a real gateway (SQLite; PostgreSQL too), python-socketio.

A ``TableStore(where=..., order_by=..., limit=...)`` under random concurrent inserts,
updates and deletes (``authorize`` hiding some rows): after **each frame the store
applied**, its ``state.ordered()`` is exactly SQL's ``ORDER BY ... LIMIT`` at the
store's seq (the table at each seq is rebuilt from the change log), content
included, and it never holds more than ``limit`` rows; at the end, quiescent, it
equals the database's ``ORDER BY ... LIMIT`` read directly. The frames include
INSERTs with ``out`` and refills (snapshots that replace the window's rows).

Why at the store's seq: a change the gateway does not send this window leaves the
window as it was, so the window at the seq of the last change the store applied
is the window until its next frame. A snapshot on PostgreSQL may also hold
changes of its ``skip`` (committed late, seq above the snapshot's): there a
snapshot's step may equal the window at any seq up to the next step's.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from rxstore import RootStore, TableStore
from rxstore.protocol.frames import ChangeFrame
from tests.gateway.harness import AUTH
from tests.gateway.live_queries.test_windows import LIMIT, Messages, messages, random_writes, window_of
from tests.waiting import wait_for

__all__ = ["messages"]  # the fixture, served on SQLite and PostgreSQL

pytestmark = pytest.mark.timeout(120)

Row = dict[str, Any]


class Chat(TableStore[Row]):
    table = "messages"


def newest(limit: int = LIMIT) -> Chat:
    return Chat(where={"channel": "general"}, order_by=[("ts", "desc")], limit=limit, event="chat")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_store_window_is_order_by_limit_at_its_seq_after_every_frame(
    messages: Messages, seed: int
) -> None:
    """Random concurrent writes: after each applied frame, ordered() == SQL's window at the store's seq."""
    rng = random.Random(seed)
    for key in range(1, 11):
        await messages.insert(key, rng.choice(["general", "random"]), rng.choice([None, 1, 2, 3, 4]))
    base, head = await messages.table(), await messages.log.head()
    chat = newest()
    steps: list[tuple[int | None, list[Row]]] = []
    chat.state.subscribe(lambda state: steps.append((state.seq, [dict(r) for r in state.ordered()])))
    outs = 0

    def count_outs(frame: Any) -> None:
        nonlocal outs
        envelopes = frame.envelopes if type(frame) is ChangeFrame else [e.data for e in frame]
        outs += sum(1 for e in envelopes if isinstance(e, dict) and e.get("out"))

    root = RootStore(messages.gateway.url, stores=[chat], token=AUTH.issue("alice"))
    registry = messages.gateway.metrics.registry
    refills_before = registry.get_sample_value("rxstore_window_refills_total") or 0
    async with root:
        root.events_named("chat").subscribe(count_outs)
        await chat.live(timeout=10)
        await random_writes(messages, rng, 60, paced=messages.postgres)
        want = await messages.window_sql()
        await wait_for(lambda: chat.value.ordered() == tuple(want), 20, "the store settles on SQL's window")
    tables = await messages.tables_by_seq(base, head)
    seqs = sorted(tables)
    applied = [(seq, rows) for seq, rows in steps if seq is not None]
    assert len(applied) > 20
    for index, (seq, rows) in enumerate(applied):
        assert len(rows) <= LIMIT, f"step {index} holds {len(rows)} rows"
        bound = applied[index + 1][0] if index + 1 < len(applied) else seqs[-1] + 1
        candidates = [s for s in seqs if seq <= s < bound] if messages.postgres else [seq]
        assert rows in [window_of(tables[s]) for s in candidates], f"step {index}: the window at seq {seq}"
    assert outs > 0, "some INSERT moved a row out"
    refills = registry.get_sample_value("rxstore_window_refills_total") or 0
    assert refills > refills_before, "some frame was a refill"


async def test_switching_limit_and_order_at_runtime_holds_the_new_window_when_where_returns(
    messages: Messages,
) -> None:
    """where(limit=...) and where(order_by=...) on a connected root: acknowledged with the new window in."""
    for key, ts in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]:
        await messages.insert(key, "general", ts)
    chat = newest()
    async with RootStore(messages.gateway.url, stores=[chat], token=AUTH.issue("alice")) as root:
        await root.live(timeout=10)
        assert [r["id"] for r in chat.value.ordered()] == [6, 5, 4, 3]
        await chat.where(limit=2)
        assert [r["id"] for r in chat.value.ordered()] == [6, 5]
        await chat.where(order_by=[("ts", "asc")], limit=3)
        assert [r["id"] for r in chat.value.ordered()] == [1, 2, 3]
        await chat.where(order_by=[("ts", "asc")], after=[2, 2])  # starts after the row (ts 2, id 2)
        assert [r["id"] for r in chat.value.ordered()] == [3, 4, 5]
        await messages.insert(7, "general", 0)  # before the keyset: never in this window
        await messages.delete(3)  # leaves the full window: the next row beyond (6) comes in
        await wait_for(lambda: [r["id"] for r in chat.value.ordered()] == [4, 5, 6], 10, "6 moves in")
        assert chat.subset.after == (2, 2) and chat.subset.limit == 3
