"""rxstore.protocol.events: change envelopes (``parse_change``, the fast ``envelope_seq``), Change and Event.

First, the property that the root's fast envelope check (``envelope_seq``) agrees with
``parse_change``:

``check_envelope`` is the one definition of the envelope's rules: the root
store runs it on every incoming change (it builds nothing), ``envelope_seq``
returns its seq or ``None``, and ``parse_change`` runs it before building the
Change. So they must agree exactly: whatever ``parse_change`` accepts, the
fast check accepts with the same ``seq`` (an integer ``ts`` included);
whatever ``parse_change`` rejects, the fast check rejects, with the same message.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import (
    Change,
    Event,
    EventKind,
    Op,
    check_envelope,
    envelope_seq,
    parse_change,
    topic_event_name,
)
from tests.bad_input.strategies import big_ints, json_scalars, json_values, texts

OPS = ("INSERT", "UPDATE", "DELETE")

seqs = st.one_of(
    st.integers(min_value=0, max_value=2**63),
    big_ints,
    st.booleans(),  # True is an int to Python, never a seq
    st.floats(),
    st.sampled_from(["7", None]),
)
topics = st.one_of(texts, st.sampled_from(["posts", ""]), json_scalars)
ops = st.one_of(st.sampled_from(OPS), st.sampled_from(["insert", "Delete", "", "DROP"]), json_scalars)
row_dicts = st.dictionaries(texts, json_scalars, max_size=3)
rows = st.one_of(
    st.none(),
    row_dicts,
    row_dicts.map(OrderedDict),  # a dict subclass is not a JSON object
    st.lists(json_scalars, max_size=2),
    json_scalars,
)
stamps = st.one_of(
    st.floats(),  # NaN and infinities included
    big_ints,
    st.sampled_from([10**400, -(10**400), 0, 1]),  # beyond a float
    st.booleans(),
    st.sampled_from(["1.5", None]),
)
mutations = st.one_of(st.none(), texts, json_scalars)
outs = st.one_of(st.none(), st.lists(row_dicts, max_size=2), st.lists(json_scalars, max_size=2), json_scalars)
"""A window's ``out``: a list of objects or null, or anything else."""

_FIELDS = {
    "record": rows,
    "old": rows,
    "ts": stamps,
    "mutation": mutations,
    "out": outs,
    "extra": json_scalars,
}

well_shaped = st.fixed_dictionaries({"seq": seqs, "topic": topics, "op": ops}, optional=_FIELDS)
"""seq, topic and op always there (of any type); the rest maybe."""
any_fields = st.fixed_dictionaries({}, optional={"seq": seqs, "topic": topics, "op": ops, **_FIELDS})
"""Any subset of the fields, required ones included."""
likely_valid = st.sampled_from(OPS).flatmap(
    lambda op: st.fixed_dictionaries(
        {
            "seq": st.integers(min_value=0, max_value=2**63),
            "topic": texts,
            "op": st.just(op),
            "record": row_dicts if op != "DELETE" else st.one_of(st.none(), row_dicts),
            "old": row_dicts if op == "DELETE" else st.one_of(st.none(), row_dicts),
        },
        optional={
            "ts": st.one_of(st.floats(), st.integers()),
            "mutation": st.one_of(st.none(), texts),
            "out": st.one_of(st.none(), st.lists(row_dicts, max_size=2)),
        },
    )
)
"""Mostly well-formed envelopes, so that acceptance is exercised as much as rejection."""

_WILD = {
    "seq": seqs,
    "topic": topics,
    "op": ops,
    "record": rows,
    "old": rows,
    "ts": stamps,
    "mutation": mutations,
    "out": outs,
}


def _one_field_off(envelope: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``envelope`` with one field removed or replaced by a value of any type."""

    def off(field: str) -> st.SearchStrategy[dict[str, Any]]:
        removed = {key: value for key, value in envelope.items() if key != field}
        return st.one_of(st.just(removed), _WILD[field].map(lambda value: {**envelope, field: value}))

    return st.sampled_from(sorted(_WILD)).flatmap(off)


near_valid = likely_valid.flatmap(_one_field_off)
"""A mostly well-formed envelope with one field wrong or missing: the boundary of both checks."""

payloads = st.one_of(
    near_valid,  # half of the examples
    st.one_of(
        near_valid.flatmap(_one_field_off),
        likely_valid,
        well_shaped,
        any_fields,
        likely_valid.map(OrderedDict),
        json_values,
    ),
)


def _agree(payload: Any) -> None:
    fast = envelope_seq(payload)
    try:
        change = parse_change(payload)
    except ProtocolError as exc:
        assert fast is None, f"envelope_seq accepted (seq {fast}) what parse_change rejects: {payload!r}"
        assert check_envelope(payload) == str(exc)
        event("rejected by both")
        return
    assert fast == change.seq, f"envelope_seq rejected a valid envelope: {payload!r}"
    event("accepted by both")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
@example({"seq": 7, "topic": "posts", "op": "INSERT", "record": {"id": 1}, "ts": 1.5})
@example({"seq": 7, "topic": "posts", "op": "DELETE", "record": None, "old": {"id": 1}})
@example({"seq": 7, "topic": "posts", "op": "DELETE", "old": {"id": 1}, "record": [1]})
@example({"seq": 7, "topic": "posts", "op": "UPDATE", "record": {"id": 1}, "old": 5})
@example({"seq": 7, "topic": "posts", "op": "INSERT", "record": {"id": 1}, "ts": 2})
@example({"seq": 7, "topic": "posts", "op": "INSERT", "record": {"id": 1}, "ts": 10**400})
@example({"seq": 7, "topic": "posts", "op": "INSERT", "record": {"id": 1}, "ts": True})
@example({"seq": 7, "topic": "posts", "op": "INSERT", "record": {"id": 1}, "mutation": 3})
@example({"seq": True, "topic": "posts", "op": "INSERT", "record": {"id": 1}})
@example({"seq": -1, "topic": "posts", "op": "INSERT", "record": {"id": 1}})
@example({"seq": 7, "topic": "posts", "op": "INSERT"})
@example(OrderedDict(seq=7, topic="posts", op="INSERT", record={"id": 1}))
def test_envelope_seq_and_parse_change_accept_and_reject_the_same_payloads(payload: Any) -> None:
    """Accepted by parse_change: the fast check accepts it with the same seq; rejected by
    parse_change: the fast check rejects it too, for the reason check_envelope gives."""
    _agree(payload)


# -- parse_change: what a valid envelope becomes, what an invalid one is told -------------------

ENVELOPE: dict[str, Any] = {"seq": 7, "topic": "posts", "op": "UPDATE", "record": {"id": "p1"}, "ts": 1.5}


def test_parse_change_keeps_every_field_and_makes_an_integer_ts_a_float() -> None:
    change = parse_change({**ENVELOPE, "old": {"id": "p0"}, "ts": 2, "mutation": "m1"})
    assert change == Change(7, "posts", Op.UPDATE, {"id": "p1"}, {"id": "p0"}, 2.0, "m1")
    assert type(change.ts) is float


def test_parse_change_defaults_ts_to_zero_and_old_and_mutation_to_none() -> None:
    change = parse_change({"seq": 1, "topic": "t", "op": "INSERT", "record": {"id": 1}})
    assert (change.ts, change.old, change.mutation) == (0.0, None, None)


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({k: v for k, v in ENVELOPE.items() if k != "topic"}, "missing 'topic'"),
        ({**ENVELOPE, "op": "DROP"}, "invalid op 'DROP'"),
        ({**ENVELOPE, "seq": -1}, "'seq' must be a non-negative int"),
        ({**ENVELOPE, "seq": True}, "'seq' must be a non-negative int"),
        ({**ENVELOPE, "op": "DELETE", "record": None}, "DELETE change envelope needs 'old'"),
        ({**ENVELOPE, "record": None}, "UPDATE change envelope needs 'record'"),
        ({**ENVELOPE, "ts": "now"}, "'ts' must be a number"),
        ({**ENVELOPE, "ts": 10**400}, "'ts' is out of range"),
        ({**ENVELOPE, "mutation": 5}, "'mutation' must be a string or null"),
        ({**ENVELOPE, "out": {"id": 1}}, "'out' must be a list of objects or null"),
        ({**ENVELOPE, "out": [1]}, "'out' must be a list of objects or null"),
        ([ENVELOPE], "must be an object, got list"),
    ],
)
def test_parse_change_names_what_is_wrong(payload: Any, says: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_change(payload, event="post_update")
    assert says in str(refused.value)
    assert refused.value.event == "post_update" and refused.value.payload is payload


def test_a_huge_bad_value_is_quoted_bounded_in_the_error() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_change({**ENVELOPE, "seq": "x" * 100_000})
    assert len(str(refused.value)) < 300


# -- Change and Event values ----------------------------------------------------------------------


def test_change_key_reads_the_record_or_for_a_delete_the_old_row() -> None:
    assert parse_change(ENVELOPE).key("id") == "p1"
    delete = parse_change({**ENVELOPE, "op": "DELETE", "record": None, "old": {"id": "gone"}})
    assert delete.key("id") == "gone"


def test_change_key_missing_is_a_protocol_error_naming_seq_topic_and_key() -> None:
    with pytest.raises(ProtocolError, match=r"seq=7 on 'posts' has no 'uuid'"):
        parse_change(ENVELOPE).key("uuid")


def test_to_payload_round_trips_and_leaves_out_a_missing_mutation() -> None:
    change = parse_change(ENVELOPE)
    assert "mutation" not in change.to_payload()
    assert parse_change(change.to_payload()) == change
    with_mutation = parse_change({**ENVELOPE, "mutation": "m9"})
    assert with_mutation.to_payload()["mutation"] == "m9"
    assert parse_change(with_mutation.to_payload()) == with_mutation


def test_an_event_parses_its_change_on_first_use_once_and_equality_ignores_it() -> None:
    event = Event("post_update", dict(ENVELOPE), EventKind.CHANGE, 7)
    first = event.change
    assert first == parse_change(ENVELOPE) and event.change is first
    assert event == Event("post_update", dict(ENVELOPE), EventKind.CHANGE, 7)


def test_an_event_with_a_bad_envelope_raises_when_its_change_is_read() -> None:
    event = Event("post_update", {**ENVELOPE, "op": "DROP"}, EventKind.CHANGE, 7)
    with pytest.raises(ProtocolError, match="invalid op"):
        _ = event.change


def test_from_change_carries_the_change_its_seq_and_its_wire_form() -> None:
    change = parse_change(ENVELOPE)
    event = Event.from_change("post_update", change)
    assert (event.kind, event.seq, event.data) == (EventKind.CHANGE, 7, change.to_payload())
    assert event.change is change


def test_a_message_event_has_no_change_and_values_are_frozen() -> None:
    event = Event("post_liked", {"id": "p1"})
    assert event.kind is EventKind.MESSAGE and event.change is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.name = "other"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        parse_change(ENVELOPE).seq = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("topic", "name"),
    [
        ("posts", "post_update"),
        ("categories", "category_update"),
        ("news", "news_update"),
        ("address", "address_update"),
        ("glass", "glass_update"),
    ],
)
def test_topic_event_name_is_the_singular_plus_update(topic: str, name: str) -> None:
    assert topic_event_name(topic) == name
