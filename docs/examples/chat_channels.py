"""Live queries: a chat client that follows one channel and switches channels.

It starts a gateway on SQLite with a ``messages`` table, then a client whose
``MessageStore`` holds the messages of one channel only, while someone else
writes to every channel. It needs nothing else running::

    python docs/examples/chat_channels.py                       # a throwaway database
    python docs/examples/chat_channels.py --db sqlite:///chat.db

Each line it prints is the store after a step: the channel it follows, then
its messages (``id:body``) in time order.
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


@attrs.frozen
class Message:
    id: int
    channel_id: str
    body: str
    ts: float


class MessageStore(TableStore[Message]):
    table = "messages"  # its subscription id is "message_update", unless event= says otherwise
    record_type = Message


# --8<-- [end:store]


# --8<-- [start:gateway]
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        channel_id TEXT NOT NULL,
        body TEXT NOT NULL,
        ts REAL NOT NULL
    )""",
    # Snapshots of a channel are a query by channel_id: give the database an index for it.
    "CREATE INDEX IF NOT EXISTS messages_by_channel ON messages (channel_id, ts)",
)


def authorize(user: User, topic: str, row: Mapping[str, Any]) -> bool:
    """Channels named ``staff-*`` are for staff only (a ``"staff": true`` claim)."""
    return not str(row.get("channel_id", "")).startswith("staff-") or user.claims.get("staff") is True


async def start_gateway(db: str, auth: TokenAuth) -> RealtimeGateway:
    """Create the ``messages`` table if missing and serve it on a free port."""
    log = open_change_log(db)
    await log.open()
    for statement in SCHEMA:
        await log.execute(statement)
    gateway = RealtimeGateway(log, topics=["messages"], auth=auth, authorize=authorize)
    await gateway.start(port=0)
    return gateway


# --8<-- [end:gateway]


# --8<-- [start:client]
Post = Callable[[str, str], Awaitable[int]]
"""Someone writes a message to a channel (it returns the message's id)."""
Move = Callable[[int, str], Awaitable[None]]
"""Someone moves a message to another channel."""


def show(step: str, messages: MessageStore) -> None:
    """Print the store: the channel it follows and its messages, oldest first."""
    channel = messages.subset.where[0].value
    rows = " ".join(f"{m.id}:{m.body}" for m in messages.value.ordered(lambda m: m.ts)) or "(none)"
    print(f"{step:<8} #{channel}: {rows}", flush=True)


async def until(messages: MessageStore, done: Callable[[TableState[Message]], bool]) -> None:
    """Wait (10 s at most) until the store's state satisfies ``done``."""
    reached = asyncio.get_running_loop().create_future()

    def check(state: TableState[Message]) -> None:
        if done(state) and not reached.done():
            reached.set_result(None)

    subscription = messages.state.subscribe(check)
    try:
        await asyncio.wait_for(reached, 10)
    finally:
        subscription.dispose()


async def follow_channels(url: str, token: str, post: Post, move: Move) -> MessageStore:
    """Follow #general, see a message arrive, switch to #random, see messages move in and out."""
    messages = MessageStore(where={"channel_id": "general"})  # a subset: one channel's rows
    async with RootStore(url, stores=[messages], token=token) as root:
        await root.live(timeout=10)  # the snapshot of #general only
        show("joined", messages)

        new = await post("general", "anyone here?")  # written elsewhere, arrives live
        await until(messages, lambda state: new in state)
        show("live", messages)
        await post("random", "not for #general")  # another channel: never sent to this client

        await messages.where({"channel_id": "random"})  # the switch, on the same connection
        show("switch", messages)  # returns once #random's rows are in (and #general's are gone)

        await move(1, "random")  # a message moved into #random arrives as an INSERT ...
        await until(messages, lambda state: 1 in state)
        show("move-in", messages)
        await move(1, "general")  # ... and one moved out as a DELETE of its key
        await until(messages, lambda state: 1 not in state)
        show("move-out", messages)

        await messages.where({"channel_id": "staff-lounge"})  # authorize hides its rows: empty
        show("staff", messages)
        await messages.where({"channel_id": "random"})
        show("back", messages)

        # A second store of the same table on the same connection needs its own event name.
        public = await root.add(
            MessageStore(where=[("channel_id", "in", ["general", "random"])], event="public_messages")
        )  # returns with its snapshot applied
        print(f"added    {len(public.value)} public messages", flush=True)
        await root.remove(public)  # unsubscribed; its rows stay as they were
    return messages


# --8<-- [end:client]


async def main(db: str) -> MessageStore:
    """Serve ``db``'s messages, seed them, and follow them as user ``alice``."""
    auth = TokenAuth(secret=secrets.token_hex(32))
    gateway = await start_gateway(db, auth)
    log = gateway.log
    written = 0

    async def post(channel: str, body: str) -> int:
        nonlocal written
        written += 1
        await log.execute(
            "INSERT INTO messages (id, channel_id, body, ts) VALUES (?, ?, ?, ?)",
            written, channel, body, 1_795_660_000.0 + written,
        )  # fmt: skip
        return written

    async def move(message: int, channel: str) -> None:
        await log.execute("UPDATE messages SET channel_id = ? WHERE id = ?", channel, message)

    try:
        for channel, body in [
            ("general", "hello"),  # id 1
            ("random", "cats"),  # id 2
            ("general", "welcome"),  # id 3
            ("staff-lounge", "payroll"),  # id 4
        ]:
            await post(channel, body)
        return await follow_channels(gateway.url, auth.issue("alice"), post, move)
    finally:
        await gateway.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Follow one chat channel, then switch channels.")
    parser.add_argument("--db", help="a SQLite URL (default: a throwaway database)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(args.db or f"sqlite:///{Path(tmp) / 'chat.db'}"))
