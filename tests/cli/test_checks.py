"""Everyday command-line mistakes: one line on stderr, exit status 2, no traceback unless --debug.

Every case runs the real command (``python -m rxstore``) in a subprocess,
against real SQLite files, a real PostgreSQL and real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import doctest
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import rxstore
from tests.cli.commands import RXSTORE, SECRET, assert_one_line_error
from tests.cli.commands import rxstore as run_rxstore
from tests.services import free_port


def cli(*args: str, cwd: Path | None = None, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    """``rxstore ARGS`` in ``cwd`` (default: an empty folder of its own, never the repository)."""
    if cwd is None:
        with tempfile.TemporaryDirectory(prefix="rxstore-cli-") as folder:
            return run_rxstore(*args, cwd=Path(folder), secret=secret)
    return run_rxstore(*args, cwd=cwd, secret=secret)


@pytest.fixture
def slug_db(tmp_path: Path) -> str:
    """A SQLite database whose ``posts`` table is keyed on ``slug`` (no ``id`` column)."""
    with sqlite3.connect(tmp_path / "slug.db") as conn:
        conn.execute("CREATE TABLE posts (slug TEXT PRIMARY KEY, title TEXT)")
    return f"sqlite:///{tmp_path / 'slug.db'}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_the_default_posts_table_missing_on_a_fresh_database_says_to_pass_demo_schema(tmp_path: Path) -> None:
    result = cli("serve", "--db", f"sqlite:///{tmp_path / 'fresh.db'}", "--port", "0")
    assert_one_line_error(result, "'posts': no such table", "--demo-schema")


def test_a_table_that_does_not_exist_is_named(tmp_path: Path) -> None:
    result = cli("serve", "--db", f"sqlite:///{tmp_path / 'fresh.db'}", "--tables", "notes", "--port", "0")
    line = assert_one_line_error(result, "'notes': no such table", "--tables")
    assert "--demo-schema" not in line  # the demo schema has no notes table


def test_a_table_not_keyed_on_id_says_how_to_name_its_key(slug_db: str) -> None:
    result = cli("serve", "--db", slug_db, "--port", "0")
    assert_one_line_error(
        result, "no column 'id'", "slug", "--key posts=COLUMN", "Topic('posts', primary_key="
    )


def test_key_for_a_table_that_is_not_served_is_refused(slug_db: str) -> None:
    result = cli("serve", "--db", slug_db, "--key", "notes=slug", "--port", "0")
    assert_one_line_error(result, "--key notes=slug", "not served")


def test_key_that_is_not_table_equals_column_is_refused(slug_db: str) -> None:
    assert_one_line_error(cli("serve", "--db", slug_db, "--key", "slug"), "not TABLE=COLUMN")


def test_token_without_the_gateway_extra_says_which_extra_to_install() -> None:
    """jwt made unimportable in the process (as when the extra is not installed)."""
    code = (
        "import sys; sys.modules['jwt'] = None; from rxstore.cli import main; "
        "sys.exit(main(['token', '--sub', 'alice']))"
    )
    env = {**os.environ, "RXSTORE_SECRET": SECRET}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert_one_line_error(result, "'gateway' extra", "jwt", "pip install 'rxstore[gateway]'")


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_refused_before_anything_starts(tmp_path: Path, port: str) -> None:
    result = cli("serve", "--db", f"sqlite:///{tmp_path / 'app.db'}", "--demo-schema", "--port", port)
    assert_one_line_error(result, "--port")
    assert not (tmp_path / "app.db").exists()


def test_a_port_in_use_is_reported_as_such(tmp_path: Path, busy_port: int) -> None:
    result = cli(
        "serve", "--db", f"sqlite:///{tmp_path / 'app.db'}", "--demo-schema", "--port", str(busy_port)
    )
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "in use")


def test_a_directory_as_the_sqlite_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    result = cli("serve", "--db", f"sqlite:///{tmp_path / 'a-directory'}", "--port", "0")
    assert_one_line_error(result, "is a directory")


def test_a_sqlite_file_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    result = cli("serve", "--db", f"sqlite:///{tmp_path / 'nowhere' / 'app.db'}", "--port", "0")
    assert_one_line_error(result, "no directory", "nowhere")


def test_an_unsupported_database_url_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(
        cli("serve", "--db", "mysql://db/app", "--port", "0"),
        "argument --db",
        "is not a database rxstore serves",
    )


def test_an_unreachable_postgresql_is_blamed_not_the_port() -> None:
    """A closed port on 127.0.0.1: the message names the database (password hidden), not listening."""
    db = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/app"
    line = assert_one_line_error(cli("serve", "--db", db, "--port", "0"), "cannot connect to postgresql://")
    assert "cannot listen" not in line and "hunter2" not in line and "app:***@" in line


@pytest.mark.postgres
def test_a_missing_table_on_postgresql_is_one_line(pg_dsn: str) -> None:
    result = cli("serve", "--db", pg_dsn, "--tables", "notes", "--port", "0")
    assert_one_line_error(result, "'notes': no such table")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--ttl", "-5"], "--ttl -5 is negative"),
        (["--ttl", "nan"], "not finite"),
        (["--ttl", "soon"], "not a number of seconds"),
    ],
)
def test_token_refuses_a_negative_or_non_numeric_ttl(args: list[str], fragment: str) -> None:
    assert_one_line_error(cli("token", "--sub", "alice", *args), fragment)


@pytest.mark.parametrize("sub", ["", "   "])
def test_token_refuses_an_empty_user(sub: str) -> None:
    assert_one_line_error(cli("token", "--sub", sub), "the user is empty")


@pytest.mark.parametrize(
    ("command", "algorithm", "secret", "need"),
    [
        ("token", "HS256", "short", "32"),
        ("token", "HS512", "x" * 40, "64"),
        ("serve", "HS256", "x" * 31, "32"),
    ],
)
def test_a_secret_shorter_than_the_hash_is_refused_in_rxstore_words(
    tmp_path: Path, command: str, algorithm: str, secret: str, need: str
) -> None:
    """No PyJWT InsecureKeyLengthWarning with a site-packages path: rxstore says it, and refuses."""
    args = ["--sub", "alice"] if command == "token" else ["--db", f"sqlite:///{tmp_path / 'a.db'}"]
    result = cli(command, *args, "--algorithm", algorithm, secret=secret)
    assert_one_line_error(result, f"{algorithm} needs at least {need}", "secrets.token_urlsafe")
    assert "InsecureKeyLengthWarning" not in result.stderr


def test_missing_secret_is_one_line() -> None:
    assert_one_line_error(cli("token", "--sub", "alice", secret=None), "RXSTORE_SECRET")


def test_argparse_mistakes_are_one_line_too() -> None:
    assert_one_line_error(cli("serve", "--no-such-option"), "unrecognized arguments", "--help")
    assert_one_line_error(cli(), "COMMAND")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_adds_the_traceback_before_the_same_line(slug_db: str, where: str) -> None:
    args = ["serve", "--db", slug_db, "--port", "0"]
    result = cli(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("rxstore: cannot watch 'posts': it has no column 'id'")


def test_demo_on_a_port_in_use_is_one_line(busy_port: int) -> None:
    result = cli("demo", "--duration", "1", "--port", str(busy_port))
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "in use")


def test_demo_with_a_directory_as_its_database_file_is_one_line(tmp_path: Path) -> None:
    result = cli("demo", "--duration", "1", "--db", str(tmp_path))
    assert_one_line_error(result, f"--db sqlite:///{tmp_path}: {tmp_path} is a directory")


def test_version_prints_the_package_version() -> None:
    result = cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"rxstore {rxstore.__version__}")


async def test_a_failed_start_leaves_nothing_running(tmp_path: Path, busy_port: int) -> None:
    """The command ends by itself (no thread or task keeps it alive) after a port-in-use error."""
    db = f"sqlite:///{tmp_path / 'app.db'}"
    proc = await asyncio.create_subprocess_exec(
        *RXSTORE, "serve", "--db", db, "--demo-schema", "--port", str(busy_port),
        env={**os.environ, "RXSTORE_SECRET": SECRET}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 30) == 2


def test_the_checks_docstring_examples_run() -> None:
    import rxstore.cli._checks as checks

    result = doctest.testmod(checks, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
