"""The rxstore command line, run as a user would: real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from rxstore import RootStore
from rxstore.gateway.auth import TokenAuth
from tests.gateway.harness import PostStore, wait_for

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
    for command in ("serve", "token", "demo"):
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
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        url = re.search(r"http://[\d.]+:\d+", line).group(0)
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
