"""A benchmark client process with one RootStore, with or without a state file, driven by stdin.

Started by ``benchmarks.persist`` as ``python -m benchmarks._persist_client '<json options>'``
(``url``, ``token``, ``state``: a state file or ``null``, ``head``: the seq to be live at).
Once imported it makes the root, fills it from the file (``root.loaded()``), connects and waits
until its table holds ``head``; it prints ``{"ready": ...}`` with the wall times of those steps,
then answers one JSON line per command read from stdin:

* ``{"cmd": "wait", "seq": S}``: wait until the table holds seq ``S`` and (with a state file)
  until the state file has it too; reply with the wall time the table got there and this
  process's CPU seconds (every thread: the state file's writer too) since the command arrived.
* ``{"cmd": "quit"}``: tear the root down (the state file written and closed) and exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
import time
from typing import Any

from benchmarks._common import commands, reply
from rxstore import RootStore, TableStore
from rxstore.gateway.demo import Post


class Posts(TableStore[Post]):
    table = "posts"
    record_type = Post


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _reached(posts: Posts, seq: int, timeout: float) -> float:
    """Wait until ``posts`` holds ``seq``; the wall time it did."""
    reached = asyncio.Event()
    at = [0.0]

    def check(state: Any) -> None:
        if not reached.is_set() and state.seq is not None and state.seq >= seq:
            at[0] = time.time()
            reached.set()

    subscription = posts.state.subscribe(check)
    try:
        await asyncio.wait_for(reached.wait(), timeout)
    finally:
        subscription.dispose()
    return at[0]


async def main(options: dict[str, Any]) -> None:
    started = time.time()
    cpu0 = _cpu()
    posts = Posts()
    root = RootStore(options["url"], stores=[posts], token=options["token"], persist=options.get("state"))
    restored = await root.loaded()
    from_disk = time.time()
    rows_from_disk = len(posts.value)
    await root.setup_realtime()
    live = await _reached(posts, options["head"], 300)
    await root.persisted()  # the snapshot on disk before anything else is measured
    reply(
        {
            "ready": True,
            "t_start": started,
            "t_disk": from_disk,
            "t_live": live,
            "restored": restored,
            "rows_from_disk": rows_from_disk,
            "rows": len(posts.value),
            "cpu": _cpu() - cpu0,
        }
    )
    async for command in commands():
        if command["cmd"] == "wait":
            cpu0, thread0 = _cpu(), time.thread_time()
            done_at = await _reached(posts, command["seq"], command.get("timeout", 300))
            await root.persisted()  # the cost of persisting includes getting it onto disk
            metrics = root.persist.metrics if root.persist is not None else None
            reply(
                {
                    "ok": True,
                    "t_done": done_at,
                    "cpu": _cpu() - cpu0,
                    "thread_cpu": time.thread_time() - thread0,
                    "writes": metrics.writes if metrics else 0,
                    "write_seconds": metrics.write_seconds if metrics else 0.0,
                }
            )
        elif command["cmd"] == "quit":
            break
    await root.teardown_realtime()


if __name__ == "__main__":
    logging.getLogger("rxstore").setLevel(logging.ERROR)
    asyncio.run(main(json.loads(sys.argv[1])))
