"""PresenceLimits: positive bounds, a lease of at least two heartbeats, the node bound it implies."""

from __future__ import annotations

import pytest

from rxstore.gateway import PresenceLimits


def test_bounds_must_be_positive_and_the_lease_at_least_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="max_members"):
        PresenceLimits(max_members=0)
    with pytest.raises(ValueError, match="twice the heartbeat"):
        PresenceLimits(heartbeat=1.0, lease=1.5)
    assert PresenceLimits().node_gone_within == 5.5
