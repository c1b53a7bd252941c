"""The fan-out-across-workers benchmark (benchmarks/scale.py) at a tiny size: what it measures holds."""

from __future__ import annotations

import sys

import pytest

from benchmarks import scale
from benchmarks._common import Output

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers share a port on Linux")


def test_scale_suite_brings_every_change_to_every_client_with_one_and_two_workers() -> None:
    """20 clients of ``rxstore serve --workers 1`` then ``2``, 1 s of writes: every change at every client.

    Also: the clients are spread over the workers (the merged /metrics count all 20), and the
    gateway's CPU and RSS are measured from its processes.
    """
    with Output() as out:
        [table] = scale.run(out, quick=True, clients=20, workers=[1, 2], seconds=1.0)
    values = {row.variant: row.value for row in table.rows}
    assert values["1 workers every change"] == 1.0, table.lines
    assert values["2 workers every change"] == 1.0, table.lines
    assert values["1 workers vs 1 worker"] == 1.0
    for workers in (1, 2):
        assert (values[f"{workers} workers deliveries/s"] or 0) > 0
        assert (values[f"{workers} workers gateway CPU"] or 0) > 0
        assert (values[f"{workers} workers RSS per client"] or 0) > 0
    per_worker = {line[0]: [int(n) for n in line[1].split(" / ")] for line in table.lines}
    assert per_worker["1"] == [20]
    assert len(per_worker["2"]) == 2 and sum(per_worker["2"]) == 20


def test_scale_suite_with_rootstore_clients_records_every_change_at_every_client() -> None:
    """The same measure with RootStore -> TableStore clients (kind ``rxstore``): every change is counted."""
    with Output() as out:
        [table] = scale.run(out, quick=True, clients=10, workers=[1], seconds=1.0, kind="rxstore")
    values = {row.variant: row.value for row in table.rows}
    assert values["1 workers every change"] == 1.0, table.lines
    assert "RootStore" in table.title
