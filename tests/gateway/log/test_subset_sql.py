"""rxstore.gateway.log.subset_sql: column kinds, check_subset's refusals, and the SQL text of where_sql."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rxstore.gateway.log.subset_sql import Dialect, check_subset, column_kind, where_sql
from rxstore.protocol.subsets import Subset, SubsetError, Term, terms_of

KINDS = {
    "id": "integer",
    "title": "text",
    "likes": "integer",
    "score": "real",
    "done": "boolean",
    "meta": "other",
}


@pytest.mark.parametrize(
    ("declared", "kind"),
    [
        ("TEXT", "text"),
        ("varchar(255)", "text"),
        ("NATIVE CHARACTER(70)", "text"),
        ("CLOB", "text"),
        ("INTEGER", "integer"),
        ("BIGINT", "integer"),
        ("UNSIGNED BIG INT", "integer"),
        ("REAL", "real"),
        ("DOUBLE PRECISION", "real"),
        ("FLOAT", "real"),
        ("NUMERIC", "real"),
        ("DECIMAL(10,5)", "real"),
        ("BOOLEAN", "boolean"),
        ("bool", "boolean"),
        ("BLOB", "other"),
        ("", "other"),
        ("CHARINT", "integer"),  # INT wins over CHAR (SQLite's rule 1 comes first)
    ],
)
def test_sqlite_kinds_follow_type_affinity(declared: str, kind: str) -> None:
    assert column_kind(declared, "sqlite") == kind


@pytest.mark.parametrize(
    ("declared", "kind"),
    [
        ("text", "text"),
        ("character varying(20)", "text"),
        ("varchar", "text"),
        ("smallint", "integer"),
        ("integer", "integer"),
        ("bigint", "integer"),
        ("int8", "integer"),
        ("double precision", "real"),
        ("float8", "real"),
        ("numeric(10,2)", "real"),
        ("boolean", "boolean"),
        ("real", "other"),  # float4: compares as the float4 value, its JSON shows the shortest decimal
        ("character(3)", "other"),  # trailing blanks: ignored by comparisons, kept in the JSON
        ("citext", "other"),
        ("integer[]", "other"),
        ("timestamp(3) with time zone", "other"),
        ("jsonb", "other"),
        ("uuid", "other"),
    ],
)
def test_postgres_kinds_by_type_name(declared: str, kind: str) -> None:
    assert column_kind(declared, "postgres") == kind


# -- check_subset --------------------------------------------------------------


def _check(where: Any, columns: tuple[str, ...] | None = None) -> None:
    check_subset(Subset("posts", terms_of(where), columns), KINDS, "id")


def test_values_that_fit_their_column_kind_are_accepted() -> None:
    _check(
        [
            ("title", "in", ["a", "é", "\U0001f600"]),
            ("likes", ">=", -(2**63)),
            ("likes", "<", 2**63 - 1),
            ("score", "=", 2**53),
            ("score", "in", [1, 2.5]),
            ("done", "<", True),
            ("title", "is not null"),
        ],
        columns=("id", "title", "meta"),
    )
    _check({}, columns=("title",))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            {"nope": 1},
            "term 1: 'posts' has no column 'nope' (its columns: id, title, likes, score, done, meta)",
        ),
        ([("title", "=", "a"), ("meta", "=", "x")], "term 2: column 'meta' cannot be filtered on"),
        ([("meta", "is null")], "term 1: column 'meta' cannot be filtered on"),  # jsonb 'null' is not NULL
        ({"title": 1}, "term 1: column 'title' is text: its value must be a string, got 1 (int)"),
        (
            {"title": "a\x00b"},
            "term 1: column 'title' is text: a string value cannot contain the NUL character",
        ),
        ({"title": "\ud800"}, "term 1: column 'title' is text: a string value must be valid Unicode"),
        ({"likes": 1.0}, "term 1: column 'likes' is integer: its value must be an integer, got 1.0 (float)"),
        ({"likes": True}, "term 1: column 'likes' is integer: its value must be an integer, got True (bool)"),
        ({"likes": 2**63}, f"term 1: column 'likes' is integer: {2**63} is outside the 64-bit integer range"),
        ({"likes": [1, -(2**63) - 1]}, "term 1: column 'likes' is integer: -9223372036854775809 is outside"),
        ({"score": "1.5"}, "term 1: column 'score' is real: its value must be a number, got '1.5' (str)"),
        ({"score": False}, "term 1: column 'score' is real: its value must be a number, got False (bool)"),
        ({"score": 2**53 + 1}, "term 1: column 'score' is real: an integer value must be within ±2**53"),
        ({"done": 1}, "term 1: column 'done' is boolean: its value must be true or false, got 1 (int)"),
    ],
)
def test_check_subset_refuses_what_the_database_might_compare_otherwise(where: Any, message: str) -> None:
    with pytest.raises(SubsetError, match="^" + re.escape(message)) as caught:
        _check(where)
    assert caught.value.code == "invalid_subscription"


def test_columns_must_exist_but_may_name_the_key_or_leave_it_out() -> None:
    _check({}, columns=("title",))
    check_subset(Subset("posts", (), ("pk", "title")), KINDS, "pk")  # the key is always sent
    with pytest.raises(
        SubsetError, match=re.escape("columns: 'posts' has no column 'body' (its columns: id,")
    ):
        _check({}, columns=("title", "body"))


def test_an_unknown_column_message_lists_at_most_twenty_columns() -> None:
    kinds = {f"c{i}": "text" for i in range(30)}
    with pytest.raises(SubsetError, match=re.escape("c18, c19, ...)")):
        check_subset(Subset("wide", terms_of({"x": "a"})), kinds, None)


# -- where_sql -----------------------------------------------------------------


def _sql(where: Any, dialect: Dialect, first_param: int = 1) -> tuple[str, list[Any]]:
    return where_sql(Subset("posts", terms_of(where)), dialect, first_param=first_param)


def test_no_terms_is_no_condition() -> None:
    assert where_sql(Subset("posts"), "sqlite") == ("", [])
    assert where_sql(Subset("posts"), "postgres") == ("", [])


def test_sqlite_text_is_compared_binary_booleans_as_0_and_1_in_as_a_list_of_placeholders() -> None:
    where = [
        ("title", "<", "b"),
        ("title", "in", ["a", "b"]),
        ("likes", "!=", 3),
        ("done", "=", True),
        ("score", "in", [1, 2.5]),
        ("score", "is null"),
        ("title", "is not null"),
    ]
    assert _sql(where, "sqlite") == (
        '"title" COLLATE BINARY < ? AND "title" COLLATE BINARY IN (?, ?) AND "likes" <> ? AND "done" = ? '
        'AND "score" IN (?, ?) AND "score" IS NULL AND "title" IS NOT NULL',
        ["b", "a", "b", 3, 1, 1, 2.5],
    )
    assert type(_sql({"done": False}, "sqlite")[1][0]) is int


def test_postgres_casts_each_parameter_collates_text_ranges_c_and_numbers_from_first_param() -> None:
    where = [
        ("title", "=", "a"),
        ("title", "!=", "a"),
        ("title", ">=", "b"),
        ("likes", "<", 3),
        ("score", "<=", 1.5),
        ("done", ">", False),
        ("title", "in", ["x", "y"]),
        ("likes", "in", [1, 2]),
        ("score", "in", [1, 2.5]),
        ("done", "in", [True]),
        ("likes", "is null"),
    ]
    condition, params = _sql(where, "postgres", first_param=3)
    assert condition == (
        '"title" = $3::text AND "title" <> $4::text AND "title" COLLATE "C" >= $5::text '
        'AND "likes" < $6::bigint AND "score" <= $7::float8 AND "done" > $8::boolean '
        'AND "title" = ANY($9::text[]) '
        'AND "likes" = ANY($10::bigint[]) AND "score" = ANY($11::float8[]) AND "done" = ANY($12::boolean[]) '
        'AND "likes" IS NULL'
    )
    assert params == ["a", "a", "b", 3, 1.5, False, ["x", "y"], [1, 2], [1.0, 2.5], [True]]
    assert type(params[8][0]) is float  # ints with floats travel as float8


def test_identifiers_are_quoted_and_values_never_enter_the_sql_text() -> None:
    hostile = "x' OR 1=1 --"
    for dialect in ("sqlite", "postgres"):
        condition, params = where_sql(Subset("t", (Term('we"ird', "=", hostile),)), dialect)
        assert '"we""ird"' in condition and hostile not in condition and params == [hostile]


def test_an_in_list_mixing_kinds_is_refused() -> None:
    for dialect in ("sqlite", "postgres"):
        with pytest.raises(SubsetError, match="an 'in' list must hold values of one kind, got int, str"):
            _sql({"title": ["a", 1]}, dialect)


# -- groups --------------------------------------------------------------------


TREE: Any = [
    ("likes", ">", 1),
    {
        "or": [
            ("title", "=", "a"),
            [("done", "=", True), ("score", "is null")],
            {"not": ("likes", "in", [7, 8])},
        ]
    },
]


def test_groups_are_parenthesized_and_or_and_not_in_reading_order_on_sqlite() -> None:
    assert _sql(TREE, "sqlite") == (
        '"likes" > ? AND ("title" COLLATE BINARY = ? OR ("done" = ? AND "score" IS NULL) '
        'OR NOT ("likes" IN (?, ?)))',
        [1, "a", 1, 7, 8],
    )


def test_groups_number_postgres_parameters_in_reading_order() -> None:
    assert _sql(TREE, "postgres", first_param=2) == (
        '"likes" > $2::bigint AND ("title" = $3::text OR ("done" = $4::boolean AND "score" IS NULL) '
        'OR NOT ("likes" = ANY($5::bigint[])))',
        [1, "a", True, [7, 8]],
    )


def test_a_value_in_a_group_never_enters_the_sql_text() -> None:
    hostile = "x') OR 1=1 --"
    where = [{"not": {"or": [("title", "=", hostile), ("title", "in", [hostile, "y"])]}}]
    for dialect in ("sqlite", "postgres"):
        condition, params = _sql(where, dialect)
        assert hostile not in condition and params.count(hostile) == 1 + (dialect == "sqlite")


def test_check_subset_checks_every_term_in_every_group_numbered_in_reading_order() -> None:
    _check(TREE)
    with pytest.raises(SubsetError, match=re.escape("term 3: column 'done' is boolean: its value must be")):
        _check([("likes", ">", 1), {"or": [("title", "=", "a"), {"not": ("done", "=", 1)}]}])
    with pytest.raises(SubsetError, match=re.escape("term 2: 'posts' has no column 'nope'")):
        _check([{"not": {"or": [("title", "=", "a"), ("nope", "=", 1)]}}])


def test_check_subset_refuses_a_claim_the_gateway_did_not_fill_in() -> None:
    with pytest.raises(SubsetError, match=re.escape("term 1: a claim the gateway has not filled in")):
        _check([("title", "=", {"claim": "sub"})])
    with pytest.raises(SubsetError, match=re.escape("term 1: a claim the gateway has not filled in")):
        _check([("title", "in", ["a", {"claim": "sub"}])])
