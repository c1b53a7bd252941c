"""The root's fast envelope check (``envelope_seq``) agrees with ``parse_change``.

``envelope_seq`` is what the root store runs on every incoming change; it
builds nothing and returns ``None`` for anything it does not certainly accept,
and ``parse_change`` then decides. So the two must agree: whatever the fast
check accepts, ``parse_change`` accepts with the same ``seq``; whatever
``parse_change`` rejects, the fast check rejects. The one form the fast check
leaves to ``parse_change`` on purpose is an integer ``ts``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rxstore.errors import ProtocolError
from rxstore.events import envelope_seq, parse_change
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

_FIELDS = {"record": rows, "old": rows, "ts": stamps, "mutation": mutations, "extra": json_scalars}

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
        optional={"ts": st.one_of(st.floats(), st.integers()), "mutation": st.one_of(st.none(), texts)},
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
    except ProtocolError:
        assert fast is None, f"envelope_seq accepted (seq {fast}) what parse_change rejects: {payload!r}"
        event("rejected by both")
        return
    if fast is None:
        assert type(payload.get("ts")) is int, f"envelope_seq rejected a valid envelope: {payload!r}"
    else:
        assert fast == change.seq
    event("accepted by parse_change" if fast is not None else "accepted, int ts (slow path)")


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
    """Accepted by the fast check: parse_change accepts it with the same seq; rejected by
    parse_change: the fast check rejects it too; only an integer ``ts`` takes the slow path."""
    _agree(payload)
