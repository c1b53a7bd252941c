"""``rxstore log show | mark-restore``: the change log's identity (its epoch)."""

from __future__ import annotations

import argparse

from rxstore.cli._checks import CommandError
from rxstore.cli._database import sqlite_path
from rxstore.cli._serve import open_log

__all__ = ["log_command"]


async def log_command(args: argparse.Namespace) -> int:
    """Print the log's epoch, head and horizon, or give it a new epoch.

    Raises:
        CommandError: The database does not exist (a SQLite file is never created here) or cannot be opened.
    """
    path = sqlite_path(args.db)
    if path is not None and not path.is_file():
        raise CommandError(
            f"no database file {path}: name the database of your gateways with --db (e.g. --db app.db)"
        )
    log = await open_log(args.db)
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
