"""Benchmark 4: resume, 100k changes missed while disconnected, replayed and applied.

The client (separate process) connects, takes the snapshot, disconnects; 100k
UPDATEs are committed; the client reconnects with its cursor. Measured: from
the reconnection starting to the client's state holding the last change. The
gateway replays from its log in frames of ``batch_size`` changes.
"""

from __future__ import annotations

import asyncio

from benchmarks._common import Output, Table
from benchmarks._gateway import ClientProcess, Server

MISSED = 100_000


async def _one(server: Server, kind: str, serializer: str) -> dict[str, float]:
    client = await ClientProcess(
        server.url, kind=kind, serializer=serializer, head=await server.head()
    ).start()
    try:
        await client.request(cmd="disconnect")
        head = await server.write_changes(MISSED, 5_000)
        reply = await client.request(cmd="resume", seq=head, timeout=120)
        assert reply["ok"], f"{kind} did not catch up"
    finally:
        await client.stop()
    seconds = reply["t_done"] - reply["t_start"]
    return {"seconds": seconds, "rate": MISSED / seconds, "cpu_us": reply["cpu"] / MISSED * 1e6}


async def _run(out: Output, quick: bool) -> Table:
    table = Table(
        "resume",
        f"4. Resume: {MISSED:,} missed changes replayed and applied",
        ["client", "serializer", "seconds", "changes/s", "client CPU µs/change"],
    )
    results: dict[tuple[str, str], dict[str, float]] = {}
    serializers = ("json", "msgpack")
    for serializer in serializers:
        async with Server(serializer=serializer, rows=10_000) as server:
            for kind in ("rxstore", "bare"):
                out.step(f"{kind} over {serializer}")
                results[(kind, serializer)] = await _one(server, kind, serializer)
                out.advance()
    for serializer in serializers:
        for kind, name in (
            ("rxstore", "rxstore RootStore -> TableStore"),
            ("bare", "bare python-socketio -> dict"),
        ):
            r = results[(kind, serializer)]
            table.add(
                [name, serializer, r["seconds"], r["rate"], r["cpu_us"]],
                table.row(name, f"{serializer} resume", r["seconds"], "s", peer=kind == "bare"),
                table.row(name, f"{serializer} client CPU", r["cpu_us"], "us/change", peer=kind == "bare"),
            )
    table.notes.append(
        f"target: <= 2 s (now {results[('rxstore', 'json')]['seconds']:.2f} s json, "
        f"{results[('rxstore', 'msgpack')]['seconds']:.2f} s msgpack)"
    )
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("4 resume", 4)
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]
