"""rxstore.protocol.subsets: friendly forms, refusals and limits, SQL semantics in Python, the wire."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from rxstore.protocol.subsets import (
    MAX_COLUMNS,
    MAX_DEPTH,
    MAX_ID_CHARS,
    MAX_IN_VALUES,
    MAX_TERMS,
    MAX_TEXT_CHARS,
    Group,
    Subset,
    SubsetError,
    Term,
    WhereItem,
    WhereSpec,
    columns_of,
    parse_subscription,
    terms_in,
    terms_of,
)

# -- forms ---------------------------------------------------------------------


def test_a_mapping_is_equality_in_for_a_list_and_is_null_for_none() -> None:
    assert terms_of({"channel": "general", "kind": ["a", "b"], "deleted_at": None}) == (
        Term("channel", "=", "general"),
        Term("kind", "in", ("a", "b")),
        Term("deleted_at", "is null"),
    )


def test_a_list_of_tuples_gives_every_operator() -> None:
    spec: list[tuple[Any, ...]] = [("a", op, 1) for op in ("=", "!=", "<", "<=", ">", ">=")]
    spec += [("b", "in", [1, 2.5]), ("c", "is null"), ("d", "is not null", None)]
    terms = list(terms_in(terms_of(spec)))
    assert [t.op for t in terms] == ["=", "!=", "<", "<=", ">", ">=", "in", "is null", "is not null"]
    assert terms[6].value == (1, 2.5) and terms[7].value is None and terms[8].value is None


def test_no_where_clause_is_no_terms() -> None:
    assert terms_of(None) == () and terms_of({}) == () and terms_of([]) == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("channel = 'x'", "a where clause is a mapping or a list of (column, op, value) terms, not a string"),
        (
            [("likes", "~", 3)],
            "term 1: unknown operator '~' (one of =, !=, <, <=, >, >=, in, is null, is not null)",
        ),
        ([("a", "=", 1), "b"], "term 2: expected (column, op, value) or (column, 'is null'), got 'b'"),
        ([("a",)], "term 1: expected (column, op, value)"),
        ([("a", "=")], "term 1: '=' needs a value"),
        ([("a", "is null", 3)], "term 1: 'is null' takes no value"),
        ([("", "=", 1)], "term 1: a column name must be a string of 1-1024 characters"),
        ([(7, "=", 1)], "term 1: a column name must be a string"),
        (
            {"a": None, "b": {"x": 1}},
            'term 2: a value must be a string, number, boolean or {"claim": "<name>"}, got {\'x\': 1}',
        ),
        ([("a", "=", None)], "term 1: a value must be a string, number or boolean, got null (use 'is null')"),
        ([("a", "=", math.inf)], "term 1: a value must be a finite number, got inf"),
        ([("a", "<", math.nan)], "term 1: a value must be a finite number, got nan"),
        ([("a", "in", "ab")], "term 1: 'in' needs a list of values, got 'ab'"),
        ([("a", "in", [])], f"term 1: 'in' takes 1 to {MAX_IN_VALUES} values, got 0"),
        ([("a", "in", [1, None])], "term 1: a value must be a string, number or boolean, got null"),
    ],
)
def test_a_bad_term_is_refused_with_a_message_that_names_it(spec: Any, message: str) -> None:
    with pytest.raises(SubsetError, match=_literal(message)) as caught:
        terms_of(spec)
    assert caught.value.code == "invalid_subscription"


def _literal(text: str) -> str:
    return "^" + re.escape(text)


def test_limits_on_terms_in_values_and_text_are_refused_one_past_them() -> None:
    assert len(terms_of([("a", "=", 1)] * MAX_TERMS)) == MAX_TERMS
    with pytest.raises(SubsetError, match=f"at most {MAX_TERMS} terms, got {MAX_TERMS + 1}"):
        terms_of([("a", "=", 1)] * (MAX_TERMS + 1))
    assert len(next(terms_in(terms_of({"a": list(range(MAX_IN_VALUES))}))).value) == MAX_IN_VALUES
    with pytest.raises(SubsetError, match=f"1 to {MAX_IN_VALUES} values, got {MAX_IN_VALUES + 1}"):
        terms_of({"a": list(range(MAX_IN_VALUES + 1))})
    assert terms_of({"a": "x" * MAX_TEXT_CHARS})
    with pytest.raises(SubsetError, match=f"at most {MAX_TEXT_CHARS} characters"):
        terms_of({"a": "x" * (MAX_TEXT_CHARS + 1)})
    with pytest.raises(SubsetError, match="a column name must be a string of 1-"):
        terms_of({"c" * (MAX_TEXT_CHARS + 1): 1})


def test_columns_are_distinct_names_within_the_limit() -> None:
    assert columns_of(None) is None
    assert columns_of(["id", "body", "id"]) == ("id", "body")
    assert len(columns_of([f"c{i}" for i in range(MAX_COLUMNS)]) or ()) == MAX_COLUMNS
    with pytest.raises(SubsetError, match=f"at most {MAX_COLUMNS} columns, got {MAX_COLUMNS + 1}"):
        columns_of([f"c{i}" for i in range(MAX_COLUMNS + 1)])
    with pytest.raises(SubsetError, match="columns is a list of column names, not a string"):
        columns_of("id")
    with pytest.raises(SubsetError, match="columns: a column name must be a string"):
        columns_of(["id", 3])  # type: ignore[list-item]


# -- matches: SQL semantics ----------------------------------------------------


def _matches(op: str, current: Any, value: Any = None) -> bool:
    return Term("c", op, value).matches({"c": current})


def test_null_fails_every_comparison_and_in_but_not_the_null_tests() -> None:
    for op in ("=", "!=", "<", "<=", ">", ">="):
        assert not _matches(op, None, 1)
    assert not _matches("in", None, (1,))
    assert not Term("c", "!=", 1).matches({})  # a missing column is NULL
    assert _matches("is null", None) and not _matches("is null", 0)
    assert _matches("is not null", "") and not _matches("is not null", None)


def test_numbers_compare_by_value_and_booleans_are_0_and_1() -> None:
    assert _matches("=", 1, 1.0) and _matches("<", 1, 1.5) and _matches(">", 2**53 + 1, 2**53)
    assert _matches("=", 1, True) and _matches("=", False, 0) and _matches("<", False, True)
    assert _matches("in", 2.0, (1, 2)) and not _matches("in", 3, (1, 2))


def test_text_compares_by_code_point() -> None:
    assert _matches("<", "B", "a")  # upper case sorts first
    assert _matches("<", "z", "é") and _matches("<", "\uffff", "\U0001f600")  # non-BMP after the BMP
    assert not _matches("=", "a", "A") and _matches("!=", "a", "A")
    assert _matches("<", "ab", "abc") and _matches(">", "b", "abc")


def test_numbers_sort_before_text_as_sqlite_orders_storage_classes() -> None:
    assert _matches("<", 99, "1") and _matches(">", "1", 99) and not _matches("=", 1, "1")


def test_non_finite_strings_compare_as_floats_with_nan_equal_to_itself_above_every_number() -> None:
    assert _matches(">", "Infinity", 1e308) and _matches("<", "-Infinity", -1e308)
    assert _matches(">", "NaN", 1e308) and _matches("!=", "NaN", 0) and not _matches("<", "NaN", 0)
    assert Term("c", "=", "NaN").matches({"c": "NaN"})
    assert _matches("<", "Infinity", "NaN") and _matches(">", "NaN", "Infinity")
    assert _matches(">", "Infinity", "Apple")  # text against text stays text


def test_a_subset_matches_a_row_that_satisfies_every_term() -> None:
    subset = Subset("m", terms_of([("ch", "=", "general"), ("ts", ">=", 10)]))
    assert subset.matches({"ch": "general", "ts": 10})
    assert not subset.matches({"ch": "general", "ts": 9}) and not subset.matches(None)
    assert Subset("m").matches({}) and Subset("m").whole and not subset.whole


# -- projection and the wire ---------------------------------------------------


def test_project_keeps_the_columns_and_the_key() -> None:
    row = {"id": 1, "body": "hi", "ch": "g", "ts": 3}
    assert Subset("m").project(row, "id") == row
    assert Subset("m", columns=("body",)).project(row, "id") == {"id": 1, "body": "hi"}
    assert Subset("m", columns=("body", "gone")).project(row) == {"body": "hi", "gone": None}


def test_to_wire_and_parse_subscription_round_trip() -> None:
    subset = Subset(
        "m",
        terms_of([("ch", "in", ["a", "b"]), ("ts", ">=", 1.5), ("deleted", "is null"), ("ok", "=", True)]),
        ("id", "body"),
    )
    wire = subset.to_wire("m_update", since=7)
    assert wire == {
        "id": "m_update",
        "topic": "m",
        "where": [["ch", "in", ["a", "b"]], ["ts", ">=", 1.5], ["deleted", "is null"], ["ok", "=", True]],
        "columns": ["id", "body"],
        "since": 7,
    }
    assert parse_subscription(wire) == ("m_update", subset, 7)
    assert parse_subscription(Subset("m").to_wire("x")) == ("x", Subset("m"), None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["m"], "a subscription must be an object {id, topic, where, columns}"),
        ({"topic": "m"}, f"a subscription 'id' must be a printable string of 1-{MAX_ID_CHARS} characters"),
        ({"id": "x" * (MAX_ID_CHARS + 1), "topic": "m"}, "a subscription 'id' must be a printable string"),
        ({"id": "a\nb", "topic": "m"}, "a subscription 'id' must be a printable string"),
        ({"id": "rxstore:batch", "topic": "m"}, "subscription id 'rxstore:batch': names starting with"),
        ({"id": "s", "topic": ""}, "subscription 's' needs a 'topic' string"),
        ({"id": "s", "topic": "m", "since": -1}, "subscription 's': 'since' must be a non-negative integer"),
        (
            {"id": "s", "topic": "m", "since": True},
            "subscription 's': 'since' must be a non-negative integer",
        ),
        ({"id": "s", "topic": "m", "where": {"a": 1}}, "subscription 's': 'where' must be a list"),
        ({"id": "s", "topic": "m", "columns": "id"}, "subscription 's': 'columns' must be a list of names"),
        (
            {"id": "s", "topic": "m", "where": [["a", "~", 1]]},
            "subscription 's': term 1: unknown operator '~'",
        ),
    ],
)
def test_parse_subscription_refuses_a_bad_object_naming_the_problem(data: Any, message: str) -> None:
    with pytest.raises(SubsetError, match=_literal(message)) as caught:
        parse_subscription(data)
    assert caught.value.code == "invalid_subscription"


# -- groups: forms and bounds ----------------------------------------------------------


def _deep(depth: int) -> list[WhereItem]:
    item: Any = ("a", "=", 1)
    for n in range(depth):
        item = {"not": item} if n % 2 else [item, ("b", "is null")]  # a not, a nested and, ...
    return [item]


def test_a_where_list_holds_terms_and_groups_typed_as_a_where_spec() -> None:
    """A list's items are terms, ``{"or": [...]}``, ``{"not": item}``, nested lists (and) and groups."""
    spec: WhereSpec = [
        ("status", "=", "open"),
        {"or": [("assignee", "=", "ann"), [("assignee", "is null"), ("priority", ">", 3)]]},
        {"not": ("tag", "in", ["spam", "junk"])},
        Group("not", (Term("x", "=", 1),)),
    ]
    where = terms_of(spec)
    assert where == (
        Term("status", "=", "open"),
        Group(
            "or",
            (
                Term("assignee", "=", "ann"),
                Group("and", (Term("assignee", "is null"), Term("priority", ">", 3))),
            ),
        ),
        Group("not", (Term("tag", "in", ("spam", "junk")),)),
        Group("not", (Term("x", "=", 1),)),
    )
    assert [t.column for t in terms_in(where)] == ["status", "assignee", "assignee", "priority", "tag", "x"]
    subset = Subset("tickets", where)
    assert parse_subscription(subset.to_wire("s")) == ("s", subset, None)
    assert subset.matches({"status": "open", "assignee": None, "priority": 4, "tag": "ok", "x": 2})
    assert not subset.matches({"status": "open", "assignee": None, "priority": 4, "tag": None, "x": 2})


def test_groups_nest_up_to_max_depth_and_no_deeper() -> None:
    assert len(terms_of(_deep(MAX_DEPTH))) == 1
    with pytest.raises(
        SubsetError,
        match=_literal(f"group {MAX_DEPTH + 1}: groups nest at most {MAX_DEPTH} deep (MAX_DEPTH)"),
    ):
        terms_of(_deep(MAX_DEPTH + 1))


def test_terms_are_counted_in_all_groups() -> None:
    half = MAX_TERMS // 2
    assert len(list(terms_in(terms_of([{"or": [("a", "=", n) for n in range(half)]}] * 2)))) == MAX_TERMS
    with pytest.raises(SubsetError, match=_literal(f"a where clause has at most {MAX_TERMS} terms, counted")):
        terms_of([("z", "is null"), *[{"or": [("a", "=", n) for n in range(half)]}] * 2])
    with pytest.raises(SubsetError, match=_literal(f"a where clause has at most {MAX_TERMS} terms")):
        terms_of([{"or": [("a", "=", 1)] * 10_000_000}])  # refused before reading them


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"xor": [("a", "=", 1)]}], "group 1: unknown group 'xor' (one of and, or, not)"),
        ([{"or": []}], "group 1: 'or' takes a list of 1 or more conditions, got []"),
        ([{"and": "a = 1"}], "group 1: 'and' takes a list of 1 or more conditions, got 'a = 1'"),
        ([{"not": None}], "group 1: 'not' takes one condition, got None"),
        ([{"not": []}], "group 1: 'not' takes one condition, got []"),
        ([{"or": [("a", "=", 1)], "not": ("b", "=", 2)}], 'group 1: a group is {"or": [...]}'),
        ([{}], 'group 1: a group is {"or": [...]}, {"and": [...]}, a list (and) or {"not": condition}'),
        ([("a", "=", 1), {"or": [("b", "=", 1), {"not": 5}]}], "term 3: expected (column, op, value)"),
        ([{"or": [("b", "=", 1), ("c", "~", 1)]}], "term 2: unknown operator '~'"),
        ([{"or": [("b", "=", 1)]}, {"or": [("c", "=", 1), {"nor": []}]}], "group 3: unknown group 'nor'"),
    ],
)
def test_a_malformed_group_is_refused_naming_it(spec: Any, message: str) -> None:
    with pytest.raises(SubsetError, match=_literal(message)) as caught:
        terms_of(spec)
    assert caught.value.code == "invalid_subscription"
