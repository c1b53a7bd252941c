"""Bad input thrown at the client: every frame goes through ``root.router.on_frame``, in-process.

Each property checks, frame by frame, that ``on_frame`` never raises, that a
malformed frame is reported exactly once on ``root.errors`` with a message that
names what is wrong (or is a valid no-op, as decided in
:data:`tests.bad_input.client_model.DECISIONS`), that no store is notified by a
frame that changes nothing, and at the end that every store, the cursor and the
hot stream equal a plain-dict model of the valid frames (seq-deduplicated in
the order received).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxstore import DomainStore, Event, EventKind, ProtocolError, RootStore, RxStoreError, StoreError
from rxstore.protocol.events import BATCH, RESET, SNAPSHOT
from rxstore.testing import VirtualLink, batch_frame, change_frame, message_frame
from tests.bad_input.cases import examples, ran
from tests.bad_input.client_model import (
    BatchItem,
    Gen,
    Model,
    Posts,
    check_frame,
    check_state,
    describe,
    new_client,
)
from tests.bad_input.strategies import EDGE_TEXT, json_values, texts

WIRES = pytest.mark.parametrize("wire", [None, "json", "msgpack"])
"""In-process frames as they are, or through a serializer and the transport's decoder (checked batches)."""


@examples(200)
@given(st.data())
def test_garbage_interleaved_with_valid_frames_matches_the_model(data: st.DataObject) -> None:
    """Any mix of valid frames and garbage: one clear error per bad input, nothing valid lost."""
    garbage_interleaved_with_valid_frames(None, data)


@pytest.mark.parametrize("wire", ["json", "msgpack"])
@examples(100)  # the same frames through a serializer: half the in-process budget each (CI's time)
@given(st.data())
def test_garbage_interleaved_with_valid_frames_through_a_wire_matches_the_model(
    wire: str, data: st.DataObject
) -> None:
    """The same, each frame serialized and decoded by the transport's decoder first."""
    garbage_interleaved_with_valid_frames(wire, data)


def garbage_interleaved_with_valid_frames(wire: str | None, data: st.DataObject) -> None:
    client, model, gen = new_client(wire), Model(), Gen(data.draw)
    count = data.draw(st.integers(1, 30), label="frames")
    for _ in range(count):
        check_frame(client, model, gen.item())
    check_state(client, model)
    ran("client: garbage interleaved with valid frames == model", count)


@WIRES
@examples(120)
@given(st.data())
def test_malformed_envelope_between_two_valid_changes(wire: str | None, data: st.DataObject) -> None:
    """A change envelope with one bad field: one ProtocolError naming it; its neighbours are applied."""
    client, model, gen = new_client(wire), Model(), Gen(data.draw)
    in_batch = data.draw(st.booleans(), label="in a batch")
    items = [gen.change(), gen.bad_change(), gen.change()]
    if in_batch:
        check_frame(client, model, BatchItem(items))
    else:
        for item in items:
            check_frame(client, model, item)
    check_state(client, model)
    ran("client: malformed envelope between two valid changes", 1)


@examples(120)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=60),
    st.lists(st.integers(1, 6), min_size=1, max_size=20),
    st.data(),
)
def test_out_of_order_and_duplicated_seqs_apply_each_seq_once(
    seqs: list[int], frame_sizes: list[int], data: st.DataObject
) -> None:
    """Seqs shuffled and repeated, alone or in batches: each applied once, never going back.

    Applied = newer than every seq received before it (the cursor), in the order received.
    """
    client = new_client()
    link = client.link
    applied: list[int] = []
    client.posts.state.subscribe(lambda state: applied.append(state.seq) if state.seq is not None else None)
    expected_rows: dict[str, Any] = {}
    cursor: int | None = None
    expected_applied: list[int] = []
    frames = []
    for seq in seqs:
        key = f"p{seq % 7}"
        op = data.draw(st.sampled_from(["INSERT", "UPDATE", "DELETE"]), label="op")
        frames.append(change_frame("posts", seq, op, {"id": key, "seq": seq}))
        if cursor is None or seq > cursor:
            cursor = seq
            expected_applied.append(seq)
            if op == "DELETE":
                expected_rows.pop(key, None)
            else:
                expected_rows[key] = {"id": key, "seq": seq}
    i = 0
    sizes = iter(frame_sizes * (len(frames) + 1))
    while i < len(frames):
        size = next(sizes)
        chunk, i = frames[i : i + size], i + size
        link.send(chunk[0] if size == 1 else batch_frame(chunk))
    assert client.errors == []
    assert client.posts.value.to_dict() == expected_rows
    assert client.root.cursor == cursor
    deduped = [s for n, s in enumerate(applied) if n == 0 or s != applied[n - 1]]
    assert deduped == sorted(set(deduped)), f"a store went back: {applied}"
    assert set(deduped) <= set(expected_applied) and deduped[-1] == expected_applied[-1]
    assert client.root.metrics.duplicates == len(seqs) - len(expected_applied)
    ran("client: out-of-order and duplicated seqs", len(seqs))


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


@examples(12)
@given(
    kind=st.sampled_from(["long string", "many keys", "deep nesting", "long key", "many rows", "long name"]),
    size=st.sampled_from([1, 10, 1000]),
    unicode=st.sampled_from(EDGE_TEXT[1:8]),
    garbage=st.booleans(),
)
def test_huge_payloads_are_applied_or_rejected_whole(
    kind: str, size: int, unicode: str, garbage: bool
) -> None:
    """Megabyte strings, 20k keys, 400-deep nesting: applied exactly, or one error; nothing raised."""
    client = new_client()
    before = len(client.errors)
    big = unicode * (1_000_000 // max(1, len(unicode)) // size) if kind == "long string" else unicode
    row: dict[str, Any] = {"id": "big"}
    name = "post_update"
    records = 1
    if kind == "long string":
        row["body"] = big
    elif kind == "many keys":
        row.update({f"{unicode}{n}": n for n in range(20_000 // size)})
    elif kind == "deep nesting":
        row["body"] = _nested(400 // size + 1, unicode)
    elif kind == "long key":
        row[unicode * (100_000 // size)] = 1
    elif kind == "long name":
        name = unicode * (100_000 // size)
    frame = change_frame("posts", 5, "INSERT", row)
    if kind == "many rows":
        records = 50_000 // size
        frame = batch_frame(
            [change_frame("posts", 5 + n, "INSERT", {"id": n, "v": unicode}) for n in range(records)]
        )
    data = frame.data
    if garbage:
        # the same huge content in a field that must be rejected
        bad = {"seq": row, "topic": "posts", "op": "INSERT", "record": row}
        data = dict(data) if kind != "many rows" else {"events": [*data["events"], ["post_update", bad]]}
        if kind != "many rows":
            data["seq"] = row
    client.root.router.on_frame(name if kind != "many rows" else BATCH, data)
    errors = client.errors[before:]
    if garbage:
        assert len(errors) == 1 and isinstance(errors[0], ProtocolError) and "'seq'" in str(errors[0])
    else:
        assert errors == [], describe(errors)
    if kind == "many rows":
        assert len(client.posts.value) == records and client.root.cursor == 5 + records - 1
    elif kind == "long name":
        assert client.recorder.names[-1:] == ([] if garbage else [name]) and len(client.posts.value) == 0
    elif garbage:
        assert len(client.posts.value) == 0 and client.root.cursor is None
    else:
        assert client.posts.value["big"] == row and client.root.cursor == 5
    ran("client: huge payloads", records)


# -- domain stores whose reducer raises ----------------------------------------------


@attrs.frozen
class Tally:
    changes: int = 0
    ids: tuple[Any, ...] = ()


class Fragile(DomainStore[Tally]):
    """Folds the same change events as Posts; raises on rows whose id is a string starting with '!'."""

    accepts = ("post_update", "post_liked")
    initial = Tally()

    def reduce(self, state: Tally, event: Event) -> Tally:
        if event.kind is EventKind.MESSAGE:
            raise RuntimeError(f"Fragile does not take messages, got {event.name!r}")
        if event.change is None:
            return state
        row = event.change.record or event.change.old or {}
        key = row.get("id")
        if isinstance(key, str) and key.startswith("!"):
            raise KeyError(f"refusing {key!r}")
        return Tally(state.changes + 1, (*state.ids, key))


@examples(100)
@given(st.data())
def test_a_raising_reducer_reports_and_affects_no_other_store(data: st.DataObject) -> None:
    """A reducer raising on some inputs: one StoreError each, state kept; the other stores apply all."""
    posts, fragile = Posts(), Fragile()
    link = VirtualLink()
    root = RootStore("virtual://gateway", stores=[posts, fragile], transport=link)
    link.root = root
    root.setup_domain_event_handlers()
    link.accept()
    errors: list[RxStoreError] = []
    root.errors.subscribe(errors.append)
    ids = data.draw(st.lists(st.one_of(texts, st.builds(lambda t: "!" + t, texts)), min_size=1, max_size=25))
    likes = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)), label="like after")
    frames = []
    for seq, (key, like) in enumerate(zip(ids, likes, strict=True), start=1):
        frames.append(change_frame("posts", seq, "INSERT", {"id": key}))
        if like:
            frames.append(message_frame("post_liked", {"post": key}))
    batched = data.draw(st.booleans(), label="batched")
    if batched:
        root.router.on_frame(BATCH, batch_frame(frames).data)
    else:
        for frame in frames:
            root.router.on_frame(frame.name, frame.data)
    refused = [k for k in ids if k.startswith("!")]
    assert set(posts.value.to_dict()) == set(ids)  # Posts applied all of them
    assert fragile.value.changes == len(ids) - len(refused)
    assert list(fragile.value.ids) == [k for k in ids if not k.startswith("!")]
    assert len(errors) == len(refused) + sum(likes)
    for error in errors:
        assert isinstance(error, StoreError) and error.store == "Fragile"
        assert error.event.name in ("post_update", "post_liked") and "Fragile" in str(error)
    ran("client: raising reducer is isolated", len(frames))


# -- anything at all -------------------------------------------------------------------


names = st.one_of(
    texts,
    st.sampled_from([BATCH, SNAPSHOT, RESET, "rxstore:live", "post_update", "comment_update", "post_liked"]),
    st.builds(lambda s: "rxstore:" + s, texts),
)


@examples(200)
@given(st.lists(st.tuples(names, json_values), min_size=1, max_size=20))
def test_any_name_with_any_payload_never_raises(frames: list[tuple[str, Any]]) -> None:
    """Arbitrary names (Unicode, control prefix) with arbitrary JSON: no exception, errors are rxstore's."""
    client = new_client()
    for name, payload in frames:
        before = client.root.cursor
        errors = client.send(name, payload)
        for error in errors:
            assert isinstance(error, RxStoreError) and str(error).strip()
        if name not in (BATCH, SNAPSHOT):
            assert len(errors) <= 1, describe(errors)
        if name != RESET and before is not None:
            assert client.root.cursor is not None and client.root.cursor >= before
    ran("client: any name with any payload", len(frames))
