"""A persisted client that works until it is killed: ``python -m tests.persist.chaos_proc``.

``run URL STATE FIRST``: start from the state file, connect in the background, and submit
``save_post`` mutations numbered from FIRST, one every few milliseconds, with optimistic rows,
until killed. ``final URL STATE``: start from the state file, submit nothing, wait until the
recovered mutations are answered and the table is live, print ``{"settled": true}``, read the
log's head from stdin, wait until the table holds it with no pending row, print the rows, exit.

Both print JSON lines: ``{"from": cursor, "recovered": [ids]}`` once the file
is loaded; ``{"seq": s}`` for each change handed to the table (after the root's duplicate
filter) and ``{"snapshot": seq}`` for a snapshot; ``{"stored": [n, id]}`` once mutation
number n is on disk; ``final`` ends with ``{"rows": {...}, "at": seq}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from functools import partial
from typing import Any

import attrs

from rxstore import Backoff, Event, EventKind, RootStore
from rxstore.client.outbox import consume_exception
from rxstore.gateway.demo import Post
from tests.persist.harness import AUTH, PostStore

KEYS = 4
"""Mutations write posts m0..m3, in turn: each row is written again and again."""


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
        call_timeout=60.0,
        settle_after=0.5,
    )

    def on_event(event: Event) -> None:
        if event.kind is EventKind.CHANGE:
            emit({"seq": event.seq})
        elif event.kind is EventKind.SNAPSHOT:
            emit({"snapshot": event.seq})

    root.events.subscribe(on_event)
    return root, posts


async def start(root: RootStore) -> None:
    await root.loaded()
    emit({"from": root.cursor, "recovered": [m.id for m in root.recovered]})  # before any connect
    await root.setup_realtime(wait=False)


def told(n: int, mutation: str, stored: asyncio.Future[None]) -> None:
    if not stored.cancelled() and stored.exception() is None:
        emit({"stored": [n, mutation]})


async def run(url: str, state: str, first: int) -> int:
    root, posts = make(url, state)
    await start(root)
    n = first
    while True:  # until killed
        key = f"m{n % KEYS}"
        mutation = root.submit(
            "save_post",
            {"id": key, "title": f"m{n}"},
            optimistic={posts: {key: Post(id=key, title=f"m{n}")}},
            timeout=60.0,
        )
        mutation.result.add_done_callback(consume_exception)
        mutation.stored.add_done_callback(partial(told, n, mutation.id))
        n += 1
        await asyncio.sleep(0.005)


async def final(url: str, state: str) -> int:
    root, posts = make(url, state)
    await start(root)
    await asyncio.gather(*(m.result for m in root.recovered), return_exceptions=True)
    await root.live(timeout=30)
    emit({"settled": True})  # every mutation answered: the log's head is final now
    head = int(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
    while (posts.seq or 0) < head or posts.has_pending_writes:
        await asyncio.sleep(0.01)
    emit({"rows": {key: attrs.asdict(post) for key, post in posts.value.items()}, "at": posts.seq})
    await root.teardown_realtime()
    return 0


if __name__ == "__main__":
    mode, url, state, *number = sys.argv[1:]
    sys.exit(asyncio.run(run(url, state, int(number[0])) if mode == "run" else final(url, state)))
