"""Checks and errors of the ``rxstore`` command line.

A mistake on the command line (an option out of range, a table that does not
exist, a database that cannot be opened, a missing extra) is one line on
stderr and exit status 2; ``--debug`` adds the Python traceback.
"""

from __future__ import annotations

import argparse
import difflib
import math
import string
import sys
import traceback
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rxstore.protocol.errors import RxStoreError

__all__ = [
    "EXIT_USAGE",
    "SECRET_ENV",
    "CommandError",
    "Parser",
    "check_secret",
    "explain_watch_error",
    "port",
    "redact",
    "run_command",
    "served_tables",
    "table_key",
    "ttl",
    "user",
    "workers",
]

EXIT_USAGE = 2
"""Exit status of every command-line mistake (argparse's own, too)."""

SECRET_ENV = "RXSTORE_SECRET"
"""The environment variable ``serve`` and ``token`` read the HMAC secret from."""

_EXTRAS = {
    "jwt": "gateway",
    "cryptography": "gateway",
    "asyncpg": "gateway",
    "prometheus_client": "gateway",
    "rich": "gateway",
    "redis": "gateway",
    "orjson": "gateway",
    "msgpack": "msgpack",
    "ormsgpack": "msgpack",
    "textual": "devtools",
}
"""Top-level module -> the rxstore extra that installs it."""

_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
"""RFC 7518 3.2: an HMAC key at least as long as the hash's output."""


class CommandError(RxStoreError, ValueError):
    """A command cannot run as given; the message says what to change.

    Example:
        >>> str(CommandError("no JWT secret: pass --secret or set RXSTORE_SECRET"))
        'no JWT secret: pass --secret or set RXSTORE_SECRET'
    """


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, and whose every (sub)command takes ``--debug``.

    A mistake names the help of the command it was made in (``rxstore serve --help``),
    and a mistyped option or command gets the closest one suggested.

    Example:
        >>> parser = Parser(prog="rxstore")
        >>> parser.parse_args(["--debug"]).debug
        True
        >>> hasattr(parser.parse_args([]), "debug")
        False
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.commands: dict[str, argparse.ArgumentParser] = {}
        self.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="on an error, print the Python traceback too",
        )

    def add_subparsers(self, **kwargs: Any) -> Any:
        """Add the subcommands, remembering them to check a command's name before parsing its options."""
        action = super().add_subparsers(**kwargs)
        self.commands = action.choices
        return action

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse ``args``; an unknown command or option is an error of this (sub)command, not its parent's.

        The subcommands' parsers parse what follows their name here, so an option
        mistyped after ``serve`` is refused by ``rxstore serve``, with its help named.
        """
        arguments = list(sys.argv[1:] if args is None else args)
        self._check_command(arguments)
        parsed, extras = super().parse_known_args(arguments, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{_did_you_mean(extras, _options(self))}")
        return parsed, extras

    def _check_command(self, arguments: Sequence[str]) -> None:
        """Refuse an unknown subcommand name, suggesting the closest (the parent takes no option value)."""
        for argument in arguments:
            if argument in ("-h", "--help", "--version", "--"):
                return
            if not argument.startswith("-"):
                if self.commands and argument not in self.commands:
                    names = list(self.commands)
                    hint = _did_you_mean([argument], names) or f": use one of {', '.join(names)}"
                    self.error(f"unknown command {argument!r}{hint}")
                return

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line, naming this command's help, and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see: {self.prog} --help)\n")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string ``parser`` takes.

    argparse has no public list of a parser's options: this reads ``ArgumentParser._actions``
    (CPython 3.11-3.13); ``tests/cli/test_parser.py`` fails if it goes.
    """
    return [option for action in parser._actions for option in action.option_strings]


def _did_you_mean(words: Sequence[str], known: Sequence[str]) -> str:
    """``"; did you mean --port?"`` for the first of ``words`` close to one of ``known``, else ``""``.

    Example:
        >>> _did_you_mean(["--prot=8080"], ["--port", "--host"])
        '; did you mean --port?'
    """
    for word in words:
        close = difflib.get_close_matches(word.partition("=")[0], known, n=1)
        if close:
            return f"; did you mean {close[0]}?"
    return ""


def run_command(body: Callable[[], int], *, debug: bool) -> int:
    """Run a command; turn its errors into one line on stderr and status 2.

    Args:
        body: The command; returns its exit status.
        debug: Print the traceback before the line.
    """
    try:
        return body()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"rxstore: {_explain(exc, debug=debug)}", file=sys.stderr, flush=True)
        return EXIT_USAGE


def _explain(exc: Exception, *, debug: bool) -> str:
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, ImportError):
        return _missing_module(exc)
    hint = "" if debug else " (--debug prints the traceback)"
    return f"unexpected {type(exc).__name__}: {_one_line(str(exc))}{hint}"


def _missing_module(exc: ImportError) -> str:
    module = (exc.name or "").partition(".")[0]
    extra = _EXTRAS.get(module)
    if extra is None:
        return f"a module is missing: {_one_line(str(exc))}"
    return (
        f"this command needs the '{extra}' extra (module {module} is missing): pip install 'rxstore[{extra}]'"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def workers(text: str) -> int:
    """Argparse type: a number of worker processes, 1 to 1024.

    Example:
        >>> workers("4")
        4
        >>> workers("0")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: 0 workers: use 1 or more (one per core is the usual choice)
    """
    return _int_in(
        text, 1, 1024, "a number of workers", "{} workers: use 1 or more (one per core is the usual choice)"
    )


def port(text: str) -> int:
    """Argparse type: a TCP port, 0 (a free one) to 65535.

    Example:
        >>> port("8080")
        8080
        >>> port("99999")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: 99999 is not a TCP port: use 1-65535, or 0 for a free one
    """
    return _int_in(text, 0, 65535, "a port number", "{} is not a TCP port: use 1-65535, or 0 for a free one")


def _int_in(text: str, low: int, high: int, what: str, out_of_range: str) -> int:
    """``text`` as an int from ``low`` to ``high``, else an ArgumentTypeError saying which it is not."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(out_of_range.format(value))
    return value


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
}


def byte_size(text: str) -> int:
    """Argparse type: a size in bytes, with an optional KiB / MiB / GiB suffix.

    Example:
        >>> byte_size("1MiB"), byte_size("512k"), byte_size("4096")
        (1048576, 524288, 4096)
        >>> byte_size("lots")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: 'lots' is not a size: use bytes, or a number with KiB, MiB or GiB
    """
    number = text.strip().rstrip(string.ascii_letters)
    unit = text.strip()[len(number) :].lower()
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: use bytes, or a number with KiB, MiB or GiB"
        ) from None
    if not 1 <= value < 1 << 40:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: use at least 1 byte")
    return int(value)


def seconds(text: str) -> float:
    """Argparse type: a positive number of seconds.

    Example:
        >>> seconds("2.5")
        2.5
        >>> seconds("0")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: '0' is not a positive number of seconds
    """
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def count(text: str) -> int:
    """Argparse type: a positive integer.

    Example:
        >>> count("4")
        4
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def ttl(text: str) -> float:
    """Argparse type: seconds a token is valid, 0 for never expiring.

    Example:
        >>> ttl("0"), ttl("90.5")
        (0.0, 90.5)
        >>> ttl("-5")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: --ttl -5 is negative: give the seconds the token is valid, or 0 for never
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--ttl {text} is not finite: use 0 for a token that never expires")
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"--ttl {text} is negative: give the seconds the token is valid, or 0 for never"
        )
    return value


def user(text: str) -> str:
    """Argparse type: a user id, not empty nor only spaces (it becomes the token's ``sub``).

    Example:
        >>> user("alice")
        'alice'
        >>> user(" ")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: the user is empty: name one, e.g. --sub alice
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("the user is empty: name one, e.g. --sub alice")
    return text


def table_key(text: str) -> tuple[str, str]:
    """Argparse type: ``TABLE=COLUMN``, the column that identifies a table's rows.

    Example:
        >>> table_key("posts=slug")
        ('posts', 'slug')
        >>> table_key("slug")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: 'slug' is not TABLE=COLUMN, e.g. --key posts=slug
    """
    table, equals, column = text.partition("=")
    if not (equals and table.strip() and column.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not TABLE=COLUMN, e.g. --key posts=slug")
    return table.strip(), column.strip()


def check_secret(secret: str, algorithm: str) -> None:
    """Refuse an HMAC secret shorter than its algorithm's hash (RFC 7518 3.2).

    Raises:
        CommandError: The secret is too short.

    Example:
        >>> check_secret("x" * 32, "HS256")
        >>> check_secret("short", "HS256")
        Traceback (most recent call last):
        rxstore.cli._checks.CommandError: the secret is 5 bytes long; HS256 needs at least 32 ...
    """
    need = _HMAC_MIN_BYTES.get(algorithm.upper())
    size = len(secret.encode())
    if need is not None and size < need:
        raise CommandError(
            f"the secret is {size} bytes long; {algorithm} needs at least {need} (anyone could guess "
            f"a shorter one): make one with python -c 'import secrets; print(secrets.token_urlsafe({need}))'"
        )


def explain_watch_error(table: str, message: str, *, demo_schema: bool) -> str:
    """Say how to serve a table that ``ChangeLog.watch`` refused (no such table, no such key column)."""
    if "no such table" in message:
        demo = (
            ""
            if demo_schema or table != "posts"
            else ", or pass --demo-schema to create the demo posts table"
        )
        return f"{message}: create it, or name your tables with --tables TABLE ...{demo}"
    if "has no column" in message:
        return (
            f"{message}: name the column that identifies its rows with --key {table}=COLUMN "
            f"(Python: Topic({table!r}, primary_key='COLUMN'))"
        )
    return message


def redact(url: str) -> str:
    """The database URL without its password, to print.

    Example:
        >>> redact("postgresql://app:s3cret@db:5432/app")
        'postgresql://app:***@db:5432/app'
        >>> redact("sqlite:///app.db")
        'sqlite:///app.db'
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return urllib.parse.urlunsplit(
        parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    )


def served_tables(tables: Sequence[str], *, demo_schema: bool) -> list[str]:
    """The tables to serve: ``tables`` once each, plus ``posts`` with ``--demo-schema``.

    Example:
        >>> served_tables(["notes"], demo_schema=True)
        ['notes', 'posts']
        >>> served_tables(["posts", "posts"], demo_schema=False)
        ['posts']
    """
    return list(dict.fromkeys([*tables, *(["posts"] if demo_schema else [])]))
