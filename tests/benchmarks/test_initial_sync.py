"""The initial sync benchmark (benchmarks/initial_sync.py) at a tiny size: what it measures holds."""

from __future__ import annotations

from benchmarks import initial_sync
from benchmarks._common import Output
from tests.services import PostgresServer


def test_initial_sync_suite_brings_the_whole_table_to_the_floor_and_to_rxstore() -> None:
    """1,000 and 2,000 rows: the floor's process and rxstore's client each hold every row, timed.

    The benchmark fails a run whose receiver holds another number of rows; PostgreSQL
    is measured too where its binaries are here.
    """
    with Output() as out:
        [table] = initial_sync.run(out, quick=True, rows=[1_000, 2_000])
    values = {(row.name, row.variant): row.value for row in table.rows}
    databases = ["sqlite"] + ([] if PostgresServer.missing() else ["postgresql"])
    for database in databases:
        for rows in (1_000, 2_000):
            assert (values["floor", f"{database} {rows} rows"] or 0) > 0, table.lines
            assert (values["rxstore", f"{database} {rows} rows"] or 0) > 0, table.lines
    assert [line[0] for line in table.lines] == [d for d in databases for _ in (1, 2)]
    assert any("goals:" in note for note in table.notes)
