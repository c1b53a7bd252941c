"""Regression tests for the client bugs the bad-input suite found (all fixed).

Each test is the smallest input that showed the bug and asserts the behaviour
the suite decided on (see ``client_model.DECISIONS``).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from rxstore import ProtocolError, RootStore, StoreError
from rxstore.client.transport import _FrameJSON
from rxstore.protocol.events import BATCH, SNAPSHOT
from rxstore.testing import VirtualLink, batch_frame, change_frame, message_frame
from tests.bad_input.client_model import Client, new_client


def _insert(seq: int, key: Any, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = change_frame("posts", seq, "INSERT", {"id": key, **fields}).data
    return data


@pytest.mark.parametrize(
    "payload",
    [
        {"seq": 1, "topic": "posts", "record": {"id": "p1"}},
        {"topic": "posts", "op": "INSERT", "record": {"id": "p1"}},
        "garbage",
        None,
        [1, 2],
    ],
    ids=["no op", "no seq", "string", "null", "list"],
)
def test_a_malformed_change_frame_under_a_table_event_name_is_reported(payload: Any) -> None:
    """Not a change envelope: the table store reports it as its own and keeps its state; a message still."""
    client = new_client()
    errors = client.send("post_update", payload)
    assert len(errors) == 1 and isinstance(errors[0], ProtocolError) and errors[0].store == "Posts"
    assert client.posts.value.to_dict() == {} and client.root.cursor is None
    assert client.recorder.names == ["post_update"]


@pytest.mark.parametrize("op", ["insert", "UPSERT", None, 1])
def test_an_invalid_op_is_reported_as_an_invalid_op(op: Any) -> None:
    client = new_client()
    errors = client.send("post_update", {"seq": 1, "topic": "posts", "op": op, "record": {"id": "p1"}})
    assert len(errors) == 1 and re.search(r"\bop\b", str(errors[0])), str(errors[0])


def test_a_snapshot_older_than_the_cursor_does_not_roll_the_table_back() -> None:
    client = new_client()
    client.send("post_update", _insert(10, "q"))
    errors = client.send(
        SNAPSHOT, {"topic": "posts", "event": "post_update", "seq": 3, "records": [{"id": "old"}]}
    )
    assert set(client.posts.value.to_dict()) == {"q"} and client.posts.seq == 10
    assert len(errors) == 1 and isinstance(errors[0], ProtocolError)


def test_a_change_of_another_topic_is_not_applied_to_the_table() -> None:
    client = new_client()
    errors = client.send("post_update", change_frame("comments", 1, "INSERT", {"id": "c1"}).data)
    assert client.posts.value.to_dict() == {}
    assert len(errors) == 1 and "comments" in str(errors[0])


class _Raising:
    """A plain RealtimeStore whose handler raises on events named 'boom'."""

    def setup_realtime_handlers(self, events: Any) -> Any:
        def on_event(event: Any) -> None:
            if event.name == "boom":
                raise RuntimeError("boom")

        return events.subscribe(on_event)


def test_a_raising_realtime_store_neither_escapes_nor_loses_the_rest_of_the_frame() -> None:
    client = new_client()
    link = VirtualLink()
    root = RootStore("virtual://gateway", stores=[client.posts, _Raising()], transport=link)
    link.root = root
    root.setup_domain_event_handlers()
    link.accept()
    errors: list[Exception] = []
    root.errors.subscribe(errors.append)
    frame = batch_frame([message_frame("boom", 1), change_frame("posts", 1, "INSERT", {"id": "p1"})])
    root.router.on_frame(BATCH, frame.data)
    assert "p1" in client.posts.value and root.cursor == 1
    assert len(errors) == 1 and isinstance(errors[0], StoreError)


def test_a_ts_beyond_float_range_is_a_protocol_error() -> None:
    client = new_client()
    payload = {**_insert(1, "p1"), "ts": 10**400}
    errors = client.send("post_update", payload)
    assert len(errors) == 1 and "'ts'" in str(errors[0])


@pytest.mark.parametrize("name", [7, None, ["post_update"]], ids=["int", "null", "list"])
def test_a_non_string_event_name_is_reported(name: Any) -> None:
    client = new_client()
    errors = client.send(name, {"x": 1})
    assert len(errors) == 1 and isinstance(errors[0], ProtocolError)


@pytest.mark.parametrize(
    "fields",
    [{"body": None}, {"body": {"x": 1}}, {"votes": 2.9}, {"votes": "7"}, {"votes": True}],
    ids=["null body", "object body", "float votes", "string votes", "bool votes"],
)
def test_a_row_of_the_wrong_types_is_rejected_not_coerced(fields: dict[str, Any]) -> None:
    client = new_client()
    row = {"id": "c1", "body": "text", **fields}
    errors = client.send("comment_update", change_frame("comments", 1, "INSERT", row).data)
    assert "c1" not in client.comments.value
    assert len(errors) == 1 and isinstance(errors[0], StoreError)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("kind", ["deep", "long"])
def test_error_messages_quote_bad_values_in_bounded_form(kind: str) -> None:
    client = new_client()
    if kind == "deep":
        text = '{"seq": ' + _deep(1000) + ', "topic": "posts", "op": "INSERT", "record": {"id": "a"}}'
    else:
        text = (
            '{"seq": "'
            + "\\u0000" * 1_000_000
            + '", "topic": "posts", "op": "INSERT", "record": {"id": "a"}}'
        )
    errors = client.send("post_update", _FrameJSON.loads(text))  # decoded as the transport decodes
    assert len(errors) == 1 and "'seq'" in str(errors[0]) and len(str(errors[0])) < 10_000


def _watch(client: Client) -> list[Any]:
    states: list[Any] = []
    client.posts.state.subscribe(states.append)
    states.clear()
    return states


@pytest.mark.parametrize("case", ["insert notifies", "delete on empty table"])
def test_a_row_with_an_unhashable_key_is_reported_and_notifies_nobody(case: str) -> None:
    client = new_client()
    states = _watch(client)
    if case == "insert notifies":
        errors = client.send("post_update", _insert(1, ["not", "hashable"]))
        assert len(errors) == 1 and "unhashable" in str(errors[0])
        assert states == []
    else:
        payload = change_frame("posts", 1, "DELETE", {"id": ["not", "hashable"]}).data
        errors = client.send("post_update", payload)
        assert len(errors) == 1 and "unhashable" in str(errors[0])
