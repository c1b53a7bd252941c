"""rxstore.client.recorder.Timeline: a cursor over a session's steps, each move told."""

from __future__ import annotations

import pytest

from rxstore.client.recorder import Timeline


def test_it_moves_one_step_or_to_any_and_tells_each_move() -> None:
    """next(), prev(), at(i) (negative from the end) return the step and call on_move with it."""
    moved: list[str] = []
    timeline = Timeline(["a", "b", "c"], on_move=moved.append)
    assert (timeline.index, timeline.current, len(timeline)) == (0, "a", 3)
    assert [timeline.next(), timeline.next(), timeline.prev(), timeline.at(-1), timeline.at(0)] == list(
        "bcbca"
    )
    assert moved == list("bcbca") and list(timeline) == list("abc")


def test_it_stops_at_both_ends_and_says_where() -> None:
    """Before the first or past the last step: an IndexError naming the steps; the position stays."""
    timeline = Timeline(["a", "b"])
    with pytest.raises(IndexError, match="at the first step"):
        timeline.prev()
    timeline.at(1)
    with pytest.raises(IndexError, match=r"at the last step \(1\)"):
        timeline.next()
    with pytest.raises(IndexError, match="no step 2: the timeline has steps 0 to 1"):
        timeline.at(2)
    assert timeline.index == 1
    with pytest.raises(ValueError, match="at least one step"):
        Timeline([])
