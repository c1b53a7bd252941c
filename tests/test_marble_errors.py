"""Bad marble diagrams raise a clear error naming the diagram; none is silently accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from reactivex.notification import OnCompleted, OnError, OnNext

from rxstore.testing import MarbleTest, change_frame, marbles


def every_parser(m: MarbleTest) -> dict[str, Callable[[str], Any]]:
    """Each helper that reads a diagram: parse, hot, cold, expected."""
    return {"parse": m.parse, "hot": m.hot, "cold": m.cold, "expected": m.expected}


@pytest.mark.parametrize(
    ("diagram", "says"),
    [
        ("-(a(b))-", "nested group"),
        ("-a)-", "')' without '('"),
        ("-(ab-", "unclosed group"),
        ("(", "unclosed group"),
        ("-a|b", "'b' after '|'"),
        ("-a#-b", "'b' after '#'"),
        ("-a||", "'|' after '|'"),
        ("-#|", "'|' after '#'"),
        ("(a|b)", "'b' after '|'"),
        ("a| b", "'b' after '|'"),  # a space takes no time: still after the end
    ],
)
@pytest.mark.parametrize("helper", ["parse", "hot", "cold", "expected"])
def test_a_malformed_diagram_raises_value_error_naming_it(diagram: str, says: str, helper: str) -> None:
    with marbles() as m, pytest.raises(ValueError) as bad:
        every_parser(m)[helper](diagram)
    assert says in str(bad.value) and repr(diagram) in str(bad.value)


@pytest.mark.parametrize("diagram", ["a|", "-a-|--", "(a|)", "(ab)#", "-#  --", "|", "#", "a|()"])
def test_time_may_pass_after_the_end_and_a_group_may_end_the_stream(diagram: str) -> None:
    with marbles() as m:
        records = m.parse(diagram)
    assert isinstance(records[-1].value, OnCompleted | OnError)


def test_a_well_formed_diagram_parses_to_its_notifications() -> None:
    """The checks reject only bad diagrams: values, a group and the end land at their ticks."""
    with marbles(timespan=10) as m:
        records = m.parse("-a-(bc) |", {"a": 1})
    assert [(r.time, r.value) for r in records] == [
        (10, OnNext(1)),
        (30, OnNext("b")),
        (30, OnNext("c")),
        (40, OnCompleted()),
    ]


@pytest.mark.parametrize(
    ("link", "says"),
    [
        ("-c-z", "unknown link symbol 'z'"),
        ("-c|", "unknown link symbol '|'"),
        ("-c#", "unknown link symbol '#'"),
        ("-(cx", "unclosed group"),
    ],
)
def test_a_bad_link_diagram_is_refused(link: str, says: str) -> None:
    with marbles() as m, pytest.raises(ValueError) as bad:
        m.root([], link=link)
    assert says in str(bad.value)


def test_a_server_diagram_that_ends_is_refused() -> None:
    frame = change_frame("posts", 1, "INSERT", {"id": "p1"})
    with marbles() as m, pytest.raises(ValueError) as bad:
        m.root([], server="-a-|", values={"a": frame})
    assert "never ends" in str(bad.value) and "'-a-|'" in str(bad.value)


def test_a_server_diagram_value_that_is_not_a_frame_is_refused() -> None:
    """A letter missing from ``values`` would be sent as the letter itself: refused, not sent."""
    frame = change_frame("posts", 1, "INSERT", {"id": "p1"})
    with marbles() as m, pytest.raises(TypeError) as bad:
        m.root([], server="-a-b", values={"a": frame})
    assert "must be Frame objects, got 'b'" in str(bad.value)
