"""rxstore.stores.window and a window's fold: ``out`` moves rows out with the INSERT, the order is kept.

A table store that follows a window applies an INSERT and the ``out`` it carries in
one step, and keeps ``state.ordered()`` in the window's order by bisection; a
model (a dict and a sort) checks it after every frame of random envelopes,
snapshots and resets, in both folds (checked envelopes and events).
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from rxstore import Event, EventKind, TableStore
from rxstore.protocol.events import Snapshot
from rxstore.protocol.frames import ChangeFrame
from rxstore.protocol.windows import order_of, sort_key
from rxstore.stores.window import Window

ORDER = order_of([("ts", "desc")])


class Messages(TableStore[dict[str, Any]]):
    table = "messages"


@attrs.frozen
class Message:
    id: int
    ts: int | None = None


class TypedMessages(TableStore[Message]):
    table = "messages"
    record_type = Message


def envelope(
    seq: int, op: str, key: int, ts: int | None = None, out: list[int] | None = None
) -> dict[str, Any]:
    row = {"id": key, "ts": ts}
    if op == "DELETE":
        return {"seq": seq, "topic": "messages", "op": op, "record": None, "old": {"id": key}}
    sent: dict[str, Any] = {"seq": seq, "topic": "messages", "op": op, "record": row, "old": None}
    if out is not None:
        sent["out"] = [{"id": k} for k in out]
    return sent


def test_an_insert_moves_the_rows_its_out_names_out_in_the_same_step() -> None:
    """The state after the INSERT holds the new row and not the one moved out: never limit + 1 rows."""
    chat = Messages(order_by=[("ts", "desc")], limit=2)
    chat.apply(
        [
            Event(
                "chat",
                Snapshot("messages", 3, ({"id": 1, "ts": 5}, {"id": 2, "ts": 4})),
                EventKind.SNAPSHOT,
                3,
            )
        ]
    )
    sizes: list[int] = []
    chat.state.subscribe(lambda state: sizes.append(len(state)))
    chat.apply(ChangeFrame("message_update", [envelope(4, "INSERT", 3, 9, out=[2])]))
    assert [m["id"] for m in chat.value.ordered()] == [3, 1] and sizes == [2, 2]


def test_ordered_is_the_window_in_its_order_and_reverse_is_its_mirror() -> None:
    """A window's state is ordered by order_by then the key, NULL first descending, with no key given."""
    chat = TypedMessages(order_by=[("ts", "desc")], limit=5)
    rows = ({"id": 1, "ts": 5}, {"id": 2, "ts": None}, {"id": 3, "ts": 9}, {"id": 4, "ts": 5})
    chat.apply([Event("chat", Snapshot("messages", 1, rows), EventKind.SNAPSHOT, 1)])
    assert [m.id for m in chat.value.ordered()] == [2, 3, 1, 4]
    chat.apply(ChangeFrame("message_update", [envelope(2, "UPDATE", 2, 1), envelope(3, "DELETE", 3)]))
    assert [m.id for m in chat.value.ordered()] == [1, 4, 2]
    assert [m.id for m in chat.value.ordered(reverse=True)] == [2, 4, 1]


def test_a_store_without_a_window_orders_by_key_and_ignores_nothing() -> None:
    """No window: ordered() is the records by primary key; the fold takes no window path."""
    plain = Messages()
    plain.apply(ChangeFrame("message_update", [envelope(1, "INSERT", 2, 1), envelope(2, "INSERT", 1, 2)]))
    assert [m["id"] for m in plain.value.ordered()] == [1, 2] and plain.value.window is None


def test_switching_the_order_at_runtime_reorders_the_rows_held() -> None:
    """where(order_by=...) on a store not attached: the next frame is folded in the new order."""
    import asyncio

    chat = Messages(order_by=[("ts", "desc")], limit=3)
    chat.apply(ChangeFrame("message_update", [envelope(1, "INSERT", 1, 1), envelope(2, "INSERT", 2, 2)]))
    asyncio.run(chat.where(order_by=[("ts", "asc")]))
    chat.apply(ChangeFrame("message_update", [envelope(3, "INSERT", 3, 3)]))
    assert [m["id"] for m in chat.value.ordered()] == [1, 2, 3]


def model_order(rows: dict[int, dict[str, Any]]) -> list[int]:
    return [r["id"] for r in sorted(rows.values(), key=lambda r: sort_key(r, ORDER, "id"))]


steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("INSERT"),
            st.integers(1, 8),
            st.one_of(st.none(), st.integers(0, 5)),
            st.lists(st.integers(1, 8), max_size=2),
        ),
        st.tuples(st.just("UPDATE"), st.integers(1, 8), st.one_of(st.none(), st.integers(0, 5)), st.just([])),
        st.tuples(st.just("DELETE"), st.integers(1, 8), st.none(), st.just([])),
        st.tuples(st.just("SNAPSHOT"), st.integers(0, 4), st.none(), st.just([])),
    ),
    max_size=30,
)


@given(steps, st.integers(1, 4), st.booleans())
def test_a_windows_rows_and_order_equal_a_model_after_every_frame(
    script: list[tuple[str, int, int | None, list[int]]], frame_size: int, as_events: bool
) -> None:
    """Random envelopes (with out), snapshots in between: rows == the model's, ordered() == its sort."""
    chat = Messages(order_by=[("ts", "desc")], limit=8)
    model: dict[int, dict[str, Any]] = {}
    seq, frame = 0, list[dict[str, Any]]()

    def flush() -> None:
        if frame:
            if as_events:
                chat.apply([Event("message_update", e, EventKind.CHANGE, e["seq"]) for e in frame])
            else:
                chat.apply(ChangeFrame("message_update", list(frame)))
            frame.clear()
            assert dict(chat.value) == model and [r["id"] for r in chat.value.ordered()] == model_order(model)

    for op, key, ts, out in script:
        seq += 1
        if op == "SNAPSHOT":
            flush()
            model = {k: {"id": k, "ts": k % 3 or None} for k in range(1, key + 1)}
            chat.apply(
                [Event("chat", Snapshot("messages", seq, tuple(model.values())), EventKind.SNAPSHOT, seq)]
            )
            assert [r["id"] for r in chat.value.ordered()] == model_order(model)
            continue
        frame.append(envelope(seq, op, key, ts, out or None))
        if op == "DELETE":
            model.pop(key, None)
        else:
            model[key] = {"id": key, "ts": ts}
            for gone in out:
                model.pop(gone, None)
        if len(frame) >= frame_size:
            flush()
    flush()


def test_a_window_of_records_places_them_by_their_attributes() -> None:
    window = Window.of_rows(ORDER, "id", [Message(1, 5), Message(2, 9)])
    assert window.keys() == [2, 1]
