"""The presence benchmark (benchmarks/presence.py) at a tiny size: what it measures holds."""

from __future__ import annotations

import asyncio

from benchmarks import presence
from benchmarks._common import Output


def test_presence_updates_reach_every_member_and_are_counted() -> None:
    """20 members, half a second of updates: some taken, each member ends with every updater's last
    one, the gateway's CPU per update measured."""
    with Output() as out:
        out.start("presence", 2)
        result = asyncio.run(presence._updates(out, 20, 0.5))
        out.finish()
    assert result["updates"] > presence.UPDATERS, result  # the last ones included
    assert result["drained"] is not None and result["frames"] > 0, result
    assert result["cpu"] > 0 and result["joined_s"] > 0, result
