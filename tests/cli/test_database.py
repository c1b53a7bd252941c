"""``--db``: one rule for every command (forms, default, errors), and no file left by a failed command."""

from __future__ import annotations

import contextlib
import doctest
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import rxstore.cli._database as database
from rxstore.cli._database import DB_FORMS, NewDatabaseFile
from rxstore.gateway.log.open_log import open_change_log
from tests.cli.commands import assert_one_line_error, rxstore, serving

COMMANDS = [["serve"], ["demo", "--duration", "1"], ["log", "show"], ["log", "mark-restore"]]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def tables_of(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:  # closed: a WAL database keeps no side file
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def make_log(path: Path) -> str:
    """A change log in the SQLite file ``path``; its epoch."""
    log = open_change_log(f"sqlite:///{path}")
    await log.open()
    try:
        return await log.epoch()
    finally:
        await log.close()


async def test_log_takes_a_plain_path_a_url_or_nothing_for_the_default_database(tmp_path: Path) -> None:
    """``log show`` with no --db reads ./rxstore.db, as serve does; a path and its sqlite:/// URL are one."""
    epoch = await make_log(tmp_path / "rxstore.db")
    line = f"rxstore: log epoch {epoch}, head seq 0, horizon 0\n"
    for db in (
        [],
        ["--db", "rxstore.db"],
        ["--db", "sqlite:///rxstore.db"],
        ["--db", str(tmp_path / "rxstore.db")],
    ):
        shown = rxstore("log", "show", *db, cwd=tmp_path)
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, line, ""), db


def test_demo_takes_a_sqlite_url_as_serve_does(tmp_path: Path) -> None:
    """``demo --db sqlite:///demo.db`` (it used to read it as a folder named ``sqlite:``)."""
    done = rxstore("demo", "--db", "sqlite:///demo.db", "--duration", "0.5", "--rate", "20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rxstore_changes" in tables_of(tmp_path / "demo.db")
    assert "equals the database" in done.stdout


async def test_serve_takes_a_plain_path_as_a_sqlite_file(tmp_path: Path) -> None:
    async with serving("--db", "app.db", "--demo-schema", "--port", "0", cwd=tmp_path) as server:
        assert "serving posts from sqlite:///app.db on http://" in server.out[0]
    assert "posts" in tables_of(tmp_path / "app.db")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("db", "says"),
    [
        (
            "mysql://db/app",
            "is not a database rxstore serves: use a SQLite file (app.db or sqlite:///app.db)",
        ),
        ("sqlite://app.db", "a SQLite URL has three slashes, sqlite:///app.db (or a plain path: app.db)"),
        ("sqlite:///:memory:", "names no file: name a SQLite file, e.g. app.db"),
        ("", "is not a database rxstore serves"),
    ],
)
def test_a_bad_db_is_the_same_one_line_for_every_command(
    tmp_path: Path, command: list[str], db: str, says: str
) -> None:
    name = " ".join(command[:2] if command[0] == "log" else command[:1])
    assert_one_line_error(
        rxstore(*command, "--db", db, cwd=tmp_path), f"rxstore {name}: error: argument --db:", says, "--help"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_commands_help_says_the_same_forms_and_its_default(tmp_path: Path, command: list[str]) -> None:
    name = command[:2] if command[0] == "log" else command[:1]
    out = " ".join(rxstore(*name, "--help", cwd=tmp_path).stdout.split())
    default = "a throwaway SQLite file" if command[0] == "demo" else "sqlite:///rxstore.db"
    assert f"--db DB {DB_FORMS} (default: {default}" in out, out


def test_log_on_a_missing_database_file_says_to_name_one_and_creates_nothing(tmp_path: Path) -> None:
    for action in ("show", "mark-restore"):
        assert_one_line_error(rxstore("log", action, cwd=tmp_path), "no database file rxstore.db", "--db")
    assert list(tmp_path.iterdir()) == []


def test_serve_with_no_arguments_in_an_empty_folder_creates_no_database(tmp_path: Path) -> None:
    """The default posts table cannot be in a file that does not exist: said before the file is made."""
    assert_one_line_error(
        rxstore("serve", cwd=tmp_path),
        "'posts': no such table",
        "no database file rxstore.db yet",
        "--demo-schema",
    )
    assert list(tmp_path.iterdir()) == []


def test_serve_of_a_missing_table_creates_no_database_file(tmp_path: Path) -> None:
    assert_one_line_error(
        rxstore("serve", "--db", "sqlite:///new.db", "--tables", "notes", "--demo-schema", cwd=tmp_path),
        "'notes': no such table",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    """An existing SQLite file of the user's, with a ``notes`` table."""
    with contextlib.closing(sqlite3.connect(tmp_path / "app.db")) as conn:
        conn.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
        conn.commit()
    return tmp_path / "app.db"


def assert_untouched(app_db: Path) -> None:
    assert sorted(path.name for path in app_db.parent.iterdir()) == ["app.db"]  # before tables_of opens it
    assert tables_of(app_db) == {"notes"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tables", "comments"], "'comments': no such table"),
        (["--tables", "notes", "--key", "notes=slug"], "it has no column 'slug'"),
    ],
)
def test_a_failed_serve_writes_nothing_into_an_existing_database(
    app_db: Path, args: list[str], says: str
) -> None:
    """No rxstore_* table, trigger or demo table is added to the user's file when serve refuses to start."""
    assert_one_line_error(rxstore("serve", "--db", "app.db", *args, "--port", "0", cwd=app_db.parent), says)
    assert_untouched(app_db)


def test_a_failed_serve_leaves_no_side_file_by_a_wal_database(app_db: Path) -> None:
    """A database rxstore served before is in WAL mode: reading its tables makes no -wal or -shm file."""
    with contextlib.closing(sqlite3.connect(app_db)) as conn:
        assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    assert_one_line_error(
        rxstore("serve", "--db", "app.db", "--tables", "comments", cwd=app_db.parent), "no such table"
    )
    assert_untouched(app_db)


def test_serve_on_a_port_in_use_writes_nothing_into_an_existing_database(
    app_db: Path, busy_port: int
) -> None:
    args = ("--tables", "notes", "--demo-schema", "--port", str(busy_port))
    assert_one_line_error(rxstore("serve", "--db", "app.db", *args, cwd=app_db.parent), "cannot listen")
    assert_untouched(app_db)


def test_serve_on_a_port_in_use_creates_no_database_file(tmp_path: Path, busy_port: int) -> None:
    result = rxstore("serve", "--db", "new.db", "--demo-schema", "--port", str(busy_port), cwd=tmp_path)
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "in use")
    assert list(tmp_path.iterdir()) == []


def test_demo_on_a_port_in_use_removes_the_database_file_it_created(tmp_path: Path, busy_port: int) -> None:
    """The file is made (the schema, the log) before the port is known to be taken: then removed."""
    result = rxstore("demo", "--db", "new.db", "--port", str(busy_port), "--duration", "1", cwd=tmp_path)
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "in use")
    assert list(tmp_path.iterdir()) == []


def write_wal_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    return conn


def test_a_new_database_file_is_removed_with_its_side_files_when_the_command_fails(tmp_path: Path) -> None:
    conn = None
    with pytest.raises(RuntimeError), NewDatabaseFile(f"sqlite:///{tmp_path / 'new.db'}"):
        conn = write_wal_database(tmp_path / "new.db")
        assert {p.name for p in tmp_path.iterdir()} >= {"new.db", "new.db-wal"}
        conn.close()
        raise RuntimeError("the port is in use")
    assert list(tmp_path.iterdir()) == []


def test_a_kept_or_existing_database_file_is_never_removed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), NewDatabaseFile(f"sqlite:///{tmp_path / 'kept.db'}") as created:
        write_wal_database(tmp_path / "kept.db").close()
        created.keep()  # the server serves: what is written from now on is the user's
        raise RuntimeError("stopped later")
    write_wal_database(tmp_path / "old.db").close()
    with pytest.raises(RuntimeError), NewDatabaseFile(f"sqlite:///{tmp_path / 'old.db'}"):
        raise RuntimeError("a failure on a database that was there before")
    assert {p.name for p in tmp_path.iterdir()} == {"kept.db", "old.db"}


def test_the_database_docstring_examples_run() -> None:
    result = doctest.testmod(database, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
