"""rxstore.client.recorder.RecordLimits: documented defaults; a bound that is not positive is refused."""

from __future__ import annotations

import pytest

from rxstore import RecordLimits


def test_the_defaults_are_the_documented_ones() -> None:
    """100,000 frames, 64 MiB, an hour (docs/devtools.md, Bounds and cost)."""
    assert RecordLimits() == RecordLimits(max_frames=100_000, max_bytes=64 * 1024 * 1024, max_seconds=3600.0)


@pytest.mark.parametrize("bound", ["max_frames", "max_bytes", "max_seconds"])
def test_a_bound_of_zero_is_refused_naming_it(bound: str) -> None:
    """A recording that could hold nothing is a mistake: a ValueError naming the bound."""
    with pytest.raises(ValueError, match=f"RecordLimits.{bound} must be > 0, got 0"):
        RecordLimits(**{bound: 0})
