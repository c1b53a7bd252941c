"""Benchmark 3: latency from commit to the client's state, paced at 1,000 changes/s.

Each change is its own SQLite transaction (one UPDATE), written every 1 ms by
the gateway's process; ``ts`` in the change envelope is the commit time the
capture trigger records (SQLite ``julianday('now')``, millisecond precision).
The rxstore client (separate process) records ``time.time() - ts`` once the
change is in its TableStore's state and the state was emitted; the bare
python-socketio client records it when the frame is in its dict.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks._common import Output, Table, percentile
from benchmarks._gateway import ClientProcess, PgServer, Server

RATE = 1_000.0


async def _measure(server: Server, kind: str, seconds: float) -> list[float]:
    client = await ClientProcess(server.url, kind=kind, lags=True, head=await server.head()).start()
    try:
        await asyncio.sleep(0.2)
        await client.request(cmd="lags")  # drop the warm-up
        count = await server.paced(RATE, seconds)
        head = await server.head()
        reply = await client.request(cmd="wait", seq=head, timeout=60)
        assert reply["ok"], "client did not catch up"
        lags: list[float] = (await client.request(cmd="lags"))["lags"]
    finally:
        await client.stop()
    if len(lags) != count:
        raise RuntimeError(f"{kind}: {len(lags)} lags for {count} changes")
    return lags


async def _run(out: Output, quick: bool) -> Table:
    seconds = 3.0 if quick else 10.0
    table = Table(
        "latency",
        f"3. Latency commit -> client state at {RATE:,.0f} changes/s for {seconds:.0f} s (ms)",
        ["client", "changes", "p50", "p90", "p99", "p99.9", "max"],
    )
    series: dict[str, list[float]] = {}
    from tests.services import PostgresServer

    databases: list[tuple[str, Any]] = [("SQLite", lambda: Server(rows=1_000))]
    if PostgresServer.missing() is None:
        databases.append(("PostgreSQL", lambda: PgServer(rows=1_000)))
    for database, make in databases:
        async with make() as server:
            for kind, name in (
                ("rxstore", "rxstore RootStore -> TableStore"),
                ("bare", "bare python-socketio -> dict"),
            ):
                out.step(f"{name}, {database} ({seconds:.0f} s)")
                lags = await _measure(server, kind, seconds)
                out.advance()
                series[f"{name} ({database})"] = lags
                ps = [percentile(lags, q) for q in (0.5, 0.9, 0.99, 0.999)]
                ms = [p * 1000 if p is not None else None for p in ps]
                table.add(
                    [f"{name} ({database})", len(lags), *ms, max(lags) * 1000],
                    *(
                        table.row(name, f"{database} p{label}", value, "ms", peer=kind == "bare")
                        for label, value in zip(("50", "90", "99", "99.9"), ms, strict=True)
                    ),
                )
    for database, target in (("SQLite", 10), ("PostgreSQL", 15)):
        measured = series.get(f"rxstore RootStore -> TableStore ({database})")
        p99 = percentile(measured, 0.99) if measured else None
        now = f"{p99 * 1000:.1f} ms" if p99 is not None else "not measured: PostgreSQL 15 binaries not found"
        table.notes.append(f"target: p99 <= {target} ms with {database} (now {now})")
    table.notes.append("ts has millisecond resolution (SQLite julianday): each lag may read up to 1 ms high")
    table.series = series
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("3 latency", 4)
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]
