"""``rxstore serve`` and ``rxstore token``, and what ``demo`` shares with them."""

from __future__ import annotations

import argparse
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from rxstore.cli._checks import (
    SECRET_ENV,
    CommandError,
    check_secret,
    explain_watch_error,
    redact,
    served_tables,
)
from rxstore.cli._database import NewDatabaseFile, sqlite_path, sqlite_tables
from rxstore.cli._running import (
    capture_line,
    check_can_listen,
    listen_problem,
    serving_line,
    stop_signal,
    wait_for_stop,
)

__all__ = [
    "check_location",
    "check_tables",
    "make_gateway",
    "open_log",
    "prepare",
    "serve",
    "served_topics",
    "token_auth",
]


def _secret(args: argparse.Namespace, algorithm: str) -> str:
    secret = args.secret or os.environ.get(SECRET_ENV)
    if not secret:
        raise CommandError(f"no JWT secret: pass --secret or set {SECRET_ENV}")
    check_secret(secret, algorithm)
    return str(secret)


def token_auth(args: argparse.Namespace) -> Any:
    """The ``TokenAuth`` that ``serve`` verifies with, or ``token`` issues with.

    Raises:
        CommandError: The options or the key cannot work.
    """
    from rxstore.gateway.access.auth import KeyConfigError, TokenAuth

    issuing = args.command == "token"
    key_option = "--private-key" if issuing else "--public-key"
    key_file = args.private_key if issuing else args.public_key
    jwks = None if issuing else args.jwks
    if args.secret and (key_file or jwks):
        keys = key_option if issuing else f"{key_option}/--jwks"
        raise CommandError(f"pass --secret (HS256) or {keys}, not both")
    if jwks and (key_file or args.algorithm):
        raise CommandError("--jwks goes alone: its keys name their algorithms (their 'alg', or their type)")
    if args.algorithm and not args.algorithm.startswith("HS") and not (key_file or jwks):
        how = "signs with a private key" if issuing else "verifies with a public key"
        raise CommandError(
            f"{args.algorithm} {how}: pass {key_option} FILE{'' if issuing else ' or --jwks FILE'} "
            "(--secret is the HMAC secret of HS256/384/512)"
        )
    try:
        if jwks:
            return TokenAuth.from_jwks(jwks)
        if key_file and issuing:
            return TokenAuth.from_private_key(key_file, algorithm=args.algorithm, kid=args.kid)
        if key_file:
            return TokenAuth.from_public_key(key_file, algorithm=args.algorithm)
        kid = args.kid if issuing else None
        algorithm = args.algorithm or "HS256"
        return TokenAuth(secret=_secret(args, algorithm), algorithm=algorithm, kid=kid)
    except KeyConfigError as exc:
        raise CommandError(str(exc)) from exc


async def serve(args: argparse.Namespace) -> int:
    """Serve the tables until stopped (``--workers`` processes, see :mod:`._workers`); 0 when stopped.

    Everything that can be checked is checked before the database is opened for
    writing (the key, the options, the tables, the port); a database file that
    this start created is removed if the start fails.
    """
    from rxstore.cli._workers import supervise, worker_count

    auth = token_auth(args)  # a key that cannot work is said before anything starts
    workers = worker_count(args)
    topics = served_topics(args)
    check_location(args.db)
    check_tables(args.db, topics, demo_schema=args.demo_schema)
    check_can_listen(args.host, args.port)
    with NewDatabaseFile(args.db) as created:
        log = await prepare(args, topics)
        if workers > 1:
            capture = capture_line(log)
            await log.close()  # each worker opens its own
            return await supervise(args, workers, capture, serving=created.keep)
        gateway = make_gateway(args, log, topics, auth=auth)
        try:
            await gateway.start(args.host, args.port)
        except OSError as exc:
            await gateway.stop()
            raise CommandError(f"cannot listen on {args.host}:{args.port}: {listen_problem(exc)}") from exc
        created.keep()
    stop = stop_signal()  # before the lines that say it runs: a SIGTERM right after them stops it cleanly
    print(f"rxstore: {serving_line(args, gateway.url)}", flush=True)
    print(f"rxstore: {capture_line(log)}", flush=True)
    try:
        await wait_for_stop(None, stop)
    finally:
        await gateway.stop()
    return 0


async def prepare(args: argparse.Namespace, topics: list[Any]) -> Any:
    """Open the change log and watch ``topics`` (the demo schema made first); the log, open."""
    from rxstore.gateway.demo import create_demo_schema

    log = await open_log(args.db, capture=args.capture, slot_warning_bytes=args.slot_warning_bytes)
    try:
        if args.demo_schema:
            await create_demo_schema(log)
        for topic in topics:
            await _watch(log, topic.name, topic.primary_key, old=topic.old, demo_schema=args.demo_schema)
    except BaseException:
        await log.close()
        raise
    return log


def check_tables(url: str, topics: list[Any], *, demo_schema: bool) -> None:
    """Refuse, before a SQLite file is created or written, a served table it lacks (or its key column).

    PostgreSQL's tables are checked once the log is open (``ChangeLog.watch``).

    Raises:
        CommandError: A table is missing, or has no key column; the message says what to pass.
    """
    path = sqlite_path(url)
    if path is None:
        return
    try:
        tables = sqlite_tables(path)
    except sqlite3.Error:
        return  # not a database, or unreadable: opening it says why
    for topic in topics:
        if demo_schema and topic.name == "posts" and "posts" not in tables:
            continue  # --demo-schema creates it
        columns = tables.get(topic.name)
        if columns is None:
            where = "" if path.exists() else f" (there is no database file {path} yet: name yours with --db)"
            problem = f"cannot watch {topic.name!r}: no such table{where}"
        elif topic.primary_key not in columns:
            problem = (
                f"cannot watch {topic.name!r}: it has no column {topic.primary_key!r} "
                f"(columns: {', '.join(columns)})"
            )
        else:
            continue
        raise CommandError(explain_watch_error(topic.name, problem, demo_schema=demo_schema))


def served_topics(args: argparse.Namespace) -> list[Any]:
    """The ``Topic`` of each served table."""
    from rxstore.gateway.server import Topic

    tables = served_tables(args.tables, demo_schema=args.demo_schema)
    keys = _table_keys(args.key, tables)
    return [Topic(name=table, primary_key=keys.get(table, "id"), old=args.old) for table in tables]


def make_gateway(
    args: argparse.Namespace,
    log: Any,
    topics: list[Any],
    *,
    auth: Any = None,
    trims: bool = True,
    factory: Any = None,
) -> Any:
    """The gateway ``args`` describe, on ``log`` (``trims=False``: leave the log's retention to another).

    Args:
        args: The ``serve`` options.
        log: The change log, open.
        topics: The served topics.
        auth: The ``TokenAuth`` (default: made from ``args``).
        trims: Whether this gateway trims the log.
        factory: The gateway class (default ``RealtimeGateway``).
    """
    from rxstore.gateway.demo import register_demo_mutations
    from rxstore.gateway.presence.limits import PresenceLimits
    from rxstore.gateway.server import RealtimeGateway, Retention

    retention = (
        Retention(max_age=args.retention_age, max_rows=args.retention_rows, interval=args.retention_interval)
        if trims
        else Retention(max_age=None, max_rows=None)
    )
    gateway = (factory or RealtimeGateway)(
        log,
        topics=topics,
        auth=auth or token_auth(args),
        authorize=_row_filter(args),
        serializer=args.serializer,
        coalesce=args.coalesce,
        max_frame_bytes=args.max_frame_bytes,
        frame_bytes=args.frame_bytes,
        client_queue_bytes=args.client_queue_bytes,
        client_send_timeout=args.send_timeout,
        handshake_timeout=args.handshake_timeout,
        snapshot_concurrency=args.snapshot_concurrency,
        max_pending_syncs=args.max_pending_syncs,
        max_subscriptions=args.max_subscriptions,
        max_in_flight=args.max_in_flight,
        shed_retry_after=args.shed_retry_after,
        retention=retention,
        redis_url=args.redis,
        presence=PresenceLimits(
            max_members=args.presence_max_members,
            max_meta_bytes=args.presence_meta_bytes,
            updates_per_second=args.presence_rate,
            burst=max(1, round(args.presence_rate)),
            max_channels=args.presence_max_channels,
            heartbeat=args.presence_lease / 5,
            lease=args.presence_lease,
        ),
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
    )
    if args.demo_schema:
        register_demo_mutations(gateway)
    return gateway


def _table_keys(pairs: Sequence[tuple[str, str]], tables: Sequence[str]) -> dict[str, str]:
    """``--key TABLE=COLUMN`` options as table -> key column; each TABLE must be served."""
    keys: dict[str, str] = {}
    for table, column in pairs:
        if table not in tables:
            raise CommandError(
                f"--key {table}={column}: {table!r} is not served (--tables {' '.join(tables)})"
            )
        if keys.setdefault(table, column) != column:
            raise CommandError(f"--key names two key columns for {table!r}: {keys[table]} and {column}")
    return keys


async def open_log(
    url: str, *, option: str | None = None, capture: str = "auto", slot_warning_bytes: int | None = None
) -> Any:
    """The change log of ``url``, opened (the database file or server checked first).

    Args:
        url: The database URL.
        option: How the command line named the database, for messages (default ``--db URL``).
        capture: PostgreSQL's capture mode (``auto``, ``wal`` or ``trigger``).
        slot_warning_bytes: PostgreSQL WAL capture: the slot's retained WAL that warns (``None``: 1 GiB).
    """
    from rxstore.gateway.log.open_log import open_change_log

    try:
        log = open_change_log(url, capture=capture, slot_warning_bytes=slot_warning_bytes)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    check_location(url, option=option)
    try:
        await log.open()
    except Exception as exc:
        detail = " ".join(str(exc).split())  # the log's own message names the URL (redacted)
        where = "" if redact(url) in detail else f"cannot open the database {redact(url)}: "
        raise CommandError(where + detail) from exc
    return log


def check_location(url: str, *, option: str | None = None) -> None:
    """Refuse a SQLite file that cannot be one: a directory, or in a folder that does not exist.

    Args:
        url: The database URL (PostgreSQL: nothing to check here).
        option: How the command line named the database, for messages (default ``--db URL``).

    Raises:
        CommandError: The file cannot be made there; the message says what to name instead.
    """
    path = sqlite_path(url)
    if path is None:
        return
    option = option or f"--db {url}"
    if path.is_dir():
        raise CommandError(f"{option}: {path} is a directory: name a database file in it")
    if not path.parent.is_dir():
        raise CommandError(f"{option}: no directory {path.parent} for the database file")


async def _watch(log: Any, table: str, key: str, *, old: str, demo_schema: bool) -> None:
    """Install the capture of ``table``, saying how to fix a missing table or key column."""
    try:
        await log.watch(table, primary_key=key, old=old)
    except ValueError as exc:
        raise CommandError(explain_watch_error(table, str(exc), demo_schema=demo_schema)) from exc


def _row_filter(args: argparse.Namespace) -> Any:
    """The ``authorize`` hook of ``--private-column``/``--owner-column`` (``None`` without them)."""
    if not args.private_column:
        return None
    private, owner = args.private_column, args.owner_column

    def authorize(user: Any, topic: str, row: Any) -> bool:
        return not row.get(private) or (owner is not None and row.get(owner) == user.id)

    return authorize
