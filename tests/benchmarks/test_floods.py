"""The floods benchmark (benchmarks/floods.py) at its quick size: what it measures holds."""

from __future__ import annotations

from benchmarks import floods
from benchmarks._common import Output


def test_floods_suite_reports_the_limits_holding_and_the_watchers_latency() -> None:
    """2,000 subscribes at once: 63 admitted (the topic holds the 64th place), the rest refused, 64 held;
    every flood fully answered, and the watcher's latency measured with and without it."""
    with Output() as out:
        [table] = floods.run(out, quick=True)
    values = {(row.name, row.variant): row.value for row in table.rows}
    assert values[("subscribe", "admitted")] == 63
    assert values[("subscribe", "too_many_subscriptions")] == 2_000 - 63
    assert values[("subscribe", "subscriptions held")] == 64
    assert values[("switch", "subscriptions held")] == 2
    for kind in floods.KINDS:
        answered = sum(
            v or 0
            for (name, unit), v in values.items()
            if name == kind
            and unit not in ("all answered", "subscriptions held")
            and not unit.startswith("watcher")
        )
        assert answered == 2_000, (kind, values)
        assert (values[(kind, "watcher p50 (floor)")] or 0) > 0 and (
            values[(kind, "watcher p50 (flood)")] or 0
        ) > 0
