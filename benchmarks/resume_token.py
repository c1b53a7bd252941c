"""The resume token's cost: the read a resume adds (``ChangeLog.ts_at``), by log size.

``python -m benchmarks.resume_token`` fills a SQLite change log with ``--sizes``
changes (one transaction) and times ``ts_at`` at random seqs, beside ``head()``
(a read every resume made already), as the gateway calls them: through the
log's worker thread. ``--pg DSN`` does the same on a PostgreSQL database (it
writes the changes there: use a scratch database). The cost must not grow
with the log: one read by the log's key.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.open_log import open_change_log

CALLS = 2_000


async def _fill(log: ChangeLog, size: int, postgres: bool) -> None:
    """Give the log ``size`` more changes of a table ``items`` (one statement)."""
    await log.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT)")
    await log.watch("items")
    start = int((await log.fetch("SELECT count(*) AS n FROM items"))[0]["n"])
    if postgres:
        sql = "INSERT INTO items SELECT g, 'v' || g FROM generate_series($1::int, $2::int) AS g"
    else:
        sql = (
            "WITH RECURSIVE g(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM g WHERE i < ?) "
            "INSERT INTO items SELECT i, 'v' || i FROM g"
        )
    await log.execute(sql, start + 1, start + size)


async def _per_call_us(call: Callable[[int], Awaitable[object]], head: int) -> float:
    rng = random.Random(7)
    samples = []
    for _ in range(5):
        begun = time.perf_counter()
        for _ in range(CALLS // 5):
            await call(rng.randint(1, head))
        samples.append((time.perf_counter() - begun) / (CALLS // 5) * 1e6)
    return statistics.median(samples)


async def _measure(url: str, sizes: list[int]) -> None:
    log = open_change_log(url)
    await log.open()
    postgres = url.startswith("postgres")
    try:
        print(f"{'backend':<10} {'changes':>10} {'ts_at µs':>10} {'head() µs':>10}")
        for size in sizes:
            await _fill(log, size - await log.head(), postgres)
            head = await log.head()
            ts_at = await _per_call_us(log.ts_at, head)
            head_us = await _per_call_us(lambda _seq: log.head(), head)
            name = "postgres" if postgres else "sqlite"
            print(f"{name:<10} {head:>10,} {ts_at:>10.1f} {head_us:>10.1f}", flush=True)
    finally:
        await log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.resume_token", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sizes", default="1000,100000", help="log sizes, comma-separated, ascending (default 1000,100000)"
    )
    parser.add_argument("--pg", metavar="DSN", help="also measure a PostgreSQL log (a scratch database)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as name:
        asyncio.run(_measure(f"sqlite:///{Path(name) / 'bench.db'}", sizes))
    if args.pg:
        asyncio.run(_measure(args.pg, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
