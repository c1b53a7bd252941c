"""The database a command names with ``--db``: one rule for every command, and no file left on failure.

Every command (``serve``, ``demo``, ``log show``, ``log mark-restore``) reads
``--db`` with :func:`database_url`: a SQLite file as a plain path (``app.db``,
``/srv/app.db``) or as a URL (``sqlite:///app.db``, ``sqlite:////srv/app.db``),
or a PostgreSQL URL (``postgresql://USER:PASSWORD@HOST:PORT/DB``). The
default is :data:`DEFAULT_DB`, except for ``demo``, whose default is a
throwaway file (it writes random posts: it only touches a database it is given).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sqlite3
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "DB_FORMS",
    "DEFAULT_DB",
    "NewDatabaseFile",
    "add_db_option",
    "database_url",
    "sqlite_path",
    "sqlite_tables",
]

DEFAULT_DB = "sqlite:///rxstore.db"
"""The database of ``serve`` and ``log`` when ``--db`` is not given: ``rxstore.db`` in the current folder."""

DB_FORMS = "a SQLite file (app.db or sqlite:///app.db) or postgresql://USER:PASSWORD@HOST:PORT/DB"
"""What ``--db`` takes, in words (help texts and errors say the same)."""

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")
_SIDECARS = ("", "-wal", "-shm", "-journal")
"""Suffixes of the files SQLite keeps for a database (the database itself first)."""


def database_url(text: str) -> str:
    """Argparse type of ``--db``: a database URL, a plain path taken as a SQLite file.

    Raises:
        argparse.ArgumentTypeError: Not a form ``--db`` takes; the message says which are.

    Example:
        >>> database_url("app.db"), database_url("/srv/app.db")
        ('sqlite:///app.db', 'sqlite:////srv/app.db')
        >>> database_url("sqlite:///app.db"), database_url("postgresql://app@db/app")
        ('sqlite:///app.db', 'postgresql://app@db/app')
        >>> database_url("mysql://db/app")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: 'mysql://db/app' is not a database rxstore serves: use a SQLite file ...
    """
    if text.startswith(_POSTGRES):
        return text
    if text.startswith(_SQLITE):
        return _sqlite_url(text, text[len(_SQLITE) :])
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", text)
    if scheme and scheme.group(1).lower() == "sqlite":
        raise argparse.ArgumentTypeError(
            f"{text!r}: a SQLite URL has three slashes, sqlite:///app.db (or a plain path: app.db)"
        )
    if scheme or not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a database rxstore serves: use {DB_FORMS}")
    return _sqlite_url(text, text.replace("%", "%25").replace("?", "%3F"))


def _sqlite_url(text: str, path: str) -> str:
    if not path or urllib.parse.unquote(path.split("?", 1)[0]) == ":memory:":
        raise argparse.ArgumentTypeError(
            f"{text!r} names no file: name a SQLite file, e.g. app.db (clients, writers and workers "
            "share the log through it)"
        )
    return _SQLITE + path


def add_db_option(parser: Any, *, default: str | None = DEFAULT_DB, default_text: str | None = None) -> None:
    """Add ``--db`` to a (sub)command's parser, the same way for every command.

    Args:
        parser: The command's parser.
        default: The database when ``--db`` is not given.
        default_text: How the help says the default (default: ``default`` itself).
    """
    parser.add_argument(
        "--db",
        type=database_url,
        default=default,
        metavar="DB",
        help=f"{DB_FORMS} (default: {default_text or default})",
    )


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL made by :func:`database_url`; ``None`` for PostgreSQL.

    Example:
        >>> sqlite_path("sqlite:///data/app%3F.db"), sqlite_path("postgresql://db/app")
        (PosixPath('data/app?.db'), None)
    """
    if not url.startswith(_SQLITE):
        return None
    return Path(urllib.parse.unquote(url[len(_SQLITE) :].split("?", 1)[0]))


def sqlite_tables(path: Path) -> dict[str, list[str]]:
    """The tables of a SQLite file and the columns ``SELECT *`` gives, read only (none without the file).

    Example:
        >>> sqlite_tables(Path("no-such-file.db"))
        {}
    """
    if not path.is_file():
        return {}
    # A WAL database in use has its -wal and -shm files: read it with them. One not in use is all in
    # its file: read it as immutable, which makes no -wal or -shm (mode=ro would, and leave them).
    in_use = all(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
    uri = f"{path.resolve().as_uri()}?{'mode=ro' if in_use else 'immutable=1'}"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: _columns(conn, name) for name in names}


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    rows = conn.execute("SELECT name FROM pragma_table_xinfo(?) WHERE hidden != 1 ORDER BY cid", (table,))
    return [row[0] for row in rows]


class NewDatabaseFile:
    """The SQLite file a command is about to create: removed, with SQLite's side files, if the command fails.

    Wrap what creates the database in it, and call :meth:`keep` once the command
    does what it is for (a server serves): from then on a failure keeps the file
    and what was written to it. A file that exists already, and a PostgreSQL
    database, are never touched.

    Args:
        url: The database URL (from :func:`database_url`).

    Example:
        >>> with NewDatabaseFile("postgresql://db/app") as created:
        ...     created.files
        []
    """

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        new = path is not None and not path.exists()
        self.files = [Path(f"{path}{suffix}") for suffix in _SIDECARS] if new else []
        self.files = [file for file in self.files if not file.exists()]

    def keep(self) -> None:
        """Keep the file whatever happens from now on."""
        self.files = []

    def __enter__(self) -> NewDatabaseFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:  # the database must be closed by now: the command's own cleanup ran first
            for file in self.files:
                file.unlink(missing_ok=True)
