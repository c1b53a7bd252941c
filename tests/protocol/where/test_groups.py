"""rxstore.protocol.where.groups: and / or / not with SQL's three-valued logic, and their wire forms."""

from __future__ import annotations

from typing import Any

import pytest

from rxstore.protocol.subsets import Subset, Term, terms_of
from rxstore.protocol.where.groups import Group

X1 = Term("x", "=", 1)
Y_NULL = Term("y", "is null")
UNKNOWN: dict[str, Any] = {"x": None}  # x = 1 is NULL on this row


def test_not_of_unknown_is_unknown_and_does_not_match() -> None:
    """``NOT (x = 1)`` with x NULL is NULL in SQL: not true, so not in the subset."""
    negated = Group("not", (X1,))
    assert negated.truth(UNKNOWN) is None and not negated.matches(UNKNOWN)
    assert negated.truth({"x": 2}) is True and negated.matches({"x": 2})
    assert negated.truth({"x": 1}) is False and not negated.matches({"x": 1})
    assert not Subset("t", (negated,)).matches({})  # a missing column is NULL too


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("and", (True, True), True),
        ("and", (True, None), None),
        ("and", (None, False), False),
        ("and", (None, None), None),
        ("or", (False, False), False),
        ("or", (False, None), None),
        ("or", (None, True), True),
        ("or", (None, None), None),
    ],
)
def test_and_and_or_follow_kleene_logic(
    kind: Any, values: tuple[bool | None, ...], expected: bool | None
) -> None:
    """AND is false if any item is false, OR true if any is true; else unknown beats the rest."""
    row: dict[str, Any] = {}
    items = []
    for n, value in enumerate(values):
        items.append(Term(f"c{n}", "=", 1))
        row[f"c{n}"] = None if value is None else (1 if value else 0)
    group = Group(kind, tuple(items))
    assert group.truth(row) is expected
    assert group.matches(row) is (expected is True)
    assert Group("not", (group,)).truth(row) is (None if expected is None else not expected)
    assert Group("not", (group,)).matches(row) is (expected is False)


def test_null_tests_are_never_unknown() -> None:
    assert Group("not", (Y_NULL,)).truth({"y": None}) is False
    assert Group("or", (X1, Y_NULL)).truth({"x": None, "y": None}) is True


def test_wire_forms_and_and_is_a_list() -> None:
    tree = Group("or", (Group("and", (X1, Y_NULL)), Group("not", (X1,))))
    assert tree.to_wire() == {"or": [[["x", "=", 1], ["y", "is null"]], {"not": ["x", "=", 1]}]}
    assert terms_of([tree]) == (tree,)  # read back as it was
    assert terms_of([tree.to_wire()]) == (tree,)
    assert terms_of([{"and": [["x", "=", 1], ["y", "is null"]]}]) == (Group("and", (X1, Y_NULL)),)
