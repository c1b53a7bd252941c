"""Floods: one connection sends thousands of requests at once; what it gets, and what another client sees.

A gateway on SQLite (in this process, the demo schema, default limits) serves a
watcher ``RootStore`` that follows ``posts``. Each row first measures the
watcher's change latency (commit -> its state) with nothing else going on
(the floor), then again while one raw python-socketio connection sends N
requests at once without waiting for any answer: ``rxstore:subscribe`` of new
ids, switches of one id, calls to an application handler, broadcasts.
Reported: how the flood was answered (admitted / refused by reason), how long
until every answer was back, the subscriptions the gateway holds afterwards,
and the watcher's latency beside its floor. Client, gateway and the flood
share this process and its cores: the latency includes the time the gateway
spends refusing.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import socketio

from benchmarks._common import Output, Table, percentile
from rxstore import RootStore, TableStore
from rxstore.gateway import Post, RealtimeGateway, TokenAuth, create_demo_schema, open_change_log, save_post

AUTH = TokenAuth(secret="rxstore-benchmark-secret-0123456789abcdef")
KINDS = ("subscribe", "switch", "call", "broadcast")


class Posts(TableStore[Post]):
    table = "posts"
    record_type = Post


def _requests(kind: str, count: int) -> list[tuple[str, Any]]:
    if kind == "subscribe":
        return [
            ("rxstore:subscribe", {"id": f"s{i}", "topic": "posts", "where": [["likes", ">", i]]})
            for i in range(count)
        ]
    if kind == "switch":
        return [
            ("rxstore:subscribe", {"id": "one", "topic": "posts", "where": [["likes", ">", i]]})
            for i in range(count)
        ]
    if kind == "call":
        return [("echo", i) for i in range(count)]
    return [
        ("rxstore:broadcast", {"topic": "posts", "event": "typing", "data": {"n": i}}) for i in range(count)
    ]


async def _latencies(gateway: RealtimeGateway, posts: Posts, count: int, tag: str) -> list[float]:
    """Commit -> watcher state, one change at a time, in ms."""
    seen: list[float] = []
    for i in range(count):
        key = f"{tag}{i}"
        started = time.perf_counter()
        await save_post(gateway.log, Post(id=key, title="t", author="ann"))
        while key not in posts.value.rows:
            await asyncio.sleep(0.0002)
        seen.append((time.perf_counter() - started) * 1000)
    return seen


async def _flood(
    gateway: RealtimeGateway, posts: Posts, kind: str, count: int, samples: int
) -> dict[str, Any]:
    floor = await _latencies(gateway, posts, samples, f"{kind}-floor-")
    sio = socketio.AsyncClient(reconnection=False)
    auth = {"token": AUTH.issue("mallory"), "topics": ["posts"], "subscriptions": [], "cursor": None}
    await sio.connect(gateway.url, auth=auth, transports=["websocket"], wait_timeout=10)
    try:
        started = time.perf_counter()
        calls = [sio.call(event, data, timeout=300) for event, data in _requests(kind, count)]
        answers = asyncio.ensure_future(asyncio.gather(*calls))
        during = await _latencies(gateway, posts, samples, f"{kind}-flood-")
        acks = await answers
        seconds = time.perf_counter() - started
        held = gateway.metrics.registry.get_sample_value("rxstore_subscriptions") or 0.0
    finally:
        await sio.disconnect()
    outcomes = Counter("admitted" if ack.get("ok") else ack.get("error", "?") for ack in acks)
    return {"floor": floor, "during": during, "outcomes": outcomes, "seconds": seconds, "held": held}


async def _run(out: Output, quick: bool) -> Table:
    count, samples = (2_000, 50) if quick else (10_000, 200)
    table = Table(
        "floods",
        f"Floods: {count:,} requests at once on one connection (default limits), another client's latency",
        [
            "flood",
            "answered",
            "all answered in s",
            "subscriptions held",
            "watcher p50 ms (floor)",
            "watcher p50 ms (flood)",
            "watcher p99 ms (floor)",
            "watcher p99 ms (flood)",
        ],
    )
    with tempfile.TemporaryDirectory() as directory:
        log = open_change_log(f"sqlite:///{Path(directory) / 'floods.db'}")
        await log.open()
        await create_demo_schema(log)
        gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH)

        @gateway.on("echo")
        async def echo(user: Any, data: Any) -> Any:
            await asyncio.sleep(0)
            return data

        await gateway.start(port=0)
        try:
            posts = Posts()
            async with RootStore(gateway.url, stores=[posts], token=AUTH.issue("watcher")) as root:
                await root.live(timeout=30)
                for kind in KINDS:
                    out.step(f"{count:,} {kind} at once")
                    r = await _flood(gateway, posts, kind, count, samples)
                    answered = ", ".join(f"{n:,} {what}" for what, n in sorted(r["outcomes"].items()))
                    floor50, flood50 = percentile(r["floor"], 0.5), percentile(r["during"], 0.5)
                    floor99, flood99 = percentile(r["floor"], 0.99), percentile(r["during"], 0.99)
                    table.add(
                        [kind, answered, r["seconds"], int(r["held"]), floor50, flood50, floor99, flood99],
                        table.row(kind, "all answered", r["seconds"], "s"),
                        table.row(kind, "subscriptions held", r["held"], "subscriptions"),
                        *(table.row(kind, what, n, "requests") for what, n in sorted(r["outcomes"].items())),
                        table.row(kind, "watcher p50 (floor)", floor50, "ms", peer=True),
                        table.row(kind, "watcher p50 (flood)", flood50, "ms"),
                        table.row(kind, "watcher p99 (floor)", floor99, "ms", peer=True),
                        table.row(kind, "watcher p99 (flood)", flood99, "ms"),
                    )
                    out.advance()
        finally:
            await gateway.stop()
    table.notes.append(
        "limits: max_subscriptions 64 and max_in_flight 64 per connection, counted from each request's "
        "arrival; the floor is the same watcher with no flood, measured just before each row"
    )
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("floods", len(KINDS))
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]
