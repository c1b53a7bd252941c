"""The ``rxstore`` command: ``serve``, ``token``, ``demo`` and ``log``.

``rxstore demo`` is the zero-set-up tour: a gateway on an embedded SQLite
file, a writer changing posts, and a RootStore + PostStore client rendering
the live table in the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rxstore import __version__
from rxstore._cli_checks import (
    CommandError,
    Parser,
    byte_size,
    check_secret,
    count,
    explain_watch_error,
    port,
    redact,
    run_command,
    seconds,
    served_tables,
    table_key,
    ttl,
    user,
)

__all__ = ["main"]

_SECRET_ENV = "RXSTORE_SECRET"


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rxstore",
        description="Reactive stores kept live over Socket.IO: serve a database, issue tokens, run the demo. "
        "A mistake is one line on stderr and exit status 2 (--debug adds the traceback).",
    )
    parser.add_argument("--version", action="version", version=f"rxstore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve database changes to Socket.IO clients",
        description="Serve the changes of TABLES in a SQLite or PostgreSQL database as Socket.IO events.",
    )
    serve.add_argument(
        "--db",
        default="sqlite:///rxstore.db",
        help="sqlite:///FILE or postgresql://... (default: %(default)s)",
    )
    serve.add_argument(
        "--tables",
        nargs="+",
        default=["posts"],
        metavar="TABLE",
        help="tables to watch and serve, each keyed on its 'id' column unless --key says otherwise "
        "(default: posts)",
    )
    serve.add_argument(
        "--key",
        type=table_key,
        action="append",
        default=[],
        metavar="TABLE=COLUMN",
        help="the column that identifies TABLE's rows, when it is not 'id' (repeat for several tables)",
    )
    serve.add_argument(
        "--old",
        choices=["full", "key"],
        default="full",
        help="what UPDATE/DELETE changes carry of the row before: the whole row, or only its "
        "primary key (smaller frames; enough for TableStore) (default: %(default)s)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=port, default=8080, help="port to listen on; 0: a free one (default: %(default)s)"
    )
    serve.add_argument("--secret", help=f"HMAC secret of HS256/384/512 tokens (default: ${_SECRET_ENV})")
    serve.add_argument(
        "--algorithm",
        help="JWT algorithm accepted (default: HS256 with --secret, the key's own with --public-key: "
        "RS256 for RSA, ES256 for P-256)",
    )
    serve.add_argument(
        "--public-key",
        metavar="FILE",
        help="verify RS256/ES256/... tokens with this public key (PEM, or an X.509 certificate)",
    )
    serve.add_argument(
        "--jwks",
        metavar="FILE",
        help="verify tokens with the keys of this local JWKS file, picked by the token's 'kid'",
    )
    serve.add_argument(
        "--demo-schema",
        action="store_true",
        help="create the demo 'posts' table if missing, serve it (besides --tables) and its "
        "save_post/delete_post mutations",
    )
    serve.add_argument(
        "--serializer",
        choices=["json", "msgpack"],
        default="json",
        help="Socket.IO packet serializer; clients must match (default: %(default)s)",
    )
    serve.add_argument(
        "--owner-column",
        metavar="COLUMN",
        help="with --private-column: private rows go only to the user named in COLUMN",
    )
    serve.add_argument("--private-column", metavar="COLUMN", help="a truthy COLUMN makes a row private")
    serve.add_argument(
        "--retention-age",
        type=float,
        default=7 * 24 * 3600.0,
        metavar="SECONDS",
        help="keep changes this long (default: one week)",
    )
    serve.add_argument(
        "--retention-rows",
        type=int,
        default=1_000_000,
        metavar="N",
        help="keep at most N changes (default: %(default)s)",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="Redis shared by several gateway nodes, for client broadcasts (redis://host:port)",
    )
    serve.add_argument(
        "--retention-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between trims of the change log (default: %(default)s)",
    )
    serve.add_argument(
        "--coalesce",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="shortest time between two live broadcasts; changes committed meanwhile reach each "
        "client in one frame (e.g. 0.05 for hundreds of clients of a busy log; default: %(default)s)",
    )
    limits = serve.add_argument_group(
        "limits",
        "bounds on what one client can cost the gateway (docs/reliability.md, Limits and hostile clients)",
    )
    limits.add_argument(
        "--max-frame-bytes",
        type=byte_size,
        default=1 << 20,
        metavar="SIZE",
        help="largest frame a client may send; a bigger event is refused (default: 1MiB)",
    )
    limits.add_argument(
        "--frame-bytes",
        type=byte_size,
        default=1 << 20,
        metavar="SIZE",
        help="size of the frames sent: snapshots go in chunks of it, batches are cut at it (default: 1MiB)",
    )
    limits.add_argument(
        "--client-queue-bytes",
        type=byte_size,
        default=16 << 20,
        metavar="SIZE",
        help="most bytes waiting for one client; a client further behind is dropped (default: 16MiB)",
    )
    limits.add_argument(
        "--send-timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="a client that takes no frame for this long is dropped (default: %(default)s)",
    )
    limits.add_argument(
        "--handshake-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="a connection that does not join within this long is closed (default: %(default)s)",
    )
    limits.add_argument(
        "--snapshot-concurrency",
        type=count,
        default=4,
        metavar="N",
        help="most snapshots read and sent at once; more wait their turn (default: %(default)s)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every connection")

    token = commands.add_parser("token", help="print a token for a user", description="Print a JWT for USER.")
    token.add_argument("--sub", required=True, type=user, metavar="USER", help="the user the token names")
    token.add_argument(
        "--ttl",
        type=ttl,
        default=3600.0,
        metavar="SECONDS",
        help="seconds the token is valid; 0: it never expires (default: %(default)s)",
    )
    token.add_argument("--secret", help=f"HMAC secret of HS256/384/512 tokens (default: ${_SECRET_ENV})")
    token.add_argument(
        "--algorithm",
        help="JWT algorithm (default: HS256 with --secret, the key's own with --private-key)",
    )
    token.add_argument(
        "--private-key", metavar="FILE", help="sign with this private key (PEM) instead of a secret"
    )
    token.add_argument(
        "--kid", metavar="KID", help="key id to write in the token's header (see serve --jwks)"
    )

    demo = commands.add_parser(
        "demo",
        help="run gateway, writer and a live client in one terminal",
        description="Zero set-up tour: a gateway on an embedded SQLite file, a writer changing posts, "
        "and a RootStore + PostStore client rendering the live table. Ctrl-C to stop.",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--rate", type=float, default=20.0, metavar="N", help="changes per second (default: 20)"
    )
    demo.add_argument("--db", help="SQLite file to use (default: a temporary file)")
    demo.add_argument("--port", type=port, default=0, help="gateway port (default: a free one)")
    _add_log_commands(commands)
    return parser


def _add_log_commands(commands: Any) -> None:
    """``rxstore log show | mark-restore``: the change log's identity (its epoch)."""
    log = commands.add_parser(
        "log",
        help="inspect the change log, or mark a restored database",
        description="The change log's identity: every cursor a client holds belongs to one log epoch.",
    )
    actions = log.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print the log's epoch, head seq and horizon",
        description="Print the change log's epoch, head seq and horizon on one line.",
    )
    mark = actions.add_parser(
        "mark-restore",
        help="give the log a new epoch: run after restoring a backup or copying a database",
        description="Give the change log a new epoch. Run it after restoring a backup of the database "
        "(a copied SQLite file, pg_restore or psql into the same database, a point-in-time "
        "recovery), after copying a database file to serve the copy on its own, or after failing "
        "over to a standby that may have lost recent writes; best with the gateways stopped, "
        "before they serve it. Clients that come back with a cursor from before then get "
        "rxstore:reset (epoch_changed) and a fresh snapshot, instead of a replay of changes that "
        "are not the ones they missed. A database that is restored or copied into another "
        "PostgreSQL database or cluster gets a new epoch by itself.",
    )
    for parser in (show, mark):
        parser.add_argument(
            "--db",
            required=True,
            metavar="URL",
            help="sqlite:///FILE (must exist) or postgresql://...",
        )


async def _log_command(args: argparse.Namespace) -> int:
    from rxstore.errors import RxStoreError
    from rxstore.gateway.changelog import open_change_log
    from rxstore.gateway.sqlite import SQLiteChangeLog

    try:
        log = open_change_log(args.db)
    except ValueError as exc:
        raise SystemExit(f"rxstore: {exc}") from None
    if isinstance(log, SQLiteChangeLog) and not log.path.is_file():
        raise SystemExit(f"rxstore: no database file {log.path}: nothing to mark")
    try:
        await log.open()
    except (RxStoreError, OSError, ValueError, RuntimeError) as exc:
        raise SystemExit(f"rxstore: cannot open the change log: {exc}") from None
    try:
        before = await log.epoch()
        head, horizon = await log.head(), await log.horizon()
        if args.log_command == "show":
            print(f"rxstore: log epoch {before}, head seq {head}, horizon {horizon}")
            return 0
        after = await log.mark_restore()
    finally:
        await log.close()
    print(
        f"rxstore: log epoch {before} -> {after} (head seq {head}): clients with a cursor from "
        "before get a reset and a snapshot",
        flush=True,
    )
    return 0


def _secret(args: argparse.Namespace, algorithm: str) -> str:
    secret = args.secret or os.environ.get(_SECRET_ENV)
    if not secret:
        raise CommandError(f"no JWT secret: pass --secret or set {_SECRET_ENV}")
    check_secret(secret, algorithm)
    return str(secret)


def _token_auth(args: argparse.Namespace) -> Any:
    """The ``TokenAuth`` that ``serve`` verifies with, or ``token`` issues with.

    Raises:
        CommandError: The options or the key cannot work.
    """
    from rxstore.gateway.auth import KeyConfigError, TokenAuth

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rxstore`` command line; returns the exit status (2 for a mistake, said in one line)."""
    args = _parser().parse_args(argv)
    return run_command(lambda: _command(args), debug=getattr(args, "debug", False))


def _command(args: argparse.Namespace) -> int:
    if args.command == "token":
        auth = _token_auth(args)
        print(auth.issue(args.sub, ttl=args.ttl if args.ttl > 0 else None))
        return 0
    if args.command == "serve":
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
        )
        return _run(_serve(args))
    if args.command == "log":
        return _run(_log_command(args))
    return _run(_demo(args))


def _run(coroutine: Any) -> int:
    try:
        return int(asyncio.run(coroutine))
    except KeyboardInterrupt:
        return 130


async def _wait_for_stop(duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)


async def _serve(args: argparse.Namespace) -> int:
    from rxstore.gateway.demo import create_demo_schema, register_demo_mutations
    from rxstore.gateway.server import RealtimeGateway, Retention, Topic

    auth = _token_auth(args)
    tables = served_tables(args.tables, demo_schema=args.demo_schema)
    keys = _table_keys(args.key, tables)
    topics = [Topic(name=table, primary_key=keys.get(table, "id"), old=args.old) for table in tables]
    log = await _open_log(args.db)
    try:
        if args.demo_schema:
            await create_demo_schema(log)
        for topic in topics:
            await _watch(log, topic.name, topic.primary_key, demo_schema=args.demo_schema)
    except BaseException:
        await log.close()
        raise
    gateway = RealtimeGateway(
        log,
        topics=topics,
        auth=auth,
        authorize=_row_filter(args),
        serializer=args.serializer,
        coalesce=args.coalesce,
        max_frame_bytes=args.max_frame_bytes,
        frame_bytes=args.frame_bytes,
        client_queue_bytes=args.client_queue_bytes,
        client_send_timeout=args.send_timeout,
        handshake_timeout=args.handshake_timeout,
        snapshot_concurrency=args.snapshot_concurrency,
        retention=Retention(
            max_age=args.retention_age, max_rows=args.retention_rows, interval=args.retention_interval
        ),
        redis_url=args.redis,
    )
    if args.demo_schema:
        register_demo_mutations(gateway)
    try:
        await gateway.start(args.host, args.port)
    except OSError as exc:
        await gateway.stop()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {_listen_problem(exc)}") from exc
    print(
        f"rxstore: serving {', '.join(tables)} from {redact(args.db)} on {gateway.url} (Ctrl-C to stop)",
        flush=True,
    )
    try:
        await _wait_for_stop(None)
    finally:
        await gateway.stop()
    return 0


def _listen_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is in use (another server listens there): pick another --port, or 0 (free)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges): pick another --port"
    return " ".join(str(exc.strerror or exc).split())


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


async def _open_log(url: str, *, option: str | None = None) -> Any:
    """The change log of ``url``, opened (the database file or server checked first).

    Args:
        url: The database URL.
        option: How the command line named the database, for messages (default ``--db URL``).
    """
    from rxstore.gateway.changelog import open_change_log
    from rxstore.gateway.sqlite import SQLiteChangeLog

    try:
        log = open_change_log(url)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    option = option or f"--db {url}"
    if isinstance(log, SQLiteChangeLog):
        if log.path.is_dir():
            raise CommandError(f"{option}: {log.path} is a directory: name a database file in it")
        if not log.path.parent.is_dir():
            raise CommandError(f"{option}: no directory {log.path.parent} for the database file")
    try:
        await log.open()
    except Exception as exc:
        detail = " ".join(str(exc).split())  # the log's own message names the URL (redacted)
        where = "" if redact(url) in detail else f"cannot open the database {redact(url)}: "
        raise CommandError(where + detail) from exc
    return log


async def _watch(log: Any, table: str, key: str, *, demo_schema: bool) -> None:
    """Install the capture of ``table``, saying how to fix a missing table or key column."""
    try:
        await log.watch(table, primary_key=key)
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


async def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from rxstore import RootStore, TableStore
    from rxstore.gateway.auth import TokenAuth
    from rxstore.gateway.demo import Post, all_posts, create_demo_schema
    from rxstore.gateway.server import RealtimeGateway

    class PostStore(TableStore[Post]):
        table = "posts"
        record_type = Post

    with tempfile.TemporaryDirectory(prefix="rxstore-demo-") as tmp:
        db_path = Path(args.db) if args.db else Path(tmp) / "demo.db"
        log = await _open_log(f"sqlite:///{db_path}", option=f"--db {db_path}")
        await create_demo_schema(log)
        auth = TokenAuth(secret=os.urandom(24).hex())
        gateway = RealtimeGateway(log, topics=["posts"], auth=auth)
        try:
            await gateway.start("127.0.0.1", args.port)
        except OSError as exc:
            await gateway.stop()
            raise CommandError(f"cannot listen on 127.0.0.1:{args.port}: {_listen_problem(exc)}") from exc
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
                        await _wait_for_stop(args.duration)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
