"""A gateway written in Python: private rows, a mutation, retention.

``rxstore serve`` covers the common cases from the command line; this is the
same server with your own rules. Run it, then point any client at it::

    export RXSTORE_SECRET=change-me-to-a-long-random-secret
    python docs/examples/gateway_app.py --db sqlite:///app.db --port 8080
"""

# --8<-- [start:gateway]
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Any

from rxstore.gateway import (
    RealtimeGateway,
    Retention,
    TokenAuth,
    Topic,
    User,
    Writes,
    create_demo_schema,
    dialect_of,
    open_change_log,
)


def authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """Private posts are seen by their author and by admins only."""
    if not row.get("private"):
        return True
    return row.get("author") == user.id or user.claims.get("role") == "admin"


def build_gateway(db: str, secret: str) -> RealtimeGateway:
    """The posts table, served with `authorize` and a `like_post` mutation."""
    log = open_change_log(db)
    gateway = RealtimeGateway(
        log,
        topics=[Topic(name="posts")],  # event "post_update", primary key "id"
        auth=TokenAuth(secret=secret),
        authorize=authorize,
        retention=Retention(max_age=3 * 24 * 3600.0, max_rows=500_000),
    )
    p1, p2 = ("?", "?") if dialect_of(log) == "sqlite" else ("$1", "$2")
    like = f"UPDATE posts SET likes = likes + 1 WHERE id = {p1} AND (NOT private OR author = {p2})"

    @gateway.mutation("like_post")
    async def like_post(user: User, args: Any) -> Writes:
        if not isinstance(args, dict) or not isinstance(args.get("id"), str):
            raise ValueError(
                "like_post takes {'id': str}"
            )  # -> error "invalid_payload"
        return Writes([(like, (args["id"], user.id))], result={"liked": args["id"]})

    return gateway


# --8<-- [end:gateway]


async def serve(db: str, secret: str, host: str, port: int) -> None:
    """Create the demo table if missing, serve until Ctrl-C or SIGTERM."""
    gateway = build_gateway(db, secret)
    await gateway.log.open()
    await create_demo_schema(gateway.log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await gateway.start(host, port)
    print(f"serving posts on {gateway.url} (Ctrl-C to stop)", flush=True)
    try:
        await stop.wait()
    finally:
        await gateway.stop()


def main() -> None:
    """Parse ``--db``, ``--host``, ``--port``; the secret comes from ``RXSTORE_SECRET``."""
    parser = argparse.ArgumentParser(
        description="Serve the posts table with private rows."
    )
    parser.add_argument("--db", default="sqlite:///app.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    secret = os.environ.get("RXSTORE_SECRET")
    if not secret:
        parser.error("set RXSTORE_SECRET")
    asyncio.run(serve(args.db, secret, args.host, args.port))


if __name__ == "__main__":
    main()
