"""``rxstore log show | mark-restore``: the change log's identity (its epoch)."""

from __future__ import annotations

import argparse

__all__ = ["log_command"]


async def log_command(args: argparse.Namespace) -> int:
    """Print the log's epoch, head and horizon, or give it a new epoch."""
    from rxstore.gateway.log.open_log import open_change_log
    from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
    from rxstore.protocol.errors import RxStoreError

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
