"""Tracked clients in a process of their own: ``python -m tests.faults.client_proc URL COUNT``.

So that what they measure does not depend on the test process's event loop.
Speaks JSON lines: on stdout ``{"ready": ...}`` once every client is live,
``{"marker": title, "client": name, "t": unix_time}`` each time a client first
shows a marker title, and ``{"reports": [...]}`` (see ``FaultClient.report``)
after ``finish <head-seq>`` arrives on stdin, once every client is at that seq.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from tests.faults.harness import FaultClient
from tests.waiting import wait_for


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main(url: str, count: int) -> int:
    clients = [FaultClient(f"proc{i}", url) for i in range(count)]
    await asyncio.gather(*(c.start() for c in clients))
    await wait_for(lambda: all(c.live for c in clients), 15, "clients live")
    emit({"ready": [c.name for c in clients]})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    command = asyncio.ensure_future(reader.readline())
    sent: set[tuple[str, str]] = set()
    while not command.done():
        for client in clients:
            for title, at in list(client.markers_wall.items()):
                if (client.name, title) not in sent:
                    sent.add((client.name, title))
                    emit({"marker": title, "client": client.name, "t": at})
        await asyncio.wait([command], timeout=0.01)
    line = command.result().decode().split()
    if line[:1] != ["finish"]:
        return 2
    head = int(line[1])
    started = time.monotonic()
    await wait_for(lambda: all(c.seq >= head for c in clients), 30, f"clients at seq {head}")
    emit({"reports": [c.report() for c in clients], "caught_up_after_s": time.monotonic() - started})
    for client in clients:
        await client.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
