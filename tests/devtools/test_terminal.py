"""``rxstore inspect`` and ``rxstore top`` in a real terminal (a pty), against a real gateway; q quits."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from rxstore.gateway.demo import Post, save_post
from tests.gateway.harness import AUTH, start_gateway
from tests.services import closed_port

pytest.importorskip("textual", reason="the apps need textual: pip install -e '.[devtools]'")


def run_in_terminal(argv: list[str], shown: tuple[str, ...], timeout: float = 30.0) -> tuple[int, str]:
    """Run ``argv`` in a pty until its screen shows each text of ``shown``, press q: its status, output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, in a terminal of 140 x 40
        os.environ.update(TERM="xterm-256color", COLUMNS="140", LINES="40")
        os.execv(sys.executable, [sys.executable, "-m", "rxstore", *argv])
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while not all(text in output.decode(errors="replace") for text in shown):
            assert time.monotonic() < deadline, f"{argv[0]} never showed {shown}: {output[-2000:]!r}"
            if select.select([fd], [], [], 0.1)[0]:
                output += os.read(fd, 1 << 16)
        os.write(fd, b"q")
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            output += chunk
    finally:
        status = reaped(pid, time.monotonic() + 10.0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def reaped(pid: int, deadline: float) -> int:
    """The child's wait status once it ended; killed if it has not by ``deadline``."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)  # a thread polling the child, bounded by the deadline
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


async def test_inspect_and_top_show_the_gateway_and_quit_with_status_0(tmp_path: Path) -> None:
    """The commands as typed: the inspector shows the subset's row and rxstore:live, top the gateway
    ok and a closed port down; q ends each with status 0."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    await save_post(gateway.log, Post(id="p1", title="Shown in a terminal", author="ann"))
    try:
        argv = ["inspect", gateway.url, "--token", AUTH.issue("alice"), "--table", 'posts={"author": "ann"}']
        status, screen = await asyncio.to_thread(
            run_in_terminal, argv, ("rxstore:live", "Shown in a terminal")
        )
        assert status == 0 and "inspect-1" in screen
        down = f"http://127.0.0.1:{closed_port()}"
        status, screen = await asyncio.to_thread(
            run_in_terminal, ["top", gateway.url, down], ("ok", "down", "clients")
        )
        assert status == 0
    finally:
        await gateway.stop()
