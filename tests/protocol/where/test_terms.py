"""rxstore.protocol.where.terms: a term's SQL value on a row, NULL being unknown, and its wire form."""

from __future__ import annotations

import pytest

from rxstore.protocol.where.claims import Claim
from rxstore.protocol.where.terms import COMPARISONS, Term


@pytest.mark.parametrize("op", [*COMPARISONS, "in"])
def test_a_comparison_on_null_is_unknown_and_does_not_match(op: str) -> None:
    term = Term("c", op, (1,) if op == "in" else 1)
    assert term.truth({"c": None}) is None and term.truth({}) is None
    assert not term.matches({"c": None})


def test_a_comparison_on_a_value_is_true_or_false_as_matches_says() -> None:
    assert Term("c", "!=", 1).truth({"c": 2}) is True
    assert Term("c", "!=", 1).truth({"c": 1}) is False
    assert Term("c", "in", ("a", "b")).truth({"c": "c"}) is False


def test_null_tests_are_true_or_false_never_unknown() -> None:
    assert Term("c", "is null").truth({}) is True
    assert Term("c", "is not null").truth({"c": None}) is False


def test_a_claim_travels_as_its_wire_object() -> None:
    assert Term("owner", "=", Claim("sub")).to_wire() == ["owner", "=", {"claim": "sub"}]
    assert Term("team", "in", Claim("teams")).to_wire() == ["team", "in", {"claim": "teams"}]
    assert Term("o", "in", (Claim("sub"), "x")).to_wire() == ["o", "in", [{"claim": "sub"}, "x"]]
