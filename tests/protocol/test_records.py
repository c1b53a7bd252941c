"""Records: rows structured into attrs classes, by msgspec where it agrees with cattrs, else by cattrs."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxstore.protocol.errors import ValidationError
from rxstore.protocol.records import _msgspec_fits, converter, structure_record, structure_records
from rxstore.stores.table import TableStore
from rxstore.testing import change, snapshot


@attrs.frozen
class Plain:
    id: str
    likes: int = 0
    score: float = 0.0
    private: bool = False
    note: str | None = None
    tags: list[str] = attrs.Factory(list)
    extra: dict[str, int] = attrs.Factory(dict)


def shout(text: str) -> str:
    return text.upper()


@attrs.frozen
class Converted:
    id: str
    title: str = attrs.field(default="", converter=shout)


@attrs.frozen
class Checked:
    id: str
    likes: int = attrs.field(default=0, validator=attrs.validators.ge(0))


def by_cattrs(row: dict[str, Any], record_type: type) -> Any:
    """What cattrs alone makes of ``row``: the record, or the message of its ValidationError."""
    try:
        return converter.structure(row, record_type)
    except Exception as exc:
        return type(exc)


def by_rxstore(row: dict[str, Any], record_type: type) -> Any:
    try:
        return structure_record(row, record_type)
    except ValidationError as exc:
        return type(exc.__cause__)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1]),  # SQLite's booleans
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "", "p1"]),
    st.text(max_size=5),
)
VALUES = st.one_of(
    JSON_SCALARS,
    st.lists(JSON_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=3),
)
ROWS = st.fixed_dictionaries(
    {},
    optional={name: VALUES for name in ("id", "likes", "score", "private", "note", "tags", "extra", "other")},
)


@given(ROWS)
def test_a_plain_record_type_is_structured_as_cattrs_alone_does(row: dict[str, Any]) -> None:
    """Every row: the same record, or a ValidationError from the same cattrs failure."""
    assert _msgspec_fits(Plain)
    expected, got = by_cattrs(row, Plain), by_rxstore(row, Plain)
    if isinstance(expected, Plain) and isinstance(got, Plain):
        assert attrs.asdict(got).keys() == attrs.asdict(expected).keys()
        for name, value in attrs.asdict(expected).items():
            other = getattr(got, name)
            assert type(other) is type(value) and (
                other == value or (math.isnan(other) and math.isnan(value))
            )
    else:
        assert got == expected


@attrs.frozen
class Flags:
    id: str
    private: bool = False
    pinned: bool | None = None


FLAG_VALUES = st.sampled_from([0, 1, 2, -1, True, False, None, 0.0, "1"])
FLAG_ROWS = st.builds(
    lambda key, private, pinned: {"id": key, "private": private, "pinned": pinned},
    st.sampled_from(["p1", "p2"]),
    FLAG_VALUES,
    FLAG_VALUES,
)


@given(st.lists(FLAG_ROWS, min_size=1, max_size=6))
def test_sqlite_booleans_structure_as_cattrs_takes_them_one_by_one_and_in_a_batch(
    rows: list[dict[str, Any]],
) -> None:
    """0/1 in bool fields (SQLite's booleans) give False/True, anything else what cattrs says."""
    originals = [dict(row) for row in rows]
    expected = [by_cattrs(row, Flags) for row in rows]
    assert [by_rxstore(row, Flags) for row in rows] == expected
    batch = structure_records(rows, Flags)
    if all(isinstance(record, Flags) for record in expected):
        assert batch == expected and all(type(r.private) is bool for r in batch)
    else:
        assert batch is None
    assert rows == originals  # mapped in copies


def test_the_gateway_s_forms_still_structure() -> None:
    """SQLite's 0/1 booleans (msgspec after mapping them) and non-finite strings (cattrs)."""
    record = structure_record({"id": "p1", "private": 1, "score": "Infinity"}, Plain)
    assert record.private is True and record.score == math.inf


def test_an_attrs_converter_is_applied() -> None:
    """A field with an attrs converter: cattrs (msgspec would bypass __init__ and the converter)."""
    assert not _msgspec_fits(Converted)
    assert structure_record({"id": "p1", "title": "hi"}, Converted).title == "HI"


def test_validators_run_and_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="invalid Checked"):
        structure_record({"id": "p1", "likes": -1}, Checked)
    with pytest.raises(ValidationError, match=r"expected int @ \$\.likes"):
        structure_record({"id": "p1", "likes": "many"}, Plain)


def test_a_hook_registered_for_a_plain_type_turns_msgspec_off() -> None:
    """Hooks registered on the converter for str/int/float/bool are honoured: cattrs alone then."""
    hook = converter.get_structure_hook(str)
    converter.register_structure_hook(str, lambda value, _: str(value).strip())
    try:
        assert not _msgspec_fits(Plain)
    finally:
        converter.register_structure_hook(str, hook)
    assert _msgspec_fits(Plain)


class PlainStore(TableStore[Plain]):
    table = "plains"
    record_type = Plain


ROW_VALUES = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c", 1, None])},
    optional={
        "likes": st.sampled_from([0, 1, "many", None, True]),
        "private": st.sampled_from([False, 1, 2]),
    },
)
CHANGES = st.lists(
    st.tuples(st.sampled_from(["INSERT", "UPDATE", "DELETE"]), ROW_VALUES), min_size=2, max_size=12
)


@given(CHANGES)
def test_a_batch_structured_in_one_call_equals_the_changes_applied_one_by_one(
    changes: list[tuple[str, dict[str, Any]]],
) -> None:
    """One frame of typed changes (some rows bad): the state and errors of one frame per change."""
    events = [
        change(
            "plains",
            seq,
            op,
            row if op != "DELETE" else {"id": row["id"]},
            old=None if op != "DELETE" else row,
        )
        for seq, (op, row) in enumerate(changes, start=1)
    ]
    batched, one_by_one = PlainStore(), PlainStore()
    batch_errors: list[Any] = []
    single_errors: list[Any] = []
    batched.errors.subscribe(batch_errors.append)
    one_by_one.errors.subscribe(single_errors.append)
    batched.apply(events)
    for event in events:
        one_by_one.apply([event])
    assert batched.value.to_dict() == one_by_one.value.to_dict()
    assert [str(e) for e in batch_errors] == [str(e) for e in single_errors]


@given(st.lists(ROW_VALUES, max_size=12))
def test_a_typed_snapshot_holds_the_rows_that_structure_and_reports_the_others(
    rows: list[dict[str, Any]],
) -> None:
    """Snapshot rows structured in one call where all fit, else one by one: the same table either way."""
    expected: dict[Any, Plain] = {}
    bad = 0
    for row in rows:
        try:
            expected[row["id"]] = structure_record(row, Plain)
        except ValidationError:
            bad += 1
    store, errors = PlainStore(), list[Any]()
    store.errors.subscribe(errors.append)
    store.apply([snapshot("plains", 5, rows)])
    assert store.value.to_dict() == expected
    assert len(errors) == bad
