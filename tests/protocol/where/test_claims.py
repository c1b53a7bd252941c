"""rxstore.protocol.where.claims: ``{"claim": name}`` values read, checked, and filled in from a token."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rxstore.protocol.subsets import (
    MAX_IN_VALUES,
    Group,
    Subset,
    SubsetError,
    Term,
    parse_subscription,
    terms_of,
)
from rxstore.protocol.where.claims import Claim


def test_a_claim_is_read_from_its_wire_object_or_given_as_a_claim() -> None:
    assert terms_of([("owner", "=", {"claim": "sub"})]) == (Term("owner", "=", Claim("sub")),)
    assert terms_of({"owner": Claim("sub")}) == (Term("owner", "=", Claim("sub")),)
    assert terms_of({"owner": {"claim": "sub"}}) == (Term("owner", "=", Claim("sub")),)
    assert terms_of([("team", "in", {"claim": "teams"})]) == (Term("team", "in", Claim("teams")),)
    assert terms_of([("o", "in", ["x", {"claim": "sub"}])]) == (Term("o", "in", ("x", Claim("sub"))),)
    wire = Subset("t", terms_of([{"not": ("owner", "=", Claim("sub"))}])).to_wire("s")
    assert wire["where"] == [{"not": ["owner", "=", {"claim": "sub"}]}]
    assert parse_subscription(wire)[1].where == (Group("not", (Term("owner", "=", Claim("sub")),)),)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"claim": 7}, 'term 1: a claim is {"claim": "<name>"}, a name string of 1-1024 characters, got'),
        ({"claim": ""}, 'term 1: a claim is {"claim": "<name>"}'),
        ({"claim": "x" * 1025}, 'term 1: a claim is {"claim": "<name>"}'),
        ({"claim": "sub", "default": "ann"}, 'term 1: a claim is {"claim": "<name>"}'),
        ({"sub": True}, 'term 1: a value must be a string, number, boolean or {"claim": "<name>"}'),
    ],
)
def test_a_malformed_claim_is_refused_naming_the_term(value: Any, message: str) -> None:
    with pytest.raises(SubsetError, match="^" + re.escape(message)):
        terms_of([("owner", "=", value)])


def test_resolve_fills_in_every_claim_in_every_group() -> None:
    subset = Subset(
        "t",
        terms_of(
            [
                {"or": [("owner", "=", Claim("sub")), ("team", "in", Claim("teams"))]},
                {"not": ("o", "in", ["x", Claim("sub")])},
            ]
        ),
    )
    filled = subset.resolve({"sub": "ann", "teams": ["red", "blue"], "exp": 1})
    assert filled.where == (
        Group("or", (Term("owner", "=", "ann"), Term("team", "in", ("red", "blue")))),
        Group("not", (Term("o", "in", ("x", "ann")),)),
    )
    assert filled.matches({"owner": "bob", "team": "red", "o": "y"})
    assert not filled.matches({"owner": "ann", "team": None, "o": "ann"})
    plain = Subset("t", terms_of({"owner": "ann"}))
    assert plain.resolve({}) is plain  # nothing to fill in: the same subset


def test_a_claim_of_one_value_is_an_in_of_that_value() -> None:
    filled = Subset("t", terms_of([("team", "in", Claim("team"))])).resolve({"team": "red"})
    assert filled.where == (Term("team", "in", ("red",)),)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({}, "term 2: the token has no claim 'sub'"),
        ({"sub": None, "teams": ["a"]}, "term 2: claim 'sub' must be a string, number or boolean, got null"),
        ({"sub": ["ann"], "teams": ["a"]}, "term 2: claim 'sub' is a list: '=' takes one value of it"),
        (
            {"sub": {"a": 1}, "teams": ["a"]},
            "term 2: claim 'sub' must be a string, number or boolean, got dict",
        ),
        (
            {"sub": "ann", "teams": []},
            f"term 3: claim 'teams' must hold 1 to {MAX_IN_VALUES} values for 'in', got 0",
        ),
        ({"sub": "ann", "teams": [["a"]]}, "term 3: each value of claim 'teams' must be a string, number or"),
        ({"sub": "ann", "teams": list(range(MAX_IN_VALUES + 1))}, "term 3: claim 'teams' must hold 1 to"),
        ({"sub": "x" * 1025, "teams": ["a"]}, "term 2: a string value has at most 1024 characters"),
    ],
)
def test_a_claim_the_token_lacks_or_that_does_not_fit_is_refused_naming_it(claims: Any, message: str) -> None:
    subset = Subset(
        "t", terms_of([("a", "=", 1), {"or": [("owner", "=", Claim("sub")), ("team", "in", Claim("teams"))]}])
    )
    with pytest.raises(SubsetError, match="^" + re.escape(message)) as caught:
        subset.resolve(claims)
    assert caught.value.code == "invalid_subscription"
