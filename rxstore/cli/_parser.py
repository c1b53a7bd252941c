"""The options of every ``rxstore`` command, from ``serve`` to ``inspect`` and ``top``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from typing import Any

from rxstore import __version__
from rxstore.cli._checks import (
    SECRET_ENV,
    Parser,
    byte_size,
    count,
    port,
    seconds,
    table_key,
    ttl,
    user,
    workers,
)
from rxstore.cli._database import add_db_option
from rxstore.devtools.limits import FRAMES, INSPECT_INTERVAL, ROWS, TIMEOUT, TOP_INTERVAL
from rxstore.devtools.node_reader import node_url
from rxstore.devtools.table_spec import TableSpec
from rxstore.protocol.subsets import SubsetError

__all__ = ["LOG_LEVELS", "TOKEN_ENV", "build_parser", "http_url", "log_level", "table_spec"]

LOG_LEVELS = ("debug", "info", "warning")
"""The values of ``serve --log-level``."""
TOKEN_ENV = "RXSTORE_TOKEN"
"""The environment variable ``inspect`` reads the token from."""


def log_level(options: Mapping[str, Any]) -> int:
    """The level ``serve``'s options ask for: ``--log-level``, else INFO with ``-v``, else WARNING."""
    name = options.get("log_level") or ("info" if options.get("verbose") else "warning")
    level: int = logging.getLevelNamesMapping()[str(name).upper()]
    return level


def build_parser() -> argparse.ArgumentParser:
    """The ``rxstore`` command's argument parser."""
    parser = Parser(
        prog="rxstore",
        description="Reactive stores kept live over Socket.IO: serve a database, issue tokens, run the demo, "
        "watch a gateway (inspect, top). "
        "A mistake is one line on stderr and exit status 2 (--debug adds the traceback).",
    )
    parser.add_argument("--version", action="version", version=f"rxstore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve database changes to Socket.IO clients",
        description="Serve the changes of TABLES in a SQLite or PostgreSQL database as Socket.IO events.",
    )
    add_db_option(serve)
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
    serve.add_argument(
        "--capture",
        choices=["auto", "wal", "trigger"],
        default="auto",
        help="PostgreSQL: read changes from the WAL (logical decoding: no trigger in your writes; needs "
        "wal_level=logical), with triggers, or auto: the WAL when the server allows it for a new log, "
        "else triggers; a log keeps the mode it was made with (default: %(default)s)",
    )
    serve.add_argument(
        "--slot-warning-bytes",
        type=byte_size,
        default=None,
        metavar="SIZE",
        help="PostgreSQL WAL capture: WAL the replication slot may retain before /healthz warns and "
        "rxstore_capture_slot_warning is 1 (set max_slot_wal_keep_size too) (default: 1GiB)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=port, default=8080, help="port to listen on; 0: a free one (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=workers,
        metavar="N",
        help="gateway processes sharing the port (Linux: SO_REUSEPORT), each tailing the log; a worker "
        "that dies is started again. Client broadcasts (root.broadcast) cross workers only through "
        "--redis: without it, more than one worker means a broadcast reaches the sender's worker's "
        "clients only (said at start) (default: the machine's cores with --redis, else 1)",
    )
    serve.add_argument("--secret", help=f"HMAC secret of HS256/384/512 tokens (default: ${SECRET_ENV})")
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
    limits.add_argument(
        "--max-pending-syncs",
        type=count,
        default=1000,
        metavar="N",
        help="most clients being brought up to date (snapshot or replay) at once; a new connection "
        "beyond it is refused with unavailable and retry_after (default: %(default)s)",
    )
    limits.add_argument(
        "--max-subscriptions",
        type=count,
        default=64,
        metavar="N",
        help="most subscriptions (topics included) one connection may hold, those being subscribed "
        "included; one more is refused with too_many_subscriptions (default: %(default)s)",
    )
    limits.add_argument(
        "--max-in-flight",
        type=count,
        default=64,
        metavar="N",
        help="most events (calls, mutations, broadcasts, subscribes) of one connection handled at "
        "once; one more is refused with too_many_requests (default: %(default)s)",
    )
    limits.add_argument(
        "--shed-retry-after",
        type=seconds,
        default=1.0,
        metavar="SECONDS",
        help="how long a client refused for --max-pending-syncs is asked to wait (default: %(default)s)",
    )
    presence = serve.add_argument_group(
        "presence", "who is in which channel (docs/presence.md, Bounds and limits; each refusal is counted)"
    )
    presence.add_argument(
        "--presence-max-members",
        type=count,
        default=10_000,
        metavar="N",
        help="most members of one presence channel; one more join is refused (default: %(default)s)",
    )
    presence.add_argument(
        "--presence-meta-bytes",
        type=byte_size,
        default=2048,
        metavar="SIZE",
        help="largest metadata of one member, as JSON (default: %(default)s bytes)",
    )
    presence.add_argument(
        "--presence-rate",
        type=seconds,
        default=20.0,
        metavar="N",
        help="joins and updates one connection may send per second, on average (default: %(default)s)",
    )
    presence.add_argument(
        "--presence-max-channels",
        type=count,
        default=32,
        metavar="N",
        help="most presence channels one connection is in at once (default: %(default)s)",
    )
    presence.add_argument(
        "--presence-lease",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="with --redis: a node silent this long is taken for dead and its members leave the others; "
        "it heartbeats every fifth of it (default: %(default)s)",
    )
    presence.add_argument(
        "--ping-interval",
        type=seconds,
        default=25.0,
        metavar="SECONDS",
        help="seconds between two pings to each client (default: %(default)s)",
    )
    presence.add_argument(
        "--ping-timeout",
        type=seconds,
        default=20.0,
        metavar="SECONDS",
        help="a client that does not answer a ping within this long is dropped: one whose network went "
        "away leaves its presence channels within --ping-interval + --ping-timeout (default: %(default)s)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every connection (--log-level info)")
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="rxstore's log level on stderr, in every worker (default: warning, info with -v); "
        "debug: one [RealtimeGateway] line per change broadcast",
    )

    token = commands.add_parser("token", help="print a token for a user", description="Print a JWT for USER.")
    token.add_argument("--sub", required=True, type=user, metavar="USER", help="the user the token names")
    token.add_argument(
        "--ttl",
        type=ttl,
        default=3600.0,
        metavar="SECONDS",
        help="seconds the token is valid; 0: it never expires (default: %(default)s)",
    )
    token.add_argument("--secret", help=f"HMAC secret of HS256/384/512 tokens (default: ${SECRET_ENV})")
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
        description="Zero set-up tour: a gateway on a throwaway SQLite file, a writer changing posts, "
        "and a RootStore + PostStore client rendering the live table (where the output is not a "
        "terminal: one progress line a second). With --db, it creates the demo posts table there and "
        "writes random posts to it. Ctrl-C to stop.",
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
    add_db_option(demo, default=None, default_text="a throwaway SQLite file, deleted at the end")
    demo.add_argument("--port", type=port, default=0, help="gateway port (default: a free one)")
    _add_log_commands(commands)
    _add_replay_command(commands)
    _add_devtools_commands(commands)
    return parser


def table_spec(text: str) -> TableSpec:
    """Argparse type: ``NAME`` or ``NAME=WHERE``, a table to follow (WHERE as JSON).

    Example:
        >>> table_spec('posts={"author": "ann"}').where
        {'author': 'ann'}
    """
    try:
        return TableSpec.parse(text)
    except SubsetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def http_url(text: str) -> str:
    """Argparse type: a gateway's base URL, ``http(s)://host[:port]``.

    Example:
        >>> http_url("http://127.0.0.1:8080/")
        'http://127.0.0.1:8080'
    """
    try:
        return node_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_devtools_commands(commands: Any) -> None:
    """``rxstore inspect URL`` and ``rxstore top URL...``: Textual apps (docs/devtools.md)."""
    inspect = commands.add_parser(
        "inspect",
        help="follow a gateway as a client and show what it receives, live (needs rxstore[devtools])",
        description="Follow the gateway at URL as a RootStore client does and show it live: the "
        "connection (state, reconnects, failed attempts, last error), events/s, lag and cursor, the "
        "tables followed with their rows, and the last frames received. q quits (docs/devtools.md).",
    )
    inspect.add_argument("url", type=http_url, metavar="URL", help="the gateway, e.g. http://127.0.0.1:8080")
    inspect.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        required=TOKEN_ENV not in os.environ,
        help=f"a token for the gateway: rxstore token --sub USER (default: ${TOKEN_ENV})",
    )
    inspect.add_argument(
        "--table",
        type=table_spec,
        action="append",
        required=True,
        metavar="NAME[=WHERE]",
        help="a table to follow, whole, or the rows a where clause keeps, as JSON: "
        '--table \'posts={"author": "ann"}\' (docs/live_queries.md); repeat it for several',
    )
    inspect.add_argument(
        "--key",
        type=table_key,
        action="append",
        default=[],
        metavar="TABLE=COLUMN",
        help="the column that identifies TABLE's rows, when it is not 'id' (repeat for several tables)",
    )
    inspect.add_argument(
        "--frames",
        type=count,
        default=FRAMES,
        metavar="N",
        help="frames kept in the last-frames panel; older ones are dropped (default: %(default)s)",
    )
    inspect.add_argument(
        "--rows",
        type=count,
        default=ROWS,
        metavar="N",
        help="rows shown of the highlighted table, in key order; the rest are counted (default: %(default)s)",
    )
    inspect.add_argument(
        "--interval",
        type=seconds,
        default=INSPECT_INTERVAL,
        metavar="SECONDS",
        help="seconds between refreshes of the screen (default: %(default)s)",
    )

    top = commands.add_parser(
        "top",
        help="read /healthz and /metrics of gateway nodes and show them, live (needs rxstore[devtools])",
        description="Read the /healthz and /metrics of each node every interval and show one row per node: "
        "clients, subscriptions, queue depths, events and changes per second (counter deltas), head "
        "seq, broadcast lag and capture lag; and every metric of the highlighted node. A node that does "
        "not answer shows as down, with the reason. q quits (docs/devtools.md).",
    )
    top.add_argument(
        "urls", nargs="+", type=http_url, metavar="URL", help="a node's base URL, e.g. http://10.0.0.1:8080"
    )
    top.add_argument(
        "--interval",
        type=seconds,
        default=TOP_INTERVAL,
        metavar="SECONDS",
        help="seconds between two reads of every node (default: %(default)s)",
    )
    top.add_argument(
        "--timeout",
        type=seconds,
        default=TIMEOUT,
        metavar="SECONDS",
        help="a node that does not answer within this long shows as down (default: %(default)s)",
    )


def _add_replay_command(commands: Any) -> None:
    """``rxstore replay FILE``: a recording turned into a regression test."""
    replay = commands.add_parser(
        "replay",
        help="turn a recording (root.record()) into a pytest regression test",
        description="Write a pytest file that replays the frames of a recording (saved by "
        "root.record(): rec.save(FILE)) through new stores of the recorded classes, imported by "
        "module path, in virtual time, and checks every state they publish against the recorded "
        "one: the first that differs is named (docs/devtools.md).",
    )
    replay.add_argument("file", metavar="FILE", help="the recording (JSON lines)")
    replay.add_argument(
        "-o",
        "--output",
        metavar="TEST",
        help="the test file to write (default: test_replay_<FILE's name>.py in this folder)",
    )
    replay.add_argument("--force", action="store_true", help="overwrite the test file if it exists")


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
        add_db_option(parser)  # an existing database: a file that does not exist is refused, not made
