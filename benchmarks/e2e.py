"""Benchmark 2: end to end, SQLite change log -> RealtimeGateway -> RootStore -> TableStore.

The gateway runs in this process on 127.0.0.1 and writes go through its
SQLite log (UPDATE statements in transactions of ``CHUNK`` rows, as fast as
SQLite takes them). The client runs in a separate process and reports when
its state holds the last change and how much CPU it used; the bare peer is a
python-socketio ``AsyncClient`` putting the same frames into a dict.

changes/s = changes / (first write started -> client state holds the last change).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks._common import Output, Table
from benchmarks._gateway import ClientProcess, Server

ROWS = 10_000
CHUNK = 1_000


async def _one(server: Server, kind: str, serializer: str, changes: int, records: str) -> dict[str, Any]:
    head = await server.head()
    client = await ClientProcess(
        server.url, kind=kind, serializer=serializer, records=records, head=head
    ).start()
    try:
        await asyncio.sleep(0.2)  # let the connection settle (snapshot sent, queues empty)
        cpu0 = time.process_time()
        started = time.time()
        await client.send(cmd="wait", seq=head + changes)
        await server.write_changes(changes, CHUNK)
        reply = await client._read(180)
        gateway_cpu = time.process_time() - cpu0
    finally:
        await client.stop()
    elapsed = reply["t_done"] - started
    return {
        "ok": reply["ok"],
        "rate": changes / elapsed,
        "client_us": reply["cpu"] / changes * 1e6,
        "gateway_us": gateway_cpu / changes * 1e6,
    }


async def _run(out: Output, quick: bool) -> Table:
    changes = 50_000 if quick else 200_000
    table = Table(
        "e2e",
        f"2. End to end on loopback: {changes:,} UPDATEs, SQLite log -> gateway -> client process",
        [
            "client",
            "serializer",
            "changes/s",
            "client CPU µs/change",
            "vs bare client CPU",
            "gateway CPU µs/change",
        ],
    )
    cases = [("rxstore", "dict"), ("bare", "dict")]
    if not quick:
        cases.append(("rxstore", "attrs"))
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    for serializer in ("json", "msgpack"):
        async with Server(serializer=serializer, rows=ROWS) as server:
            for kind, records in cases:
                out.step(f"{kind} ({records}) over {serializer}")
                results[(kind, records, serializer)] = await _one(server, kind, serializer, changes, records)
                out.advance()
    for serializer in ("json", "msgpack"):
        bare = results[("bare", "dict", serializer)]
        for kind, records in cases:
            r = results[(kind, records, serializer)]
            name = {
                ("rxstore", "dict"): "rxstore RootStore -> TableStore (dict rows)",
                ("rxstore", "attrs"): "rxstore RootStore -> TableStore (attrs rows)",
                ("bare", "dict"): "bare python-socketio client -> dict",
            }[(kind, records)]
            ratio = r["client_us"] / bare["client_us"]
            flag = "" if r["ok"] else " (timed out)"
            table.add(
                [name + flag, serializer, r["rate"], r["client_us"], f"{ratio:.2f}x", r["gateway_us"]],
                table.row(name, f"{serializer} changes/s", r["rate"], "changes/s", peer=kind == "bare"),
                table.row(name, f"{serializer} client CPU", r["client_us"], "us/change", peer=kind == "bare"),
                table.row(name, f"{serializer} client CPU vs bare", ratio, "ratio", peer=kind == "bare"),
                table.row(
                    name, f"{serializer} gateway CPU", r["gateway_us"], "us/change", peer=kind == "bare"
                ),
            )
    rj = results[("rxstore", "dict", "json")]
    rm = results[("rxstore", "dict", "msgpack")]
    bj, bm = results[("bare", "dict", "json")], results[("bare", "dict", "msgpack")]
    table.notes.append(
        f"targets: >= 100,000 changes/s json (now {rj['rate']:,.0f}), "
        f">= 250,000 msgpack (now {rm['rate']:,.0f}); client CPU within 1.1x of the bare client "
        f"(now {rj['client_us'] / bj['client_us']:.2f}x json, "
        f"{rm['client_us'] / bm['client_us']:.2f}x msgpack)"
    )
    table.notes.append(
        f"gateway batch_size 500 (default); writes in transactions of {CHUNK:,} rows "
        f"on a {ROWS:,}-row table; gateway CPU includes the SQLite writer thread"
    )
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("2 end to end", 4 if quick else 6)
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]
