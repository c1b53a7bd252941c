"""Benchmark 9: fan-out cost per delivery of one shared live frame (issue 15, "Per delivery").

One gateway process; N raw aiohttp websocket clients (the Socket.IO handshake
done by hand, no permessage-deflate, every frame counted and nothing else) in
two client processes; K live frames of one change each, broadcast to every
client as fast as the gateway goes. Measured: the gateway process's CPU time
(user + system) per delivery, for

* bare python-socketio: ``sio.emit(event, data, room=...)`` of the same kind of frame;
* rxstore before: ``Tailer.broadcast`` with ``Delivery.direct`` off (each client's
  queue and writer task, python-engineio's queue and writer task, aiohttp's writer);
* rxstore after: the direct path (``rxstore.gateway.delivery.wire``), the default;
* the floor: the same gateway, the frame's websocket bytes written to each client's
  transport in a bare loop (no checks, no metrics): what any one-write-per-client design pays.

``python -m benchmarks.delivery '<json options>'`` runs one helper process
(``{"role": "server", "kind": ...}`` or ``{"role": "client", ...}``), answering
JSON lines like ``benchmarks._server``.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks._common import Output, Table, commands, reply
from benchmarks._gateway import AUTH, Process
from rxstore.protocol.events import BATCH, LIVE, Change, Op

KINDS = (
    ("bare", "bare python-socketio emit(room=)"),
    ("old", "rxstore before (queue + writer task + engine.io)"),
    ("direct", "rxstore after (direct websocket write)"),
    ("floor", "floor: transport.write of the frame's bytes alone"),
)
ROOM = "topic:posts"
_BATCH_PREFIX = f'42["{BATCH}"'
_LIVE_PREFIX = f'42["{LIVE}"'


def _envelope(seq: int) -> dict[str, Any]:
    row = {"id": "p1", "title": "post 1", "body": "body of post 1", "author": "bench", "private": 0}
    return {
        "seq": seq,
        "topic": "posts",
        "op": "UPDATE",
        "record": {**row, "likes": seq},
        "old": row,
        "ts": 0.0,
    }


# -- the gateway process ------------------------------------------------------------------------


async def _bare_server() -> tuple[Any, web.AppRunner, str]:
    import socketio

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    async def connect(sid: str, environ: Any, auth: Any) -> None:
        await sio.enter_room(sid, ROOM)

    sio.on("connect", connect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return sio, runner, f"http://127.0.0.1:{port}"


async def _serve(options: dict[str, Any]) -> None:
    from benchmarks._gateway import Server

    kind = options["kind"]
    server: Server | None = None
    runner: web.AppRunner | None = None
    if kind == "bare":
        sio, runner, url = await _bare_server()
    else:
        server = Server(rows=10)
        await server.__aenter__()
        assert server.gateway is not None
        gateway = server.gateway
        gateway.delivery.direct = kind != "old"
        url = server.url
    reply({"url": url})
    seq = 10**6
    cpu0 = 0.0
    profile: cProfile.Profile | None = None
    try:
        async for command in commands():
            if command["cmd"] == "fanout":
                if command.get("profile"):
                    profile = cProfile.Profile()
                    profile.enable()
                cpu0 = time.process_time()
                times0 = os.times()
                for _ in range(command["frames"]):
                    seq += 1
                    if kind == "bare":
                        await sio.emit(BATCH, {"events": [["post_update", _envelope(seq)]]}, room=ROOM)
                    elif kind == "floor":
                        _floor(gateway, seq)
                    else:
                        change = Change(
                            seq=seq,
                            topic="posts",
                            op=Op.UPDATE,
                            record=_envelope(seq)["record"],
                            old=_envelope(seq)["old"],
                            ts=time.time(),
                        )
                        gateway.tailer.broadcast([change])
                    await asyncio.sleep(0)  # as the tailer does between reads
                reply({"sent": command["frames"]})
            elif command["cmd"] == "cpu":
                cpu = time.process_time() - cpu0
                times = os.times()
                system = times.system - times0.system
                text = ""
                if profile is not None:
                    profile.disable()
                    stream = io.StringIO()
                    pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(14)
                    text = stream.getvalue()
                    profile = None
                reply({"cpu": cpu, "system": system, "profile": text})
            elif command["cmd"] == "quit":
                break
    finally:
        if server is not None:
            await server.__aexit__(None, None, None)
        if runner is not None:
            await runner.cleanup()


def _floor(gateway: Any, seq: int) -> None:
    delivery = gateway.delivery
    wire = delivery.wire(delivery.batch_frames([["post_update", _envelope(seq)]])[0])
    for client in gateway.tailer.plain.values():
        link = client.link if client.link is not None else delivery.link(client)
        link.transport.write(wire)


# -- a client process ---------------------------------------------------------------------------


async def _clients(options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    n, bare = options["clients"], options["kind"] == "bare"
    url = options["url"].replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    auth = "40" + json.dumps({"token": options["token"], "topics": ["posts"], "cursor": None})
    counts = [0] * n
    live = [False] * n
    last = [0.0]

    async def one(i: int, session: aiohttp.ClientSession, up: asyncio.Event) -> None:
        async with session.ws_connect(url, compress=0, max_msg_size=0) as ws:
            await ws.receive()  # the engine.io OPEN packet
            await ws.send_str(auth)
            up.set()
            async for msg in ws:
                data = msg.data
                if type(data) is not str:
                    continue
                if data.startswith(_BATCH_PREFIX):
                    counts[i] += 1
                    last[0] = time.monotonic()
                elif data == "2":
                    await ws.send_str("3")
                elif data.startswith(_LIVE_PREFIX) or (bare and data.startswith("40")):
                    live[i] = True

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    tasks = []
    for i in range(n):
        up = asyncio.Event()
        tasks.append(asyncio.create_task(one(i, session, up)))
        await asyncio.wait_for(up.wait(), 30)
    deadline = loop.time() + 120
    while not all(live) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    reply({"live": sum(live)})
    try:
        async for command in commands():
            if command["cmd"] == "wait":
                deadline = loop.time() + command.get("timeout", 120)
                while min(counts) < command["frames"] and loop.time() < deadline:
                    await asyncio.sleep(0.02)
                reply({"ok": min(counts) >= command["frames"], "received": sum(counts), "last": last[0]})
            elif command["cmd"] == "quit":
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()


# -- the benchmark ------------------------------------------------------------------------------


class _Helper(Process):
    module = "benchmarks.delivery"


async def measure(
    kind: str, clients: int, frames: int, processes: int = 2, profile: bool = False
) -> dict[str, Any]:
    """One run: ``clients`` clients of one gateway of ``kind``, ``frames`` shared frames to each."""
    server = await _Helper(role="server", kind=kind).start()
    procs: list[_Helper] = []
    try:
        url, token = server.ready["url"], AUTH.issue("bench", ttl=None)
        per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        procs = [_Helper(role="client", kind=kind, url=url, token=token, clients=k) for k in per if k]
        await asyncio.gather(*(p.start(timeout=300) for p in procs))
        live = sum(p.ready["live"] for p in procs)
        start = time.monotonic()
        await server.request(cmd="fanout", frames=frames, profile=profile, timeout=300)
        waits = await asyncio.gather(*(p.request(cmd="wait", frames=frames, timeout=300) for p in procs))
        cpu = await server.request(cmd="cpu")
    finally:
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        await server.stop()
    deliveries = sum(w["received"] for w in waits)
    wall = max(w["last"] for w in waits) - start
    return {
        "complete": all(w["ok"] for w in waits) and live == clients,
        "deliveries": deliveries,
        "expected": clients * frames,
        "us": cpu["cpu"] / max(deliveries, 1) * 1e6,
        "per_s": deliveries / wall if wall > 0 else 0.0,
        "cpu_s": cpu["cpu"],
        "system_share": cpu["system"] / cpu["cpu"] if cpu["cpu"] else 0.0,
        "profile": cpu["profile"],
    }


async def _run(out: Output, quick: bool) -> Table:
    sizes = ((100, 50), (400, 50)) if quick else ((500, 200), (2000, 100))
    table = Table(
        "delivery",
        "9. Fan-out: cost per delivery of a shared live frame (1 gateway process, clients in 2 processes)",
        [
            "clients x frames",
            "path",
            "deliveries",
            "gateway CPU us / delivery",
            "deliveries / CPU s",
            "deliveries / s (wall)",
        ],
    )
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for clients, frames in sizes:
        for kind, name in KINDS:
            out.step(f"{clients} clients, {name}")
            r = results[kind, clients] = await measure(kind, clients, frames)
            out.advance()
            table.add(
                [
                    f"{clients:,} x {frames}",
                    name + ("" if r["complete"] else " (incomplete)"),
                    f"{r['deliveries']:,}/{r['expected']:,}",
                    r["us"],
                    1e6 / r["us"] if r["us"] else None,
                    r["per_s"],
                ],
                table.row(name, f"{clients} clients CPU per delivery", r["us"], "us", peer=kind == "bare"),
                table.row(name, f"{clients} clients deliveries/s", r["per_s"], "1/s", peer=kind == "bare"),
            )
    big = sizes[-1][0]
    table.notes.append(
        f"targets: <= 6 us gateway CPU per delivery (>= 150k deliveries/s per process); now, {big:,} "
        f"clients: {results['direct', big]['us']:.1f} us (before {results['old', big]['us']:.1f} us, "
        f"bare python-socketio {results['bare', big]['us']:.1f} us)"
    )
    table.notes.append(
        "CPU: the gateway process's user + system time from the first broadcast until every client "
        "counted every frame (loopback TCP sends included); wall deliveries/s shares the machine's "
        "cores with the client processes"
    )
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("9 delivery", 2 * len(KINDS))
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]


if __name__ == "__main__":
    opts = json.loads(sys.argv[1])
    asyncio.run(_serve(opts) if opts["role"] == "server" else _clients(opts))
