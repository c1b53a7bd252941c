"""A persisted client in a process of its own, to be killed: ``python -m tests.persist.client_proc``.

``submit URL STATE N``: start (offline or not), submit N ``save_post`` mutations with optimistic
rows, print ``{"stored": [ids]}`` once all are on disk, then wait to be killed.
``resume URL STATE``: start, print ``{"pending": [...], "has_pending_writes": bool}`` (optimistic
rows back from disk, before any connect), wait for the recovered mutations' results, for live and
for no pending row, print
``{"recovered": [ids], "results": [...], "rows": {id: title}}`` and exit.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from rxstore import Backoff, RootStore
from rxstore.gateway.demo import Post
from tests.persist.harness import AUTH, PostStore


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def make(url: str, state: str) -> tuple[RootStore, PostStore]:
    posts = PostStore()
    root = RootStore(
        url,
        stores=[posts],
        token=AUTH.issue("ann", ttl=3600),
        persist=state,
        backoff=Backoff(initial=0.05, maximum=0.2),
        call_timeout=30.0,
        settle_after=0.5,
    )
    return root, posts


async def submit(url: str, state: str, count: int) -> int:
    root, posts = make(url, state)
    await root.setup_realtime(wait=False)
    await root.loaded()
    mutations = [
        root.submit(
            "save_post",
            {"id": f"m{i % 3}", "title": f"m{i}"},
            optimistic={posts: {f"m{i % 3}": Post(id=f"m{i % 3}", title=f"m{i}")}},
            timeout=60.0,
        )
        for i in range(count)
    ]
    await asyncio.gather(*(m.stored for m in mutations))
    emit({"stored": [m.id for m in mutations]})
    await asyncio.Event().wait()  # killed here
    return 1


async def resume(url: str, state: str) -> int:
    root, posts = make(url, state)
    await root.loaded()
    emit({"pending": list(posts.pending), "has_pending_writes": posts.has_pending_writes})
    await root.setup_realtime(wait=False)
    results = await asyncio.wait_for(asyncio.gather(*(m.result for m in root.recovered)), 30)
    await root.live(timeout=30)
    while posts.has_pending_writes:  # a mutation already in the snapshot settles settle_after its ack
        await asyncio.sleep(0.01)
    emit(
        {
            "recovered": [m.id for m in root.recovered],
            "results": results,
            "rows": {key: post.title for key, post in posts.value.items()},
        }
    )
    await root.teardown_realtime()
    return 0


if __name__ == "__main__":
    mode, url, state, *rest = sys.argv[1:]
    if mode == "submit":
        sys.exit(asyncio.run(submit(url, state, int(rest[0]))))
    sys.exit(asyncio.run(resume(url, state)))
