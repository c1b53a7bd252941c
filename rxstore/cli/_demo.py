"""``rxstore demo``: a gateway on a SQLite file, a writer, and a live client table in the terminal.

Two visitors (``ann``, ``bob``) come and go in the ``posts`` presence channel beside the
client, which shows who is online and what each is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rxstore.cli._checks import CommandError
from rxstore.cli._database import NewDatabaseFile
from rxstore.cli._running import listen_problem, wait_for_stop
from rxstore.cli._serve import open_log

__all__ = ["PROGRESS_INTERVAL", "demo"]

PROGRESS_INTERVAL = 1.0
"""Seconds between two progress lines where the output is not a terminal."""

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


async def _write_until(stop: asyncio.Event, log: Any, rate: float, counter: list[int]) -> None:
    """Insert, update and delete posts at ``rate`` a second until ``stop`` (never cut mid-write)."""
    from rxstore.gateway.demo import Post, delete_post, save_post

    rng = random.Random(7)
    ids: list[str] = []
    next_id = 1
    interval = 1.0 / rate if rate > 0 else 1.0
    while not stop.is_set():
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
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


_VISITS = (
    ("ann", {"status": "reading"}),
    ("bob", {"status": "reading"}),
    ("ann", {"status": "typing"}),
    ("bob", None),
    ("ann", {"status": "reading"}),
    ("bob", {"status": "typing"}),
    ("ann", None),
    ("bob", {"status": "reading"}),
)
"""The visitors' steps, in a loop: a user and its new metadata, or ``None``: it leaves."""


async def _visit_until(stop: asyncio.Event, url: str, auth: Any, pause: float = 1.0) -> None:
    """Two visitors join, update and leave the ``posts`` presence channel, a step every ``pause`` s."""
    from rxstore import RootStore

    visitors = {user: RootStore(url, token=auth.issue(user)) for user in ("ann", "bob")}
    try:
        for root in visitors.values():
            await root.setup_realtime()
        step = 0
        while not stop.is_set():
            user, meta = _VISITS[step % len(_VISITS)]
            root = visitors[user]
            if meta is None:
                await root.leave_presence("posts")
            elif "posts" in root.presence_channels:
                await root.update_presence("posts", meta)
            else:
                await root.join_presence("posts", meta)
            step += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
    finally:
        for root in visitors.values():
            await root.teardown_realtime()


def _online(presence: Any) -> str:
    """Who is online, with what each is doing: ``demo (watching), ann (typing)``."""
    return ", ".join(
        f"{member.user} ({(member.meta or {}).get('status', '-')})"
        for member in sorted(presence.value, key=lambda member: member.user)
    )


async def demo(args: argparse.Namespace) -> int:
    """Run the demo until stopped or ``--duration``; 0 when the client equals the database.

    On a terminal it draws the live table and a status panel; elsewhere (a file, a
    pipe, CI) it prints one progress line a second. The panel, the lines and the
    final summary count the same way (:func:`_tally`).
    """
    from rxstore.gateway.access.auth import TokenAuth
    from rxstore.gateway.demo import create_demo_schema
    from rxstore.gateway.server import RealtimeGateway

    with tempfile.TemporaryDirectory(prefix="rxstore-demo-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'demo.db'}"
        with NewDatabaseFile(url) as created:
            log = await open_log(url)
            auth = TokenAuth(secret=os.urandom(24).hex())
            gateway = RealtimeGateway(log, topics=["posts"], auth=auth)
            try:
                await create_demo_schema(log)
                await gateway.start("127.0.0.1", args.port)
            except OSError as exc:
                raise CommandError(f"cannot listen on 127.0.0.1:{args.port}: {listen_problem(exc)}") from exc
            except BaseException:
                await log.close()  # a gateway that did not start has not taken the log over
                raise
            try:
                return await _tour(args, gateway, auth, created)
            finally:
                await gateway.stop()  # closes the log, before a file made for nothing is removed


async def _tour(args: argparse.Namespace, gateway: Any, auth: Any, created: NewDatabaseFile) -> int:
    """Follow the posts with a client while the writer changes them; print the summary."""
    from rich.console import Console

    from rxstore import PresenceStore, RootStore, TableStore
    from rxstore.gateway.demo import Post, all_posts

    class PostStore(TableStore[Post]):
        table = "posts"
        record_type = Post

    log, posts, online, written = gateway.log, PostStore(), PresenceStore("posts"), [0]
    head: int | None = None
    console = Console()
    root = RootStore(gateway.url, stores=[posts, online], token=auth.issue("demo"))
    async with root:
        await posts.live()  # the writer starts after the snapshot: the client receives every change
        await root.join_presence("posts", {"status": "watching"})
        created.keep()
        stop_writing = asyncio.Event()
        writer = asyncio.create_task(_write_until(stop_writing, log, args.rate, written))
        visitors = asyncio.create_task(_visit_until(stop_writing, gateway.url, auth))
        started = time.monotonic()

        def tally() -> str:
            return _tally(written[0], root, posts, head)

        if console.is_terminal:
            view = _live_view(
                console, lambda: _render(gateway, root, posts, tally(), started, _online(online))
            )
        else:
            view = _progress_lines(gateway, root, tally, started, lambda: _online(online))
        try:
            async with view:
                await wait_for_stop(args.duration)
                stop_writing.set()
                await writer
                await visitors
                head = await log.head()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_caught_up(posts, head), 5.0)
                table_now = await all_posts(log)
        finally:
            await _stop(writer)
            await _stop(visitors)
    same = table_now == posts.value.to_dict()
    verdict = "equals" if same else "DIFFERS FROM"
    print(f"rxstore demo: {tally()}; the client {verdict} the database ({len(table_now)} posts).", flush=True)
    return 0 if same else 1


def _tally(written: int, root: Any, posts: Any, head: int | None) -> str:
    """What the panel, the progress lines and the summary say of the changes (one wording, one count).

    ``received``: changes the client applied since its snapshot (the writer starts after it).
    """
    metrics = root.metrics
    of_head = "" if head is None else f" of {head}"
    return (
        f"{written} changes written, {metrics.changes_applied} received, "
        f"client at seq {posts.seq or 0}{of_head}, {metrics.errors} errors"
    )


def _lag(root: Any) -> str:
    lag = root.metrics.snapshot().lag_p99_seconds
    return "-" if lag is None else f"{lag * 1000:.1f} ms"


@contextlib.asynccontextmanager
async def _progress_lines(
    gateway: Any, root: Any, tally: Any, started: float, online: Any
) -> AsyncIterator[None]:
    """One plain line a second, for an output that is not a terminal (a file, a pipe, CI)."""

    async def report() -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            uptime = time.monotonic() - started
            print(
                f"rxstore demo: {uptime:.0f} s: {tally()}, lag p99 {_lag(root)}, online: {online()}",
                flush=True,
            )

    print(f"rxstore demo: gateway {gateway.url}, a progress line a second (Ctrl-C to stop)", flush=True)
    reporter = asyncio.create_task(report())
    try:
        yield
    finally:
        await _stop(reporter)


@contextlib.asynccontextmanager
async def _live_view(console: Any, render: Any) -> AsyncIterator[None]:
    """The live table and status panel on a terminal, drawn again 8 times a second, and once at the end."""
    from rich.live import Live

    with Live(render(), console=console, refresh_per_second=8, transient=False) as live:

        async def refresh() -> None:
            while True:
                await asyncio.sleep(0.125)
                live.update(render())

        refresher = asyncio.create_task(refresh())
        try:
            yield
        finally:
            await _stop(refresher)
            live.update(render())


def _render(gateway: Any, root: Any, posts: Any, tally: str, started: float, online: str) -> Any:
    """The live table of the newest posts, and the status panel (who is online in it)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"posts — {len(posts.value)} rows, seq {posts.seq}", expand=True)
    for column, justify in (("id", "left"), ("title", "left"), ("author", "left"), ("likes", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for post in posts.value.ordered(_updated_at, reverse=True)[:12]:
        table.add_row(post.id, post.title, post.author, str(post.likes))
    state = root.connection_state
    status = Text.assemble(
        ("● ", "green" if state.connected else "yellow"),
        f"{state.status.value}  gateway {gateway.url}  ",
        f"events/s {root.metrics.snapshot().events_per_second:,.0f}  lag p99 {_lag(root)}  ",
        f"uptime {time.monotonic() - started:.0f} s\n{tally}\nonline: {online}",
    )
    return Group(table, Panel(status, title="rxstore demo — Ctrl-C to stop"))


def _updated_at(post: Any) -> float:
    return float(post.updated_at)


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _caught_up(store: Any, head: int) -> None:
    while (store.seq or 0) < head:
        await asyncio.sleep(0.02)
