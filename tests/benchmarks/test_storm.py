"""The reconnect-storm benchmark (benchmarks/storm.py) at a small size: what it measures holds."""

from __future__ import annotations

from benchmarks import storm
from benchmarks._common import Output


def test_storm_suite_resumes_every_client_within_retention_and_shares_reads_when_trimmed() -> None:
    """60 clients, the gateway restarted twice: all resume; then all snapshot from a few shared reads."""
    with Output() as out:
        [table] = storm.run(out, quick=True, clients=60)
    values = {row.variant: row.value for row in table.rows}
    assert values["storm within retention: resumed"] == 60
    assert values["storm within retention: snapshots"] == 0
    assert values["storm trimmed (first connects): snapshots"] == 60
    reads = values["storm trimmed (first connects): snapshot reads"]
    # Shared: fewer reads than snapshots (how many fewer depends on how the 60 arrivals overlap).
    assert reads is not None and 1 <= reads < 60, f"{reads} reads for 60 snapshots"
    assert values["storm within retention: all live again"] is not None
    assert values["storm trimmed (first connects): all live again"] is not None
