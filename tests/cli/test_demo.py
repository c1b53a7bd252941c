"""``rxstore demo``: plain progress lines where its output is not a terminal; on a terminal, a panel
that says what the final summary says."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import subprocess
import threading
from pathlib import Path

from tests.cli.commands import RXSTORE, environment
from tests.waiting import wait_for

PROGRESS = re.compile(r"^rxstore demo: (\d+) s: (\d+) changes written, (\d+) received, client at seq (\d+), ")
SUMMARY = re.compile(
    r"rxstore demo: (\d+) changes written, (\d+) received, client at seq (\d+) of (\d+), 0 errors; "
    r"the client equals the database \(\d+ posts\)\."
)
TALLY = re.compile(r"(\d+) changes written, (\d+) received, client at seq (\d+) of (\d+), 0 errors")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def test_demo_into_a_pipe_prints_a_progress_line_a_second_while_it_runs(tmp_path: Path) -> None:
    """Two progress lines come while it runs (no --duration), each with who is online; Ctrl-C: the summary,
    with equal counts."""
    demo = await asyncio.create_subprocess_exec(
        *RXSTORE, "demo", "--rate", "50", cwd=tmp_path, env=environment(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []

    async def read() -> None:
        assert demo.stdout is not None
        while line := await demo.stdout.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(read())
    try:
        await wait_for(
            lambda: sum(bool(PROGRESS.match(line)) for line in lines) >= 2 or demo.returncode is not None,
            timeout=60,
            what="two progress lines",
        )
        assert demo.returncode is None, lines
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)  # Ctrl-C
        status = await asyncio.wait_for(demo.wait(), 30)
        await reader
    assert status == 0, lines
    assert lines[0].startswith("rxstore demo: gateway http://127.0.0.1:")
    progress = [PROGRESS.match(line) for line in lines[1:-1]]
    assert all(progress) and len(progress) >= 2, lines
    assert [int(m.group(1)) for m in progress if m] == sorted(int(m.group(1)) for m in progress if m)
    summary = SUMMARY.fullmatch(lines[-1].strip())
    assert summary is not None, lines[-1]
    written, received, seq, head = map(int, summary.groups())
    assert written == received == seq == head > 0
    assert not any("━" in line or "│" in line for line in lines)  # no table drawn into a pipe
    online = [line.split("online: ")[-1] for line in lines if "online: " in line]
    assert online and all("demo (watching)" in who for who in online), lines  # the demo shows who is online
    assert any("ann (" in who for who in online), lines  # and the visitors, as they come and go


def run_on_a_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run ``rxstore ARGS`` with a pseudo-terminal as its stdout and stderr; its status and what it drew."""
    leader, follower = pty.openpty()
    env = {**environment(), "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    process = subprocess.Popen([*RXSTORE, *args], stdout=follower, stderr=follower, cwd=cwd, env=env)
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    status = process.wait(timeout=120)
    reader.join(timeout=30)
    os.close(leader)
    return status, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_demo_on_a_terminal_ends_with_a_panel_that_says_what_the_summary_says(tmp_path: Path) -> None:
    """The last panel and the summary: the same changes written and received (the panel showed one fewer)."""
    status, screen = run_on_a_terminal("demo", "--duration", "2", "--rate", "50", cwd=tmp_path)
    assert status == 0, screen[-2000:]
    tallies = TALLY.findall(screen)
    assert len(tallies) >= 2, screen[-2000:]  # the last panel, then the summary
    panel, summary = tallies[-2], tallies[-1]
    assert panel == summary, (panel, summary)
    assert "online: " in screen and "demo (watching)" in screen, screen[-2000:]
    written, received, seq, head = map(int, summary)
    assert written == received == seq == head > 0
