"""Running the ``rxstore`` command as a user does: a real process, in a folder of the test's own."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.waiting import wait_for

SECRET = "cli-test-secret-0123456789abcdefghij"
RXSTORE = [sys.executable, "-m", "rxstore"]


def environment(secret: str | None = SECRET) -> dict[str, str]:
    """This process's environment, with ``RXSTORE_SECRET`` set to ``secret`` (``None``: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "RXSTORE_SECRET"}
    if secret is not None:
        env["RXSTORE_SECRET"] = secret
    return env


def rxstore(*args: str, cwd: Path, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    """``rxstore ARGS`` run to its end in ``cwd``."""
    return subprocess.run(
        [*RXSTORE, *args], capture_output=True, text=True, timeout=120, env=environment(secret), cwd=cwd
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The command failed with status 2 and said so in one line holding every fragment; the line."""
    lines = result.stderr.splitlines()
    assert (result.returncode, len(lines)) == (2, 1), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


class Server:
    """A running ``rxstore serve``: its process, its URL, and the lines it printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        self.url = ""

    def children(self) -> list[int]:
        """The pids of the processes it started (its workers)."""
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@asynccontextmanager
async def serving(*args: str, cwd: Path, lines: int = 2) -> AsyncIterator[Server]:
    """``rxstore serve ARGS`` in ``cwd``, once it printed ``lines`` lines on stdout; SIGTERM after."""
    process = await asyncio.create_subprocess_exec(
        *RXSTORE, "serve", *args, cwd=cwd, env=environment(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    server = Server(process)

    async def read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line.decode())

    readers = [
        asyncio.create_task(read(process.stdout, server.out)),
        asyncio.create_task(read(process.stderr, server.err)),
    ]
    try:
        await wait_for(
            lambda: len(server.out) >= lines or process.returncode is not None,
            timeout=60,
            what="the serving lines",
        )
        found = re.search(r"http://[\d.]+:\d+", server.out[0] if server.out else "")
        assert found, (server.out, server.err)
        server.url = found.group(0)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0, server.err
        await asyncio.gather(*readers)
