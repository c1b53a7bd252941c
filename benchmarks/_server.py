"""A gateway process for the fan-out benchmark (so that its RSS is its own), driven over stdin.

``python -m benchmarks._server '<json options>'`` prints ``{"url": ..., "rss": ...}``
when serving, then answers one JSON line per command:
``{"cmd": "paced", "rate": R, "seconds": S}`` (writes, then replies with the head),
``{"cmd": "rss"}``, ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from benchmarks._common import commands, reply, rss_bytes
from benchmarks._gateway import Server


async def main(options: dict[str, Any]) -> None:
    async with Server(
        serializer=options.get("serializer", "json"),
        rows=options.get("rows", 100),
        coalesce=options.get("coalesce", 0.0),
    ) as server:
        assert server.gateway is not None
        reply({"url": server.url, "rss": rss_bytes(), "head": await server.head()})
        peak = rss_bytes()
        async for command in commands():
            if command["cmd"] == "paced":
                cpu0 = time.process_time()
                wall0 = time.perf_counter()
                sampler = asyncio.create_task(_sample_rss())
                count = await server.paced(command["rate"], command["seconds"])
                sampler.cancel()
                peak = max(peak, await _result(sampler))
                reply(
                    {
                        "count": count,
                        "head": await server.head(),
                        "cpu": time.process_time() - cpu0,
                        "wall": time.perf_counter() - wall0,
                        "rss": rss_bytes(),
                        "peak": peak,
                        "clients": len(server.gateway._clients),
                    }
                )
            elif command["cmd"] == "rss":
                reply({"rss": rss_bytes(), "clients": len(server.gateway._clients)})
            elif command["cmd"] == "quit":
                break


_PEAK = [0]


async def _sample_rss() -> None:
    while True:
        _PEAK[0] = max(_PEAK[0], rss_bytes())
        await asyncio.sleep(0.1)


async def _result(task: asyncio.Task[None]) -> int:
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return _PEAK[0]


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
