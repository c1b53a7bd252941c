"""The rxstore command line, run as a user would: real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import jwt
import pytest

from rxstore import RootStore, TableStore
from rxstore.gateway.access.auth import TokenAuth
from tests.gateway.harness import PostStore
from tests.services import PostgresServer
from tests.waiting import wait_for

SECRET = "cli-test-secret-0123456789abcdefghij"
RXSTORE = [sys.executable, "-m", "rxstore.cli"]


def test_token_prints_a_jwt_for_the_secret():
    out = subprocess.run(
        [*RXSTORE, "token", "--sub", "alice", "--ttl", "60", "--secret", SECRET],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert TokenAuth(secret=SECRET).verify(out).id == "alice"


def test_missing_secret_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "RXSTORE_SECRET"}
    result = subprocess.run(
        [*RXSTORE, "token", "--sub", "a"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode != 0 and "RXSTORE_SECRET" in result.stderr


def test_help_lists_the_commands():
    out = subprocess.run([*RXSTORE, "--help"], capture_output=True, text=True, check=True, timeout=30).stdout
    for command in ("serve", "token", "demo", "log"):
        assert command in out


async def test_serve_and_token_let_a_separate_root_store_follow_a_table(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    env = {**os.environ, "RXSTORE_SECRET": SECRET}
    server = await asyncio.create_subprocess_exec(
        *RXSTORE,
        "serve",
        "--db",
        f"sqlite:///{db}",
        "--tables",
        "posts",
        "--demo-schema",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        found = re.search(r"http://[\d.]+:\d+", line)
        assert found is not None, line
        url = found.group(0)
        token = subprocess.run(
            [*RXSTORE, "token", "--sub", "bob"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=30,
        ).stdout.strip()
        posts = PostStore()
        async with RootStore(url, stores=[posts], token=token):
            with sqlite3.connect(db) as conn:
                conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'written with sqlite3')")
            await wait_for(lambda: "p1" in posts.value, what="change from the sqlite3 module")
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 20) == 0


def test_demo_runs_and_ends_equal_to_the_database():
    result = subprocess.run(
        [*RXSTORE, "demo", "--duration", "2", "--rate", "200"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "equals the database" in " ".join(result.stdout.split())


@asynccontextmanager
async def serving(*args: str) -> AsyncIterator[tuple[str, str]]:
    """``rxstore serve ARGS --port 0`` in a subprocess; yields its URL and its first line."""
    server = await asyncio.create_subprocess_exec(
        *RXSTORE, "serve", *args, "--port", "0",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "RXSTORE_SECRET": SECRET},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        found = re.search(r"http://[\d.]+:\d+", line)
        assert found, line
        yield found.group(0), line
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 20) == 0


def issued_token(*args: str) -> str:
    """``rxstore token ARGS``'s stdout as printed, trailing newline included."""
    return subprocess.run(
        [*RXSTORE, "token", *args, "--secret", SECRET], capture_output=True, text=True, check=True, timeout=30
    ).stdout


@attrs.frozen
class Article:
    slug: str
    title: str


class ArticleStore(TableStore[Article]):
    table = "articles"
    record_type = Article
    primary_key = "slug"


def create_table(db: Path, sql: str, rows: Sequence[tuple[str, str]] = ()) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)
        conn.executemany(f"INSERT INTO {sql.split()[2]} VALUES (?, ?)", rows)


async def test_key_option_serves_a_table_keyed_on_slug_to_a_root_store(tmp_path: Path) -> None:
    """serve --key articles=slug: snapshot, INSERT, UPDATE and DELETE reach a TableStore keyed on slug."""
    db = tmp_path / "app.db"
    create_table(db, "CREATE TABLE articles (slug TEXT PRIMARY KEY, title TEXT)", [("hello", "Hello")])
    async with serving("--db", f"sqlite:///{db}", "--tables", "articles", "--key", "articles=slug") as (
        url,
        _,
    ):
        articles = ArticleStore()
        async with RootStore(url, stores=[articles], token=issued_token("--sub", "ann").strip()):
            await wait_for(lambda: "hello" in articles.value, what="the snapshot row keyed on slug")
            with sqlite3.connect(db) as conn:
                conn.execute("INSERT INTO articles VALUES ('news', 'News')")
                conn.execute("UPDATE articles SET title = 'Hello again' WHERE slug = 'hello'")
            await wait_for(
                lambda: (
                    articles.value.to_dict()
                    == {"hello": Article("hello", "Hello again"), "news": Article("news", "News")}
                ),
                what="INSERT and UPDATE keyed on slug",
            )
            with sqlite3.connect(db) as conn:
                conn.execute("DELETE FROM articles WHERE slug = 'news'")
            await wait_for(lambda: "news" not in articles.value, what="DELETE keyed on slug")


async def test_demo_schema_serves_posts_besides_the_named_tables(tmp_path: Path) -> None:
    """--tables articles --demo-schema creates posts and serves it too (it used to serve articles only)."""
    db = tmp_path / "app.db"
    create_table(db, "CREATE TABLE articles (slug TEXT PRIMARY KEY, title TEXT)", [("a1", "First")])
    args = ("--db", f"sqlite:///{db}", "--tables", "articles", "--key", "articles=slug", "--demo-schema")
    async with serving(*args) as (url, line):
        assert "serving articles, posts from" in line
        posts, articles = PostStore(), ArticleStore()
        async with RootStore(url, stores=[posts, articles], token=issued_token("--sub", "ann").strip()):
            with sqlite3.connect(db) as conn:
                conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'demo post')")
            await wait_for(lambda: "p1" in posts.value and "a1" in articles.value, what="rows of both tables")


async def test_a_token_with_its_trailing_newline_is_accepted_by_the_gateway(tmp_path: Path) -> None:
    """rxstore token's output as printed (with its newline, as read from a file) connects."""
    token = issued_token("--sub", "bob")
    assert token.endswith("\n")
    async with serving("--db", f"sqlite:///{tmp_path / 'app.db'}", "--demo-schema") as (url, _):
        posts = PostStore()
        async with RootStore(url, stores=[posts], token=token) as root:
            await wait_for(
                lambda: root.connection_state.connected, what="a connection with the newline token"
            )


def test_ttl_zero_gives_a_token_that_never_expires_and_help_says_so() -> None:
    claims = jwt.decode(issued_token("--sub", "alice", "--ttl", "0").strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and "exp" not in claims
    out = subprocess.run(
        [*RXSTORE, "token", "--help"], capture_output=True, text=True, check=True, timeout=30
    )
    assert "0: it never expires" in " ".join(out.stdout.split())


async def test_serve_follows_a_subset_with_no_new_flag(tmp_path: Path) -> None:
    """``rxstore serve --demo-schema`` serves live queries as it is: a store following ann's posts
    gets only those, and a switch to bob's with ``await store.where(...)`` replaces them."""
    db = tmp_path / "app.db"
    async with serving("--db", f"sqlite:///{db}", "--demo-schema") as (url, _):
        with sqlite3.connect(db) as conn:
            conn.executemany(
                "INSERT INTO posts (id, title, author) VALUES (?, ?, ?)",
                [("p1", "a", "ann"), ("p2", "b", "bob"), ("p3", "c", "ann")],
            )
        posts = PostStore(where={"author": "ann"})
        async with RootStore(url, stores=[posts], token=issued_token("--sub", "ann").strip()):
            await posts.live()
            assert set(posts.value) == {"p1", "p3"}
            await posts.where({"author": "bob"})
            assert set(posts.value) == {"p2"}
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE posts SET author = 'bob' WHERE id = 'p1'")
            await wait_for(lambda: set(posts.value) == {"p1", "p2"}, what="p1 moving into bob's posts")


async def test_serve_says_how_it_captures_and_healthz_shows_the_capture(
    pg_dsn: str, postgres: PostgresServer
) -> None:
    """On PostgreSQL with wal_level=logical, ``rxstore serve`` says it reads the WAL and why;
    /healthz reports the WAL capture (leader, lag); ``--capture trigger`` on that log is refused
    with what to do (a log keeps the mode it was made with)."""
    import aiohttp
    import pytest

    level = postgres.psql("SHOW wal_level").strip()
    if level != "logical":
        pytest.skip(f"WAL capture needs wal_level=logical; this server runs wal_level={level}")

    async with serving("--db", pg_dsn, "--demo-schema") as (_url, _):
        pass  # made the log (in WAL mode)
    server = await asyncio.create_subprocess_exec(
        *RXSTORE, "serve", "--db", pg_dsn, "--demo-schema", "--port", "0", "--workers", "1",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "RXSTORE_SECRET": SECRET},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        first = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        second = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        assert "capture: the WAL (logical decoding): the log was made with WAL capture" in second, second
        found = re.search(r"http://[\d.]+:\d+", first)
        assert found
        async with aiohttp.ClientSession() as http:

            async def leading() -> bool:
                async with http.get(found.group(0) + "/healthz") as response:
                    capture = (await response.json())["capture"]
                    return bool(capture["mode"] == "wal" and capture["role"] == "leader")

            await wait_for(leading, what="the node leading the WAL capture")
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 20) == 0
    result = subprocess.run(
        [*RXSTORE, "serve", "--db", pg_dsn, "--capture", "trigger", "--port", "0"],
        capture_output=True, text=True, env={**os.environ, "RXSTORE_SECRET": SECRET}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "captures with the WAL" in result.stderr, result.stderr


async def test_log_level_debug_prints_a_gateway_line_per_change_broadcast(tmp_path: Path) -> None:
    """``serve --log-level debug`` turns on the gateway's ``[RealtimeGateway]`` lines in its worker."""
    from tests.cli.commands import serving

    db = tmp_path / "app.db"
    args = ["--db", str(db), "--demo-schema", "--port", "0", "--log-level", "debug"]
    async with serving(*args, cwd=tmp_path) as server:
        token = TokenAuth(secret=SECRET).issue("bob")
        posts = PostStore()
        async with RootStore(server.url, stores=[posts], token=token):
            await posts.live(timeout=30)
            with sqlite3.connect(db) as conn:
                conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'hello')")
            await wait_for(lambda: "p1" in posts.value, what="the change")
            await wait_for(
                lambda: any("[RealtimeGateway] broadcast: seq=" in line for line in server.err),
                what="the gateway's debug line on stderr",
            )
        lines = [line for line in server.err if "[RealtimeGateway] broadcast:" in line]
        assert len(lines) == 1 and "table=posts op=INSERT" in lines[0], server.err


def test_log_level_is_one_of_debug_info_warning(tmp_path: Path) -> None:
    from tests.cli.commands import assert_one_line_error, rxstore

    line = assert_one_line_error(rxstore("serve", "--log-level", "loud", cwd=tmp_path), "--log-level")
    assert "debug" in line and "rxstore serve --help" in line


@pytest.mark.postgres
async def test_slot_warning_bytes_reaches_the_wal_capture_of_the_log_serve_opens(pg_dsn: str) -> None:
    """``serve --slot-warning-bytes 64MiB``: the log it opens warns over 64 MiB of retained WAL (1 GiB
    left out); the option is what the supervisor's workers open their log with too."""
    from rxstore.cli._parser import build_parser
    from rxstore.cli._serve import open_log

    args = build_parser().parse_args(
        ["serve", "--db", pg_dsn, "--capture", "wal", "--slot-warning-bytes", "64MiB"]
    )
    assert args.slot_warning_bytes == 64 << 20
    assert build_parser().parse_args(["serve", "--db", pg_dsn]).slot_warning_bytes is None
    log = await open_log(args.db, capture=args.capture, slot_warning_bytes=args.slot_warning_bytes)
    try:
        assert log.slot_warning_bytes == 64 << 20
    finally:
        await log.close()
    default = await open_log(args.db, capture=args.capture)
    try:
        assert default.slot_warning_bytes == 1 << 30
    finally:
        await default.close()
