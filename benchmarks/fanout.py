"""Benchmark 5: fan-out, one gateway process, N clients in separate processes, 200 changes/s.

The gateway runs in its own process (so its RSS is its own) and writes one
UPDATE per transaction, 200 per second; N clients are spread over several
client processes (one process per client would take ~40 MB each). Measured:
commit -> client state latency over every change at every client, and the
gateway's RSS idle, with N clients connected, and at peak.
"""

from __future__ import annotations

import asyncio

from benchmarks._common import Output, Table, percentile
from benchmarks._gateway import ClientProcess, ServerProcess

RATE = 200.0
COALESCE = (0.0, 0.05)
"""Gateway ``coalesce`` settings compared: none (the default) and 50 ms."""
MB = 1024 * 1024


async def _one(kind: str, clients: int, processes: int, seconds: float, coalesce: float) -> dict[str, float]:
    server = ServerProcess(rows=100, coalesce=coalesce)
    await server.start()
    procs: list[ClientProcess] = []
    try:
        url, head = server.ready["url"], server.ready["head"]
        idle_rss = server.ready["rss"]
        per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        procs = [ClientProcess(url, kind=kind, clients=n, lags=True, head=head) for n in per if n]
        await asyncio.gather(*(p.start(timeout=300) for p in procs))
        connected = await server.request(cmd="rss")
        assert connected["clients"] == clients, connected
        written = await server.request(cmd="paced", rate=RATE, seconds=seconds, timeout=seconds + 120)
        waits = await asyncio.gather(
            *(p.request(cmd="wait", seq=written["head"], timeout=120) for p in procs)
        )
        caught_up = all(w["ok"] for w in waits)
        lags: list[float] = []
        for reply in await asyncio.gather(*(p.request(cmd="lags") for p in procs)):
            lags.extend(reply["lags"])
        client_rss = sum(w["rss"] for w in waits) / clients
    finally:
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        await server.stop()
    expected = written["count"] * clients
    return {
        "caught_up": float(caught_up and len(lags) == expected),
        "deliveries": len(lags),
        "expected": expected,
        "p50": percentile(lags, 0.5) or 0.0,
        "p99": percentile(lags, 0.99) or 0.0,
        "max": max(lags, default=0.0),
        "idle_rss": idle_rss,
        "rss": connected["rss"],
        "peak_rss": written["peak"],
        "gateway_cpu": written["cpu"] / written["wall"],
        "write_rate": written["count"] / written["wall"],
        "client_rss": client_rss,
    }


async def _run(out: Output, quick: bool) -> Table:
    clients, processes, seconds = (50, 5, 3.0) if quick else (500, 10, 5.0)
    table = Table(
        "fanout",
        f"5. Fan-out: 1 gateway, {clients} clients in {processes} processes, "
        f"{RATE:.0f} changes/s for {seconds:.0f} s",
        [
            "clients",
            "gateway coalesce ms",
            "deliveries",
            "p50 ms",
            "p99 ms",
            "max ms",
            "gateway RSS idle / connected / peak MB",
            "gateway CPU (cores)",
            "writes/s achieved",
        ],
    )
    results = {}
    for coalesce in COALESCE:
        for kind, name in (
            ("rxstore", "rxstore RootStore -> TableStore"),
            ("bare", "bare python-socketio -> dict"),
        ):
            out.step(f"{clients} {kind} clients, coalesce {coalesce * 1000:.0f} ms")
            r = results[kind, coalesce] = await _one(kind, clients, processes, seconds, coalesce)
            out.advance()
            rss = f"{r['idle_rss'] / MB:.0f} / {r['rss'] / MB:.0f} / {r['peak_rss'] / MB:.0f}"
            label = f"{clients} x {name}" + ("" if r["caught_up"] else " (incomplete)")
            variant = f"{clients} clients" + (f" coalesce {coalesce * 1000:.0f} ms" if coalesce else "")
            peer = kind == "bare"
            table.add(
                [
                    label,
                    f"{coalesce * 1000:.0f}",
                    f"{r['deliveries']:,}/{r['expected']:,}",
                    r["p50"] * 1000,
                    r["p99"] * 1000,
                    r["max"] * 1000,
                    rss,
                    r["gateway_cpu"],
                    r["write_rate"],
                ],
                table.row(name, f"{variant} p50", r["p50"] * 1000, "ms", peer=peer),
                table.row(name, f"{variant} p99", r["p99"] * 1000, "ms", peer=peer),
                table.row(name, f"{variant} gateway RSS connected", r["rss"] / MB, "MB", peer=peer),
                table.row(name, f"{variant} gateway RSS peak", r["peak_rss"] / MB, "MB", peer=peer),
                table.row(name, f"{variant} gateway CPU", r["gateway_cpu"], "cores", peer=peer),
                table.row(name, f"{variant} writes/s", r["write_rate"], "writes/s", peer=peer),
            )
    best = min(COALESCE, key=lambda c: results["rxstore", c]["p99"])
    rx = results["rxstore", best]
    table.notes.append(
        f"target: 500 clients at {RATE:.0f} changes/s, p99 <= 100 ms (now {clients} clients, p99 "
        f"{rx['p99'] * 1000:,.0f} ms at {rx['write_rate']:,.0f} writes/s, coalesce {best * 1000:.0f} ms); "
        f"gateway RSS per connected client {(rx['rss'] - rx['idle_rss']) / clients / 1024:,.0f} KiB"
    )
    table.notes.append(
        "coalesce: RealtimeGateway(coalesce=...), the shortest time between two live broadcasts; "
        "changes committed meanwhile reach each client in one frame"
    )
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("5 fan-out", 2 * len(COALESCE))
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]
