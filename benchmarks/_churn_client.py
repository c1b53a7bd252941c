"""A soak client process: K slots, each connecting, switching subsets, mutating and leaving, again and again.

Started by ``benchmarks.soak`` as ``python -m benchmarks._churn_client '<json options>'``
(``url``, ``tokens``: one per slot, ``slots``, ``seed``, ``hold``: the most seconds a
connection stays). It prints ``{"ready": true}``, churns until it reads
``{"cmd": "stop"}`` from stdin, lets every slot finish its cycle (each connection
closed), and prints what it did: cycles, subset switches, mutations acknowledged,
presence joins and the errors by type (a cycle that fails counts its error and goes on).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from collections import Counter
from typing import Any

from benchmarks._common import commands, reply, rss_bytes
from rxstore import Backoff, RootStore, TableStore
from rxstore.gateway.demo import Post

SUBSETS: tuple[dict[str, Any], ...] = (
    {"where": None},
    {"where": [["likes", ">=", 5]]},
    {"where": [["id", "in", ["p1", "p2", "p3", "p4", "p5"]]]},
    {"where": [["author", "=", "bench"]], "order_by": [["likes", "desc"]], "limit": 20},
    {"where": [["likes", "<", 3]], "columns": ["id", "likes"]},
)
"""What a slot follows and switches between: everything, a range, keys, a window, some columns."""


class Churn:
    """The counts of one process's slots, and the flag that ends them."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.url: str = options["url"]
        self.tokens: list[str] = options["tokens"]
        self.hold: float = options.get("hold", 0.5)
        self.random = random.Random(options.get("seed", 0))
        self.stopping = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    async def slot(self, index: int) -> None:
        """Cycle until told to stop: connect, follow, switch, maybe mutate and join presence, leave."""
        while not self.stopping.is_set():
            try:
                await self.cycle(index)
                self.counts["cycles"] += 1
            except Exception as exc:  # a cycle's failure is counted, the churn goes on
                self.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                await asyncio.sleep(0.2)

    async def cycle(self, index: int) -> None:
        pick = self.random
        first = dict(pick.choice(SUBSETS))

        class Posts(TableStore[Any]):
            table = "posts"
            record_type = Post if "columns" not in first else None

        posts = Posts(**first)
        backoff = Backoff(initial=0.1, maximum=1.0)
        async with RootStore(self.url, stores=[posts], token=self.tokens[index], backoff=backoff) as root:
            await root.live(timeout=60)
            for _ in range(pick.randint(0, 2)):
                spec = pick.choice(SUBSETS)
                await posts.where(
                    spec["where"],
                    columns=spec.get("columns"),
                    order_by=spec.get("order_by"),
                    limit=spec.get("limit"),
                )
                self.counts["switches"] += 1
            if pick.random() < 0.3:
                post_id = f"soak-{index}-{pick.randrange(20)}"
                await root.mutate("save_post", {"id": post_id, "title": "soak", "likes": pick.randrange(10)})
                self.counts["mutations"] += 1
            if pick.random() < 0.3:
                await root.join_presence("posts", {"status": "soaking"})
                self.counts["presence_joins"] += 1
            await asyncio.sleep(pick.uniform(0, self.hold))


async def main(options: dict[str, Any]) -> None:
    churn = Churn(options)
    slots = [asyncio.create_task(churn.slot(i)) for i in range(len(churn.tokens))]
    reply({"ready": True, "slots": len(slots)})
    async for command in commands():
        if command["cmd"] == "counts":
            reply({"counts": dict(churn.counts), "errors": dict(churn.errors), "rss": rss_bytes()})
        elif command["cmd"] in ("stop", "quit"):
            break
    churn.stopping.set()
    await asyncio.gather(*slots)
    reply({"counts": dict(churn.counts), "errors": dict(churn.errors), "rss": rss_bytes()})


if __name__ == "__main__":
    # the churn's reconnect warnings would bury the output
    logging.getLogger("rxstore").setLevel(logging.ERROR)
    asyncio.run(main(json.loads(sys.argv[1])))
