"""The ``rxstore`` command: ``serve``, ``token``, ``demo``, ``log``, ``replay``, ``inspect`` and ``top``.

``rxstore demo`` is the zero-set-up tour: a gateway on an embedded SQLite
file, a writer changing posts, and a RootStore + PostStore client rendering
the live table in the terminal.

The command is a package of rooms: :mod:`._parser` (the options),
:mod:`._checks` (option checks, one-line errors), :mod:`._database` (what
``--db`` means, for every command, and no file left by a failed start),
:mod:`._serve` (``serve`` and ``token``), :mod:`._demo` (``demo``), :mod:`._log`
(``log``) and :mod:`._replay` (``replay``); ``inspect`` and ``top`` run the
apps of :mod:`rxstore.devtools.command`. ``python -m rxstore`` and
``python -m rxstore.cli`` run :func:`main`, as the ``rxstore`` script does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from rxstore.cli._checks import run_command
from rxstore.cli._demo import demo
from rxstore.cli._log import log_command
from rxstore.cli._parser import build_parser, log_level
from rxstore.cli._replay import replay_command
from rxstore.cli._serve import serve, token_auth
from rxstore.devtools.command import run_inspect, run_top

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rxstore`` command line; returns the exit status (2 for a mistake, said in one line)."""
    args = build_parser().parse_args(argv)
    return run_command(lambda: _command(args), debug=getattr(args, "debug", False))


def _command(args: argparse.Namespace) -> int:
    if args.command == "token":
        auth = token_auth(args)
        print(auth.issue(args.sub, ttl=args.ttl if args.ttl > 0 else None))
        return 0
    if args.command == "serve":
        logging.basicConfig(level=log_level(vars(args)), format="%(asctime)s %(name)s %(message)s")
        return _run(serve(args))
    if args.command == "log":
        return _run(log_command(args))
    if args.command == "replay":
        return replay_command(args)
    if args.command == "inspect":
        return run_inspect(
            args.url,
            token=args.token,
            tables=args.table,
            keys=dict(args.key),
            frames=args.frames,
            rows=args.rows,
            interval=args.interval,
        )
    if args.command == "top":
        return run_top(args.urls, interval=args.interval, timeout=args.timeout)
    return _run(demo(args))


def _run(coroutine: Any) -> int:
    try:
        return int(asyncio.run(coroutine))
    except KeyboardInterrupt:
        return 130
