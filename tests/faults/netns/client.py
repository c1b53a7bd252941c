"""A client host's process: ``python -m tests.faults.netns.client NAME COUNT URL [URL ...]``.

It runs ``COUNT`` tracked clients (:class:`~tests.faults.harness.FaultClient`,
user ``ann``, gateways tried in the order given, the list rotated by one per
client so that they spread over the nodes); each one calls
``root.mutate("save_post", ...)`` one after another, titles
``<client>-m<i>``, and records which mutations were acknowledged. Speaks JSON
lines like ``client_proc.py``: on stdout ``{"ready": ...}`` once every client
is live, ``{"marker": title, "client": name, "t": unix_time}`` the first time
a client shows a marker title; on stdin ``quiet`` stops the mutations (the
answer, once none is pending: ``{"mutations": {client: {"acked": [...],
"failed": [[title, error], ...]}}}``) and ``finish <head-seq>`` waits until
every client is at that seq, answers ``{"reports": [...]}`` and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from tests.faults.harness import FaultClient
from tests.waiting import wait_for

MUTATION_TIMEOUT = 30.0
"""Seconds one mutation may take, retries after reconnects included (then it counts as failed)."""

MUTATION_PAUSE = 0.3
"""Seconds between one client's mutations (it paces them; each waits for the previous one)."""


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Mutator:
    """One client's sequence of mutations and what became of each."""

    def __init__(self, client: FaultClient) -> None:
        self.client = client
        self.acked: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        name = self.client.name
        i = 0
        while not self.stop.is_set():
            i += 1
            title = f"{name}-m{i}"
            args = {"id": f"{name}-q{i % 3}", "title": title, "likes": i}
            try:
                await self.client.root.mutate("save_post", args, timeout=MUTATION_TIMEOUT)
                self.acked.append(title)
            except Exception as error:  # a timeout or a refusal: recorded, the checker judges it
                self.failed.append((title, f"{type(error).__name__}: {error}"))
            await asyncio.sleep(MUTATION_PAUSE)  # paces the mutations


async def main(host: str, count: int, urls: list[str]) -> int:
    clients = [
        FaultClient(f"{host}c{i}", urls[i % len(urls) :] + urls[: i % len(urls)], user="ann")
        for i in range(count)
    ]
    await asyncio.gather(*(c.start() for c in clients))
    await wait_for(lambda: all(c.live for c in clients), 30, "clients live")
    emit({"ready": [c.name for c in clients]})
    mutators = [Mutator(c) for c in clients]
    running: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sent: set[tuple[str, str]] = set()
    while True:
        command = asyncio.ensure_future(reader.readline())
        while not command.done():
            for client in clients:
                for title, at in list(client.markers_wall.items()):
                    if (client.name, title) not in sent:
                        sent.add((client.name, title))
                        emit({"marker": title, "client": client.name, "t": at})
            await asyncio.wait([command], timeout=0.02)
        line = command.result().decode().split()
        if line[:1] == ["go"]:
            running = [asyncio.ensure_future(m.run()) for m in mutators]
        elif line[:1] == ["quiet"]:
            for mutator in mutators:
                mutator.stop.set()
            await asyncio.gather(*running)
            emit({"mutations": {m.client.name: {"acked": m.acked, "failed": m.failed} for m in mutators}})
        elif line[:1] == ["finish"]:
            head = int(line[1])
            with contextlib.suppress(AssertionError):  # one not caught up is reported as such
                await wait_for(
                    lambda at=head: all(c.seq >= at for c in clients), 60, f"clients at seq {head}"
                )
            emit({"reports": [c.report() for c in clients]})
            for client in clients:
                await client.stop()
            return 0
        else:
            return 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])))
