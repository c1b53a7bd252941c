"""Members of a presence channel for ``benchmarks.presence``: raw Engine.IO websockets, driven over stdin.

``python -m benchmarks._presence_members '{"url", "members", "channel"}'`` opens ``members``
websockets (no Socket.IO client: each frame is counted, not decoded), joins each to the
channel as user ``m<i>``, prints ``{"joined": n, "seconds": s}``, then answers one JSON line
per command:

* ``{"cmd": "updates", "seconds": S, "updaters": U}``: members ``0..U-1`` each send
  ``rxstore:presence_update`` and wait for its acknowledgement, again and again, for ``S``
  seconds, then one last update ``{"done": i}``; then it waits until every member got each
  updater's last. Replies ``{"updates", "seconds", "frames", "drained"}`` (``frames``: diff
  frames received, several updates of one turn of the gateway's loop share one; ``drained``:
  seconds after the last acknowledgement until every member had every last update; ``null``
  if not within 60 s).
* ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

import aiohttp

from benchmarks._common import commands, reply
from benchmarks._gateway import AUTH


class Member:
    """One websocket in the channel: counts the channel's diff frames, answers pings, takes acks."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, prefix: str) -> None:
        self.ws = ws
        self.prefix = prefix
        self.diffs = 0
        self.dones = 0
        self.acks: dict[int, asyncio.Future[str]] = {}
        self.ids = itertools.count(1)
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for message in self.ws:
            text = message.data
            if not isinstance(text, str):
                continue
            if text.startswith(self.prefix):
                if '"type":"diff"' in text:
                    self.diffs += 1
                    self.dones += text.count('"done":')
            elif text == "2":
                await self.ws.send_str("3")
            elif text.startswith("43"):
                head = text[2:].split("[", 1)[0]
                future = self.acks.pop(int(head), None) if head.isdigit() else None
                if future is not None and not future.done():
                    future.set_result(text)

    async def call(self, event: str, data: Any) -> str:
        ack = next(self.ids)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.acks[ack] = future
        await self.ws.send_str(f"42{ack}" + json.dumps([event, data], separators=(",", ":")))
        return await asyncio.wait_for(future, 60)


async def connect(session: aiohttp.ClientSession, url: str, user: str, channel: str) -> Member:
    ws = await session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", max_msg_size=0)
    opened = await ws.receive_str()
    assert opened.startswith("0"), opened
    await ws.send_str("40" + json.dumps({"token": AUTH.issue(user, ttl=None), "topics": []}))
    accepted = await ws.receive_str()
    assert accepted.startswith("40"), accepted
    member = Member(ws, f'42["rxstore:presence:{channel}"')
    ack = await member.call("rxstore:presence_join", {"channel": channel, "meta": {"user": user}})
    assert '"ok":true' in ack, ack
    return member


async def updates(members: list[Member], channel: str, seconds: float, updaters: int) -> dict[str, Any]:
    before = sum(m.diffs for m in members)
    for member in members:
        member.dones = 0
    done = [0]
    stop = time.monotonic() + seconds

    async def update(member: Member, n: int) -> None:
        while time.monotonic() < stop:
            ack = await member.call("rxstore:presence_update", {"channel": channel, "meta": {"n": n}})
            assert '"ok":true' in ack, ack
            n += 1
            done[0] += 1
        ack = await member.call("rxstore:presence_update", {"channel": channel, "meta": {"done": n}})
        assert '"ok":true' in ack, ack
        done[0] += 1

    started = time.monotonic()
    await asyncio.gather(*(update(members[i], i * 10**9) for i in range(updaters)))
    elapsed = time.monotonic() - started
    acked = time.monotonic()
    drained: float | None = None
    while time.monotonic() - acked < 60:
        if all(m.dones >= updaters for m in members):
            drained = time.monotonic() - acked
            break
        await asyncio.sleep(0.05)
    frames = sum(m.diffs for m in members) - before
    return {"updates": done[0], "seconds": elapsed, "frames": frames, "drained": drained}


async def main(options: dict[str, Any]) -> None:
    url, channel = options["url"], options.get("channel", "posts")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        members: list[Member] = []
        for i in range(options["members"]):
            members.append(await connect(session, url, f"m{i}", channel))
        reply({"joined": len(members), "seconds": time.monotonic() - started})
        async for command in commands():
            if command["cmd"] == "updates":
                reply(await updates(members, channel, command["seconds"], command["updaters"]))
            elif command["cmd"] == "quit":
                break
        for member in members:
            member.reader.cancel()
            await member.ws.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
