"""The soak (benchmarks/soak.py) at CI size: after a warm-up round, client churn grows nothing.

Three rounds of 60 churning connections (connect, follow a subset, switch subsets, mutate, join
presence, leave) against one gateway, posts written meanwhile: from the quiet point after the
warm-up round to the last, no asyncio task, file descriptor, object type or blocks kept by one
line of code (tracemalloc) more, every per-connection gauge back to zero, RSS within its slack.
"""

from __future__ import annotations

import pytest

from benchmarks import soak

pytestmark = pytest.mark.timeout(240)


async def test_client_churn_grows_nothing_after_the_warm_up_round() -> None:
    lines: list[str] = []
    result = await soak.soak(
        clients=60,
        processes=2,
        rounds=3,
        round_seconds=6,
        hold=0.3,
        ping_interval=2,
        seed=11,
        progress=lines.append,
    )
    report = "\n".join(lines + result.findings)
    assert not result.errors, f"cycles failed: {dict(result.errors)}"
    assert result.counts["cycles"] >= 60, report
    counts = result.counts
    assert counts["switches"] and counts["mutations"] and counts["presence_joins"], report
    assert [q.sample.phase for q in result.quiets] == ["quiet 2", "quiet 3"]
    assert result.ok, report
