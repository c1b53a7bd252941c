"""A benchmark client process: K rxstore, bare python-socketio or bare websocket clients, driven by stdin.

Started by the socket benchmarks as ``python -m benchmarks._client '<json options>'``;
it connects its clients, prints ``{"ready": ...}`` and then answers one JSON
line per command read from stdin:

* ``{"cmd": "wait", "seq": S}``: wait until every client holds seq ``S``; reply
  with the wall time the last one got there and this process's CPU seconds
  since the command arrived.
* ``{"cmd": "resume", "seq": S}``: reconnect every client (with its cursor)
  and wait as above; the reply also says when the reconnection started.
* ``{"cmd": "disconnect"}``: close every client's connection (state is kept).
* ``{"cmd": "lags"}``: commit -> client-state lags (seconds) recorded since
  the last ``lags`` command, then clear them.
* ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import resource
import sys
import time
from typing import Any

import socketio

from benchmarks._common import commands, reply, rss_bytes
from rxstore import RootStore, TableStore
from rxstore.client.transport import SocketIOTransport
from rxstore.gateway.demo import Post
from rxstore.protocol.events import BATCH, SNAPSHOT, EventKind
from rxstore.protocol.frames import ChangeFrame


class _Waiter:
    """Fires when ``seq`` reaches the target; remembers when (wall clock)."""

    def __init__(self) -> None:
        self.target: int | None = None
        self.event = asyncio.Event()
        self.reached_at = 0.0

    def arm(self, target: int, current: int | None) -> None:
        self.event.clear()
        self.target = target
        if current is not None and current >= target:
            self.reached_at = time.time()
            self.event.set()

    def check(self, seq: int | None) -> None:
        target = self.target
        if target is not None and seq is not None and seq >= target:
            self.reached_at = time.time()
            self.target = None
            self.event.set()


class RxClient:
    """A RootStore with one TableStore for ``posts`` (rows as dicts or attrs ``Post``)."""

    def __init__(self, url: str, token: str, serializer: str, records: str, lags: list[float] | None) -> None:
        waiter = self.waiter = _Waiter()

        class Posts(TableStore[Any]):
            table = "posts"
            record_type = Post if records == "attrs" else None

            def reduce_batch(self, state: Any, events: Any) -> Any:
                # every frame a root routes here comes through this (apply() is for feeding by hand)
                state = super().reduce_batch(state, events)
                if lags is not None:  # the envelopes' commit times, read as the bare client reads them
                    now = time.time()
                    if type(events) is ChangeFrame:
                        lags.extend([now - envelope.get("ts", 0.0) for envelope in events.envelopes])
                    else:
                        lags.extend(now - e.data.get("ts", 0.0) for e in events if e.kind is EventKind.CHANGE)
                return state

        self.posts = Posts()
        self.root = RootStore(
            url,
            stores=[self.posts],
            token=token,
            transport=SocketIOTransport(serializer=serializer),  # type: ignore[arg-type]
        )
        self.posts.state.subscribe(lambda state: waiter.check(state.seq))

    @property
    def seq(self) -> int | None:
        return self.posts.value.seq

    async def connect(self) -> None:
        await self.root.setup_realtime()

    async def disconnect(self) -> None:
        await self.root.teardown_realtime()


class BareClient:
    """A plain python-socketio AsyncClient putting the same frames into a dict."""

    def __init__(self, url: str, token: str, serializer: str, records: str, lags: list[float] | None) -> None:
        self.url = url
        self.token = token
        self.serializer = serializer
        self.table: dict[Any, Any] = {}
        self.cursor: int | None = None
        self.waiter = _Waiter()
        self.lags = lags
        self.sio: Any = None

    @property
    def seq(self) -> int | None:
        return self.cursor

    def _on_any(self, event: str, data: Any = None) -> None:
        table = self.table
        if event == BATCH:
            lags = self.lags
            now = time.time() if lags is not None else 0.0
            seq = self.cursor
            for _name, p in data["events"]:
                if p["op"] == "DELETE":
                    table.pop(p["old"]["id"], None)
                else:
                    record = p["record"]
                    table[record["id"]] = record
                seq = p["seq"]
                if lags is not None:
                    lags.append(now - p["ts"])
            self.cursor = seq
        elif event == SNAPSHOT:
            table.clear()
            for record in data["records"]:
                table[record["id"]] = record
            self.cursor = data["seq"]
        self.waiter.check(self.cursor)

    async def connect(self) -> None:
        self.sio = socketio.AsyncClient(
            reconnection=False,
            serializer="msgpack" if self.serializer == "msgpack" else "default",
            handle_sigint=False,
        )
        self.sio.on("*", self._on_any)
        await self.sio.connect(
            self.url,
            auth={"token": self.token, "topics": ["posts"], "cursor": self.cursor},
            transports=["websocket"],
            wait_timeout=30,
        )

    async def disconnect(self) -> None:
        if self.sio is not None:
            await self.sio.disconnect()
            await self.sio.shutdown()
            self.sio = None


class WsClient(BareClient):
    """The same dict fed by a bare websocket: engine.io/socket.io framing parsed by hand, no client library.

    The lightest load generator that still receives and decodes every frame (a python-socketio
    client costs several times the gateway's work per delivery), for benchmarks that put many
    clients on the gateway's machine. JSON serializer only.
    """

    session: Any = None
    """One ``aiohttp.ClientSession`` for all of a process's clients."""

    def __init__(self, url: str, token: str, serializer: str, records: str, lags: list[float] | None) -> None:
        super().__init__(url, token, serializer, records, lags)
        if serializer != "json":
            raise ValueError("the ws client speaks the json serializer only")
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        import aiohttp

        if WsClient.session is None:
            WsClient.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = self.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        ws = self.ws = await WsClient.session.ws_connect(url, max_msg_size=0)
        opened = await ws.receive_str(timeout=30)  # engine.io open: 0{"sid": ...}
        assert opened.startswith("0"), opened
        auth = {"token": self.token, "topics": ["posts"], "cursor": self.cursor}
        await ws.send_str("40" + json.dumps(auth))
        self.reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: Any) -> None:
        loads = json.loads
        on_any = self._on_any
        async for message in ws:
            data = message.data
            if not isinstance(data, str):
                continue
            if data.startswith("42"):  # a socket.io event: 42["name", payload]
                on_any(*loads(data[2:]))
            elif data == "2":  # engine.io ping
                await ws.send_str("3")
            elif data.startswith("44"):
                raise RuntimeError(f"connection refused: {data}")

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader
            self.reader = None


async def _wait_all(clients: list[Any], seq: int, timeout: float) -> tuple[float, bool]:
    for client in clients:
        client.waiter.arm(seq, client.seq)
    try:
        async with asyncio.timeout(timeout):
            for client in clients:
                await client.waiter.event.wait()
    except TimeoutError:
        return time.time(), False
    return max(client.waiter.reached_at for client in clients), True


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(options: dict[str, Any]) -> None:
    if options.get("gc_threshold"):
        gc.set_threshold(int(options["gc_threshold"]))
    lags: list[float] | None = [] if options.get("lags") else None
    kind = {"bare": BareClient, "ws": WsClient}.get(options["kind"], RxClient)
    clients = [
        kind(options["url"], options["token"], options["serializer"], options.get("records", "dict"), lags)
        for _ in range(options.get("clients", 1))
    ]
    # Connect a few at a time: hundreds of handshakes at once starve the gateway.
    for i in range(0, len(clients), 10):
        await asyncio.gather(*(c.connect() for c in clients[i : i + 10]))
    head = options.get("head")
    if head is not None:
        await _wait_all(clients, head, 120)
    if lags is not None:
        lags.clear()
    reply({"ready": True, "clients": len(clients), "rss": rss_bytes()})
    async for command in commands():
        cmd = command["cmd"]
        if cmd == "wait":
            cpu0 = _cpu()
            done_at, ok = await _wait_all(clients, command["seq"], command.get("timeout", 120))
            reply({"ok": ok, "t_done": done_at, "cpu": _cpu() - cpu0, "rss": rss_bytes()})
        elif cmd == "resume":
            cpu0 = _cpu()
            started = time.time()
            await asyncio.gather(*(c.connect() for c in clients))
            done_at, ok = await _wait_all(clients, command["seq"], command.get("timeout", 120))
            reply({"ok": ok, "t_start": started, "t_done": done_at, "cpu": _cpu() - cpu0})
        elif cmd == "disconnect":
            await asyncio.gather(*(c.disconnect() for c in clients))
            reply({"ok": True})
        elif cmd == "lags":
            values = list(lags or ())
            if lags is not None:
                lags.clear()
            reply({"lags": values})
        elif cmd == "quit":
            break
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
    if WsClient.session is not None:
        await WsClient.session.close()


if __name__ == "__main__":
    # A benchmark's clients are many: their retry warnings (a restart, shedding) would bury the tables.
    logging.getLogger("rxstore").setLevel(logging.ERROR)
    asyncio.run(main(json.loads(sys.argv[1])))
