"""docs/examples/mirror_service.py: the headless mirror, against a real gateway."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, all_posts, delete_post, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.docs import EXAMPLES, load_example
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

mirror = load_example("mirror_service")


def recount(service: Any) -> dict[str, int]:
    """Posts per author, counted again from the mirrored table."""
    return dict(collections.Counter(post.author for post in service.posts.value.values()))


async def test_mirrors_the_table_logs_new_posts_and_counts_per_author(tmp_path: Path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    log = gateway.log
    await save_post(log, Post(id="p1", title="old one", author="ann"))
    await save_post(log, Post(id="p2", title="old two", author="bob"))
    try:
        async with mirror.MirrorService(gateway.url, AUTH.issue("mirror")) as service:
            # First connect: the snapshot fills the table and the counts; nothing is "new".
            await wait_for(lambda: len(service.posts.value) == 2, what="snapshot")
            assert dict(service.authors.value) == {"ann": 1, "bob": 1}
            assert service.new_posts == []

            await save_post(log, Post(id="p3", title="fresh", author="ann"))
            await wait_for(lambda: len(service.new_posts) == 1, what="new post")
            assert (service.new_posts[0].id, service.new_posts[0].title) == ("p3", "fresh")
            await wait_for(lambda: dict(service.authors.value) == {"ann": 2, "bob": 1}, what="count")

            # A new title counts nothing, a new author moves a post, a delete removes one.
            await save_post(log, Post(id="p3", title="fresher", author="ann"))
            await save_post(log, Post(id="p1", title="old one", author="cy"))
            await delete_post(log, "p2")
            head = await log.head()
            await wait_for(lambda: service.posts.seq == head, what="caught up")
            assert dict(service.authors.value) == {"ann": 1, "cy": 1} == recount(service)
            assert [post.id for post in service.new_posts] == ["p3"]
            mirrored = {key: attrs.asdict(post) for key, post in service.posts.value.rows.items()}
            assert mirrored == {key: attrs.asdict(post) for key, post in (await all_posts(log)).items()}
            assert service.summary() == (
                f"mirrored 2 posts at seq {head}; 1 new while running; authors: ann=1, cy=1"
            )
    finally:
        await gateway.stop()


async def test_posts_created_while_offline_are_logged_and_counted_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    gateway = await start_gateway(url)
    port = gateway.port
    try:
        async with mirror.MirrorService(gateway.url, AUTH.issue("mirror")) as service:
            await wait_for(lambda: service.posts.sync.state.value == "live", what="live")  # snapshot in
            await save_post(gateway.log, Post(id="p1", title="one", author="ann"))
            await wait_for(lambda: [p.id for p in service.new_posts] == ["p1"], what="p1")

            await gateway.stop()
            await wait_for(lambda: service.posts.sync.state.value == "stale", what="stale")
            with sqlite3.connect(tmp_path / "app.db") as db:  # written while nobody serves it
                db.executemany(
                    "INSERT INTO posts (id, title, author) VALUES (?, ?, ?)",
                    [("p2", "two", "ann"), ("p3", "three", "bob")],
                )

            gateway = RealtimeGateway(open_change_log(url), topics=["posts"], auth=AUTH)
            await gateway.start(port=port)
            await wait_for(lambda: len(service.new_posts) == 3, timeout=30, what="replay")
            await wait_for(lambda: service.posts.sync.state.value == "live", what="live")
            assert [p.id for p in service.new_posts] == ["p1", "p2", "p3"]
            assert dict(service.authors.value) == {"ann": 2, "bob": 1} == recount(service)
            assert service.root.metrics.duplicates == 0
    finally:
        await gateway.stop()


async def readline_matching(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> str:
    """Read lines until one matches ``pattern``; keep them all in ``seen``."""
    while True:
        raw = await asyncio.wait_for(stream.readline(), 30)
        if not raw:
            raise AssertionError(f"no line matching {pattern!r}; output was:\n{''.join(seen)}")
        line = raw.decode()
        seen.append(line)
        if re.search(pattern, line):
            return line


async def test_runs_as_a_script_against_rxstore_serve_as_the_docs_say(tmp_path: Path) -> None:
    """``rxstore serve --demo-schema``, ``rxstore token``, then the script, as separate processes."""
    db = tmp_path / "app.db"
    env = {**os.environ, "RXSTORE_SECRET": "docs-test-secret-0123456789abcdefghij"}
    rxstore = [sys.executable, "-m", "rxstore.cli"]
    server = await asyncio.create_subprocess_exec(
        *rxstore, "serve", "--db", f"sqlite:///{db}", "--demo-schema", "--port", "0",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    service: asyncio.subprocess.Process | None = None
    try:
        assert server.stdout is not None
        url = re.search(r"http://[\d.]+:\d+", (await asyncio.wait_for(server.stdout.readline(), 30)).decode())
        assert url is not None
        token = subprocess.run(
            [*rxstore, "token", "--sub", "mirror"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        with sqlite3.connect(db) as conn:
            conn.execute("INSERT INTO posts (id, title, author) VALUES ('p1', 'before', 'ann')")
        service = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "mirror_service.py"), "--url", url.group(0),
            stdout=asyncio.subprocess.PIPE, env={**env, "RXSTORE_TOKEN": token},
        )  # fmt: skip
        assert service.stdout is not None
        seen: list[str] = []
        await readline_matching(service.stdout, r"posts: live", seen)
        with sqlite3.connect(db) as conn:
            conn.execute("INSERT INTO posts (id, title, author) VALUES ('p2', 'Hello from sqlite3', 'bob')")
        await readline_matching(service.stdout, r"new post p2 by bob: 'Hello from sqlite3'", seen)
        await readline_matching(service.stdout, r"authors: ann=1, bob=1", seen)
        service.send_signal(signal.SIGTERM)
        summary = await readline_matching(service.stdout, r"^mirrored ", seen)
        assert summary.startswith("mirrored 2 posts at seq 2; 1 new while running; authors: ann=1, bob=1")
        assert await asyncio.wait_for(service.wait(), 20) == 0
    finally:
        if service is not None and service.returncode is None:
            service.kill()
            await service.wait()
        server.terminate()
        await asyncio.wait_for(server.wait(), 20)


def test_a_missing_token_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "mirror_service.py"), "--url", "http://127.0.0.1:9"],
        env={k: v for k, v in os.environ.items() if k != "RXSTORE_TOKEN"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "RXSTORE_TOKEN" in result.stderr
