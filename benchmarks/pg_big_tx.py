"""One huge transaction through PostgreSQL WAL capture: the capture process's peak RSS.

``python -m benchmarks.pg_big_tx [--rows N ...]`` starts a throwaway PostgreSQL 15 cluster
(tests/services.py, ``wal_level=logical``) and, for each size, a fresh database with a table
``items(id text primary key, title text, body text, n int)`` of N rows (a 100-byte body) written
before it is watched, so that only the update below is captured. A gateway-like process (this
module with ``--capture URL``: ``PostgresChangeLog(url, capture="wal")``, its capture leader and
sequencer, no clients) watches ``items``; then one statement updates every row
(``UPDATE items SET n = n + 1``: one transaction of N changes, whole old rows with them) and the
process waits until that transaction is in the log, sequenced.

Reported per size: the process's RSS once ready (before the update), its peak RSS over its whole
life (``ru_maxrss``), the growth between them, the seconds from the update's commit to the last
change sequenced, and the changes in the log (must be N).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from typing import Any

import asyncpg

from benchmarks._common import commands, rss_bytes

BODY = 100
SIZES = (10_000, 100_000, 1_000_000)
CREATE = "CREATE TABLE items (id text PRIMARY KEY, title text, body text, n int NOT NULL DEFAULT 0)"
FILL = (
    "INSERT INTO items (id, title, body) "
    "SELECT 'i' || x, 'item ' || x, repeat('b', $1) FROM generate_series(1, $2) x"
)
MiB = 1024 * 1024
HEADER = "| rows | RSS ready (MiB) | peak RSS (MiB) | growth (MiB) | update (s) | captured (s) | logged |"


async def capture(url: str) -> None:
    """The gateway-like side: open the log, watch ``items``, answer ``settle`` with the figures."""
    from rxstore.gateway.log.postgres.changelog import PostgresChangeLog

    log = PostgresChangeLog(url, capture="wal")
    await log.open()
    await log.watch("items")
    await log.wait_captured()
    print(json.dumps({"ready": True, "rss": rss_bytes()}), flush=True)
    async for command in commands():
        if command["cmd"] == "settle":
            started = time.monotonic()
            await log.wait_captured(timeout=3600)
            conn = await asyncpg.connect(url)
            try:
                while await conn.fetchval("SELECT count(*) FROM rxstore_changes WHERE seq IS NULL"):
                    await asyncio.sleep(0.05)
                count = await conn.fetchval("SELECT count(*) FROM rxstore_changes WHERE topic = 'items'")
            finally:
                await conn.close()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            figures = {"count": count, "peak": peak, "rss": rss_bytes(), "waited": time.monotonic() - started}
            print(json.dumps(figures), flush=True)
        elif command["cmd"] == "quit":
            break
    await log.close()


async def measure(url: str, rows: int) -> dict[str, Any]:
    """Fill, start the capture process, update every row in one statement, read its figures."""
    conn = await asyncpg.connect(url)
    proc = None
    try:
        await conn.execute(CREATE)
        await conn.execute(FILL, BODY, rows)
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.pg_big_tx", "--capture", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        started = time.monotonic()
        await conn.execute("UPDATE items SET n = n + 1")
        committed = time.monotonic() - started
        proc.stdin.write(json.dumps({"cmd": "settle"}) + "\n")
        proc.stdin.flush()
        done = json.loads(proc.stdout.readline())
        proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        proc.stdin.flush()
        proc.wait(60)
        return {
            "rows": rows,
            "ready_mib": ready["rss"] / MiB,
            "peak_mib": done["peak"] / MiB,
            "growth_mib": (done["peak"] - ready["rss"]) / MiB,
            "update_s": committed,
            "captured_s": done["waited"],
            "logged": done["count"],
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_big_tx", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES), help="transaction sizes (rows)")
    parser.add_argument("--capture", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.capture:
        asyncio.run(capture(args.capture))
        return 0
    from tests.services import PostgresServer

    with PostgresServer(settings={"wal_level": "logical"}) as server:
        print(HEADER)
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for rows in args.rows:
            url = server.create_database(f"bigtx_{rows}")
            r = asyncio.run(measure(url, rows))
            print(
                f"| {r['rows']:,} | {r['ready_mib']:.0f} | {r['peak_mib']:.0f} | {r['growth_mib']:.0f} "
                f"| {r['update_s']:.1f} | {r['captured_s']:.1f} | {r['logged']:,} |",
                flush=True,
            )
            server.drop_database(f"bigtx_{rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
