"""``rxstore demo``: a gateway on a SQLite file, a writer, and a live client table in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from rxstore.cli._checks import CommandError
from rxstore.cli._running import listen_problem, wait_for_stop
from rxstore.cli._serve import open_log

__all__ = ["demo"]

_WORDS = (
    "reactive",
    "stores",
    "socket",
    "stream",
    "scan",
    "filter",
    "live",
    "cursor",
    "replay",
    "snapshot",
    "gateway",
    "batch",
    "seq",
    "marble",
    "subject",
)


async def _write_forever(log: Any, rate: float, counter: list[int]) -> None:
    from rxstore.gateway.demo import Post, delete_post, save_post

    rng = random.Random(7)
    ids: list[str] = []
    next_id = 1
    interval = 1.0 / rate if rate > 0 else 1.0
    while True:
        roll = rng.random()
        if len(ids) < 8 or (roll < 0.35 and len(ids) < 30):
            post_id, next_id = f"p{next_id}", next_id + 1
            ids.append(post_id)
            title = " ".join(rng.sample(_WORDS, 3)).capitalize()
            await save_post(
                log,
                Post(
                    id=post_id, title=title, author=rng.choice(["ann", "bob", "cy"]), updated_at=time.time()
                ),
            )
        elif roll < 0.9:
            post_id = rng.choice(ids)
            title = " ".join(rng.sample(_WORDS, 3)).capitalize()
            await save_post(
                log,
                Post(
                    id=post_id,
                    title=title,
                    likes=rng.randint(0, 500),
                    author=rng.choice(["ann", "bob", "cy"]),
                    updated_at=time.time(),
                ),
            )
        else:
            post_id = ids.pop(rng.randrange(len(ids)))
            await delete_post(log, post_id)
        counter[0] += 1
        await asyncio.sleep(interval)


async def demo(args: argparse.Namespace) -> int:
    """Run the demo until stopped or ``--duration``; 0 when the client equals the database."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from rxstore import RootStore, TableStore
    from rxstore.gateway.access.auth import TokenAuth
    from rxstore.gateway.demo import Post, all_posts, create_demo_schema
    from rxstore.gateway.server import RealtimeGateway

    class PostStore(TableStore[Post]):
        table = "posts"
        record_type = Post

    with tempfile.TemporaryDirectory(prefix="rxstore-demo-") as tmp:
        db_path = Path(args.db) if args.db else Path(tmp) / "demo.db"
        log = await open_log(f"sqlite:///{db_path}", option=f"--db {db_path}")
        await create_demo_schema(log)
        auth = TokenAuth(secret=os.urandom(24).hex())
        gateway = RealtimeGateway(log, topics=["posts"], auth=auth)
        try:
            await gateway.start("127.0.0.1", args.port)
        except OSError as exc:
            await gateway.stop()
            raise CommandError(f"cannot listen on 127.0.0.1:{args.port}: {listen_problem(exc)}") from exc
        posts = PostStore()
        written = [0]
        writer = asyncio.create_task(_write_forever(log, args.rate, written))
        console = Console()
        started = time.monotonic()

        def by_recent(post: Post) -> float:
            return post.updated_at

        def render() -> Group:
            metrics = root.metrics.snapshot()
            state = root.connection_state
            table = Table(title=f"posts — {len(posts.value)} rows, seq {posts.seq}", expand=True)
            for column, justify in (
                ("id", "left"),
                ("title", "left"),
                ("author", "left"),
                ("likes", "right"),
            ):
                table.add_column(column, justify=justify)  # type: ignore[arg-type]
            for post in posts.value.ordered(by_recent, reverse=True)[:12]:
                table.add_row(post.id, post.title, post.author, str(post.likes))
            lag = f"{metrics.lag_p99_seconds * 1000:.1f} ms" if metrics.lag_p99_seconds is not None else "-"
            status = Text.assemble(
                ("● ", "green" if state.connected else "yellow"),
                f"{state.status.value}  gateway {gateway.url}  ",
                f"events/s {metrics.events_per_second:,.0f}  lag p99 {lag}  ",
                f"written {written[0]}  received {metrics.events}  errors {metrics.errors}  ",
                f"uptime {time.monotonic() - started:.0f} s",
            )
            return Group(table, Panel(status, title="rxstore demo — Ctrl-C to stop"))

        root = RootStore(gateway.url, stores=[posts], token=auth.issue("demo"))
        try:
            async with root:
                with Live(render(), console=console, refresh_per_second=8, transient=False) as live:
                    refresher = asyncio.create_task(_refresh(live, render))
                    try:
                        await wait_for_stop(args.duration)
                        writer.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await writer
                        head = await log.head()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(_caught_up(posts, head), 5.0)
                        table_now = await all_posts(log)
                    finally:
                        refresher.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await refresher
                        live.update(render())
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await gateway.stop()
        same = table_now == posts.value.to_dict()
        console.print(
            f"\nrxstore demo: {written[0]} changes written, client at seq {posts.seq} of {head}, "
            f"{root.metrics.errors} errors; the client {'equals' if same else 'DIFFERS FROM'} "
            f"the database ({len(table_now)} posts)."
        )
        return 0 if same else 1


async def _caught_up(store: Any, head: int) -> None:
    while (store.seq or 0) < head:
        await asyncio.sleep(0.02)


async def _refresh(live: Any, render: Any) -> None:
    while True:
        await asyncio.sleep(0.125)
        live.update(render())
