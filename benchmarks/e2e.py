"""Benchmark 2: end to end, SQLite change log -> RealtimeGateway -> RootStore -> TableStore.

The gateway runs in this process on 127.0.0.1 and writes go through its
SQLite log (UPDATEs of a 10k-row table). The client runs in a separate process
and reports when its state holds the last change and how much CPU it used; the
bare peer is a python-socketio ``AsyncClient`` putting the same frames into a dict.

* pipeline: all changes committed in one transaction; changes/s = changes /
  (commit -> the client's state holds the last change). What the gateway and
  the client sustain, without the cost of writing.
* with writes: transactions of ``CHUNK`` UPDATEs written as fast as SQLite
  takes them, concurrently; changes/s = changes / (first write -> last change
  in the client's state). The writer shares the 2 cores.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from benchmarks._common import Output, Table
from benchmarks._gateway import ClientProcess, Server
from rxstore.gateway.server import RealtimeGateway

_DEFAULT_BATCH = inspect.signature(RealtimeGateway).parameters["batch_size"].default

ROWS = 10_000
CHUNK = 1_000
GC_THRESHOLD = 50_000
"""The client process's first cyclic-GC threshold in the ``GC_MODE`` rows (CPython's default: 700)."""
GC_MODE = "pipeline, gc 50k"
KEY_MODE = GC_MODE + ", old=key"
"""The same, from a gateway whose topic sends only the old row's key (``Topic(old="key")``)."""


async def _one(
    server: Server, kind: str, serializer: str, changes: int, records: str, mode: str
) -> dict[str, Any]:
    head = await server.head()
    gc_threshold = GC_THRESHOLD if mode.startswith(GC_MODE) else None
    client = await ClientProcess(
        server.url, kind=kind, serializer=serializer, records=records, head=head, gc_threshold=gc_threshold
    ).start()
    try:
        await asyncio.sleep(0.2)  # let the connection settle (snapshot sent, queues empty)
        await client.send(cmd="wait", seq=head + changes)
        cpu0 = time.process_time()
        started = time.time()
        if mode != "with writes":
            await server.update(1, changes)  # one transaction
            cpu0 = time.process_time()
            started = time.time()
        else:
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


NAMES = {
    ("rxstore", "dict"): "rxstore RootStore -> TableStore (dict rows)",
    ("rxstore", "attrs"): "rxstore RootStore -> TableStore (attrs rows)",
    ("bare", "dict"): "bare python-socketio client -> dict",
}


async def _run(out: Output, quick: bool) -> Table:
    changes = 50_000 if quick else 200_000
    table = Table(
        "e2e",
        f"2. End to end on loopback: {changes:,} UPDATEs, SQLite log -> gateway -> client process",
        [
            "client",
            "serializer",
            "mode",
            "changes/s",
            "client CPU µs/change",
            "vs bare client CPU",
            "gateway CPU µs/change",
        ],
    )
    cases = [
        ("rxstore", "dict", "pipeline"),
        ("bare", "dict", "pipeline"),
        ("rxstore", "dict", GC_MODE),
        ("bare", "dict", GC_MODE),
        ("rxstore", "dict", "with writes"),
    ]
    if not quick:
        cases.insert(4, ("rxstore", "attrs", "pipeline"))
        cases.append(("bare", "dict", "with writes"))
    key_cases = [("rxstore", "dict", KEY_MODE), ("bare", "dict", KEY_MODE)]
    results: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for serializer in ("json", "msgpack"):
        for old, old_cases in (("full", cases), ("key", key_cases)):
            async with Server(serializer=serializer, rows=ROWS, old=old) as server:
                for kind, records, mode in old_cases:
                    out.step(f"{kind} ({records}) over {serializer}, {mode}")
                    results[(kind, records, serializer, mode)] = await _one(
                        server, kind, serializer, changes, records, mode
                    )
                    out.advance()
    cases += key_cases
    for serializer in ("json", "msgpack"):
        for kind, records, mode in cases:
            r = results[(kind, records, serializer, mode)]
            bare = results.get(("bare", "dict", serializer, mode))
            name = NAMES[(kind, records)]
            ratio = r["client_us"] / bare["client_us"] if bare else None
            flag = "" if r["ok"] else " (timed out)"
            variant = f"{serializer} {mode}"
            peer = kind == "bare"
            table.add(
                [
                    name + flag,
                    serializer,
                    mode,
                    r["rate"],
                    r["client_us"],
                    f"{ratio:.2f}x" if ratio else "-",
                    r["gateway_us"],
                ],
                table.row(name, f"{variant} changes/s", r["rate"], "changes/s", peer=peer),
                table.row(name, f"{variant} client CPU", r["client_us"], "us/change", peer=peer),
                table.row(name, f"{variant} gateway CPU", r["gateway_us"], "us/change", peer=peer),
            )
            if ratio is not None and not peer:
                table.rows.append(table.row(name, f"{variant} client CPU vs bare", ratio, "ratio"))
    rj = results[("rxstore", "dict", "json", "pipeline")]
    rm = results[("rxstore", "dict", "msgpack", "pipeline")]
    bj = results[("bare", "dict", "json", "pipeline")]
    bm = results[("bare", "dict", "msgpack", "pipeline")]
    table.notes.append(
        f"targets: >= 100,000 changes/s json (now {rj['rate']:,.0f}), "
        f">= 250,000 msgpack (now {rm['rate']:,.0f}); client CPU within 1.1x of the bare client "
        f"(now {rj['client_us'] / bj['client_us']:.2f}x json, "
        f"{rm['client_us'] / bm['client_us']:.2f}x msgpack)"
    )
    table.notes.append(_goals(results))
    gj = results[("rxstore", "dict", "json", GC_MODE)]
    gm = results[("rxstore", "dict", "msgpack", GC_MODE)]
    bgj = results[("bare", "dict", "json", GC_MODE)]
    bgm = results[("bare", "dict", "msgpack", GC_MODE)]
    table.notes.append(
        f"with gc.set_threshold({GC_THRESHOLD:,}) in both clients: {gj['rate']:,.0f} json, "
        f"{gm['rate']:,.0f} msgpack; client CPU {gj['client_us'] / bgj['client_us']:.2f}x json, "
        f"{gm['client_us'] / bgm['client_us']:.2f}x msgpack"
    )
    kj = results[("rxstore", "dict", "json", KEY_MODE)]
    km = results[("rxstore", "dict", "msgpack", KEY_MODE)]
    table.notes.append(f"and with Topic(old='key') too: {kj['rate']:,.0f} json, {km['rate']:,.0f} msgpack")
    table.notes.append(
        "pipeline: all changes in one transaction, timed from its commit; with writes: transactions of "
        f"{CHUNK:,} UPDATEs written concurrently (gateway CPU then includes the SQLite writer thread). "
        f"Gateway batch_size {_DEFAULT_BATCH} (default); {ROWS:,}-row table; "
        "rxstore's client decodes with msgspec (rxstore.protocol.frames: batches checked while decoded), "
        "the bare client with python-socketio's json; "
        f"gc 50k: the client process runs with gc.set_threshold({GC_THRESHOLD:,}) (see docs/operations.md); "
        "old=key: UPDATE envelopes carry only the old row's key (Topic(old='key'))"
    )
    return table


def _goals(results: dict[tuple[str, str, str, str], dict[str, Any]]) -> str:
    """Issue 11's goals for table 2 (defaults, pipeline rows), each ratio beside its goal."""
    parts = []
    for serializer in ("json", "msgpack"):
        rx = results[("rxstore", "dict", serializer, "pipeline")]
        bare = results[("bare", "dict", serializer, "pipeline")]
        text = (
            f"{serializer}: changes/s {rx['rate'] / bare['rate']:.2f}x the bare client (goal >= 1.0), "
            f"client CPU {rx['client_us'] / bare['client_us']:.2f}x (goal <= 1.0)"
        )
        typed = results.get(("rxstore", "attrs", serializer, "pipeline"))
        if typed is not None:
            text += f", attrs rows {typed['rate'] / rx['rate']:.2f}x dict rows' changes/s (goal >= 0.8)"
        parts.append(text)
    return "targets (defaults, pipeline): " + "; ".join(parts)


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("2 end to end", 14 if quick else 18)
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]
