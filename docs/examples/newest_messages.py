"""Live queries: the newest 50 messages of my channels, "load more", joins and leaves.

It starts a gateway on SQLite with ``messages`` and ``memberships`` tables, then
a client whose ``Feed`` follows a window over a relation: the newest 50
messages of the channels the user is a member of. It loads 50 more, sees a new
message arrive, joins a channel and leaves it. It needs nothing else running::

    python docs/examples/newest_messages.py                       # a throwaway database
    python docs/examples/newest_messages.py --db sqlite:///chat.db

Each line it prints is the feed after a step: how many messages it holds, the
ids of its newest and oldest, and its channels.
"""

# --8<-- [start:store]
import argparse
import asyncio
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from rxstore import RootStore, TableState, TableStore
from rxstore.gateway import RealtimeGateway, TokenAuth, User, open_change_log
from rxstore.protocol.subsets import Claim


@attrs.frozen
class Message:
    id: int
    channel_id: str
    body: str
    ts: float


MY_CHANNELS = {"select": "channel_id", "from": "memberships", "where": [("user_id", "=", Claim("sub"))]}
"""A relation: the channels of the memberships whose user_id is the token's ``sub``."""


class Feed(TableStore[Message]):
    table = "messages"
    record_type = Message


def newest_of_my_channels() -> Feed:
    """The newest 50 messages of my channels: a window (order_by + limit) over a relation."""
    return Feed(where=[("channel_id", "in", MY_CHANNELS)], order_by=[("ts", "desc")], limit=50, event="feed")


# --8<-- [end:store]

# --8<-- [start:gateway]
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        channel_id TEXT NOT NULL,
        body TEXT NOT NULL,
        ts REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS memberships (id INTEGER PRIMARY KEY, user_id TEXT, channel_id TEXT)",
    # The window's reads: a channel's messages by time; the subquery: a user's memberships.
    "CREATE INDEX IF NOT EXISTS messages_by_channel ON messages (channel_id, ts)",
    "CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships (user_id)",
)


def authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """A user sees their own memberships only (a subquery reads them all; it never sends them)."""
    return topic != "memberships" or row.get("user_id") == user.id


async def start_gateway(db: str, auth: TokenAuth) -> RealtimeGateway:
    """Create the tables if missing and serve them on a free port."""
    log = open_change_log(db)
    await log.open()
    for statement in SCHEMA:
        await log.execute(statement)
    gateway = RealtimeGateway(log, topics=["messages", "memberships"], auth=auth, authorize=authorize)
    await gateway.start(port=0)
    return gateway


# --8<-- [end:gateway]

# --8<-- [start:client]
Write = Callable[[str], Awaitable[int]]
"""Someone posts to a channel, or alice joins one (it returns the row's id)."""
Leave = Callable[[int], Awaitable[None]]
"""Alice's membership ``id`` is deleted."""


def show(step: str, feed: Feed) -> None:
    """Print the feed: how many messages, its newest and oldest ids, its channels."""
    rows = feed.value.ordered()  # the window's order: newest first, no sort on the client
    channels = ",".join(sorted({m.channel_id for m in rows}))
    print(f"{step:<8} {len(rows)} messages, {rows[0].id}..{rows[-1].id}, #{channels}", flush=True)


async def until(feed: Feed, done: Callable[[TableState[Message]], bool]) -> None:
    """Wait (10 s at most) until the feed's state satisfies ``done``."""
    reached = asyncio.get_running_loop().create_future()

    def check(state: TableState[Message]) -> None:
        if done(state) and not reached.done():
            reached.set_result(None)

    subscription = feed.state.subscribe(check)
    try:
        await asyncio.wait_for(reached, 10)
    finally:
        subscription.dispose()


async def read_feed(url: str, token: str, post: Write, join: Write, leave: Leave) -> Feed:
    """Follow the newest 50 of my channels, load more, see a post, a join and a leave move rows."""
    feed = newest_of_my_channels()
    async with RootStore(url, stores=[feed], token=token):
        await feed.live()  # the first 50 rows, read at one log position
        show("joined", feed)

        added = await feed.more(50)  # only the rows after the oldest one held travel
        show(f"more+{added}", feed)  # 30: the end of my channels; the window now keeps 100

        new = await post("general")  # a newer message enters the window
        await until(feed, lambda state: new in state)
        show("posted", feed)

        cats = await join("cats")  # a join: the window is read again, cats' messages move in
        await until(feed, lambda state: any(m.channel_id == "cats" for m in state.values()))
        show("join", feed)  # 100 rows: the oldest of #general and #random moved out

        await leave(cats)  # a leave: cats' messages move out, older ones come back
        await until(feed, lambda state: all(m.channel_id != "cats" for m in state.values()))
        show("leave", feed)
    return feed


# --8<-- [end:client]


async def main(db: str) -> Feed:
    """Serve ``db``'s tables, seed them (120 messages in 3 channels), and read the feed as ``alice``."""
    auth = TokenAuth(secret=secrets.token_hex(32))
    gateway = await start_gateway(db, auth)
    log = gateway.log
    ids = {"messages": 0, "memberships": 0}

    async def post(channel: str) -> int:
        ids["messages"] += 1
        key = ids["messages"]
        sql = "INSERT INTO messages (id, channel_id, body, ts) VALUES (?, ?, ?, ?)"
        await log.execute(sql, key, channel, f"message {key}", 1_795_660_000.0 + key)
        return key

    async def join(channel: str, user: str = "alice") -> int:
        ids["memberships"] += 1
        key = ids["memberships"]
        sql = "INSERT INTO memberships (id, user_id, channel_id) VALUES (?, ?, ?)"
        await log.execute(sql, key, user, channel)
        return key

    async def leave(membership: int) -> None:
        await log.execute("DELETE FROM memberships WHERE id = ?", membership)

    try:
        for key in range(120):
            await post(["general", "random", "cats"][key % 3])
        await join("general")
        await join("random")
        await join("cats", "bob")  # bob's: not alice's channel
        return await read_feed(gateway.url, auth.issue("alice"), post, join, leave)
    finally:
        await gateway.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Follow the newest 50 messages of my channels.")
    parser.add_argument("--db", help="a SQLite URL (default: a throwaway database)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(args.db or f"sqlite:///{Path(tmp) / 'chat.db'}"))
