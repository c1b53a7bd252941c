"""The capture side of the ``pg_capture`` benchmark: a gateway-like process reading what users write.

``python -m benchmarks._capture '<json options>'`` sets the capture up on the database ``url``,
starts reading concurrently, prints ``{"ready": true}``, then answers one JSON line per command:
``{"cmd": "settle", "target": N, "wait": T}`` (waits until ``N`` changes of ``posts`` were
captured, or ``T`` seconds; replies with ``captured`` and the ``seconds`` it waited), ``{"cmd":
"quit"}``.

Options: ``mode`` is ``"trigger"`` or ``"wal"`` (rxstore's PostgreSQL change log, read as the
gateway's tailer reads it: ``log.read(cursor, limit=1000)`` in a loop, ``log.wait`` when idle) or
``"slot"`` (logical decoding by hand: ``REPLICA IDENTITY FULL`` and a ``wal2json`` slot named
``slot``, decoded by ``pg_logical_slot_get_changes`` in a loop, 10,000 changes at most per call)
or ``"slot-after"`` (the same, decoding only while a ``settle`` waits: after the users' writes).

It runs in its own process, as a gateway does, so its Python work does not share the writers'
event loop; the database server and both processes share the machine's cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sys
import time
from typing import Any

import asyncpg

from benchmarks._common import commands, reply

TOPIC = "posts"
DECODE = (
    "SELECT count(*) FROM pg_logical_slot_get_changes($1, NULL, 10000, "
    "'format-version', '2', 'include-transaction', 'false')"
)
"""One decoding call: the changes only (no begin/commit records), so the count is the rows captured."""


def capture_keyword() -> bool:
    """Whether rxstore's ``PostgresChangeLog`` takes ``capture=`` (``"trigger"``/``"wal"``/``"auto"``)."""
    from rxstore.gateway.log.postgres.changelog import PostgresChangeLog

    return "capture" in inspect.signature(PostgresChangeLog).parameters


class Capture:
    """Counts the changes of ``posts`` captured since :meth:`open`; subclasses read them."""

    def __init__(self, *, after: bool = False) -> None:
        self.captured = 0
        self.error = ""
        self.after = after
        """Read only while a :func:`settle` waits (so not while users write)."""
        self.reading = asyncio.Event()
        if not after:
            self.reading.set()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._setup()
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._teardown()

    async def _loop(self) -> None:
        while True:
            await self.reading.wait()
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reported, retried as the gateway's tailer does
                self.error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.5)

    async def _setup(self) -> None:
        raise NotImplementedError

    async def _step(self) -> None:
        raise NotImplementedError

    async def _teardown(self) -> None:
        raise NotImplementedError


class LogCapture(Capture):
    """rxstore's change log (trigger or WAL capture) read like the gateway's tailer."""

    def __init__(self, url: str, mode: str) -> None:
        super().__init__()
        from rxstore.gateway.log.postgres.changelog import PostgresChangeLog

        options: dict[str, Any] = {}
        if capture_keyword():
            options["capture"] = mode
        elif mode != "trigger":
            raise RuntimeError(f"PostgresChangeLog has no capture= keyword: cannot open it with {mode!r}")
        self.log = PostgresChangeLog(url, **options)
        self.cursor = 0

    async def _setup(self) -> None:
        await self.log.open()
        await self.log.watch(TOPIC)
        self.cursor = await self.log.head()

    async def _step(self) -> None:
        changes = await self.log.read(self.cursor, limit=1000)
        if not changes:
            await self.log.wait(1.0)
            return
        self.cursor = changes[-1].seq
        self.captured += sum(1 for change in changes if change.topic == TOPIC)

    async def _teardown(self) -> None:
        await self.log.close()


class SlotCapture(Capture):
    """Logical decoding by hand: a ``wal2json`` slot decoded by SQL calls in a loop."""

    def __init__(self, url: str, slot: str, *, after: bool = False) -> None:
        super().__init__(after=after)
        self.url = url
        self.slot = slot
        self.conn: asyncpg.Connection | None = None

    async def _setup(self) -> None:
        self.conn = conn = await asyncpg.connect(self.url)
        await conn.execute(f"ALTER TABLE {TOPIC} REPLICA IDENTITY FULL")
        await conn.execute("SELECT pg_create_logical_replication_slot($1, 'wal2json')", self.slot)

    async def _step(self) -> None:
        assert self.conn is not None
        count: int = await self.conn.fetchval(DECODE, self.slot)
        self.captured += count
        if not count:
            await asyncio.sleep(0.01)  # caught up: poll again soon

    async def _teardown(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.execute("SELECT pg_drop_replication_slot($1)", self.slot)
            await self.conn.close()


async def settle(capture: Capture, target: int, timeout: float) -> dict[str, Any]:
    """Wait until ``target`` changes were captured (or ``timeout`` s); how long it took."""
    start = time.perf_counter()
    deadline = start + timeout
    capture.reading.set()
    while capture.captured < target and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    if capture.after:
        capture.reading.clear()
    return {"captured": capture.captured, "seconds": time.perf_counter() - start, "error": capture.error}


async def main(options: dict[str, Any]) -> None:
    mode = options["mode"]
    capture: Capture = (
        SlotCapture(options["url"], options["slot"], after=mode == "slot-after")
        if mode.startswith("slot")
        else LogCapture(options["url"], mode)
    )
    await capture.open()
    try:
        reply({"ready": True})
        async for command in commands():
            if command["cmd"] == "settle":
                reply(await settle(capture, command["target"], command["wait"]))
            elif command["cmd"] == "quit":
                break
    finally:
        await capture.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
