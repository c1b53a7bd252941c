"""docs/examples/newest_messages.py: the Live queries page's chat screen, run for real.

The example serves ``messages`` and ``memberships`` on SQLite and follows the newest 50
messages of alice's channels (a window over a relation); these tests check what it
prints after each step (load more, a post, a join, a leave) and that the feed it ends
with is exactly the database's ``ORDER BY ts DESC LIMIT`` of her channels.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.docs import EXAMPLES, load_example

chat = load_example("newest_messages")

pytestmark = pytest.mark.timeout(60)

EXPECTED = [
    "joined   50 messages, 119..46, #general,random",
    "more+30  80 messages, 119..1, #general,random",
    "posted   81 messages, 121..1, #general,random",
    "join     100 messages, 121..22, #cats,general,random",
    "leave    81 messages, 121..1, #general,random",
]
"""What the example prints: each step's window, newest first."""


def newest_in_db(db: Path, limit: int) -> list[int]:
    """The window as the database computes it."""
    sql = (
        "SELECT id FROM messages WHERE channel_id IN "
        "(SELECT channel_id FROM memberships WHERE user_id = 'alice') ORDER BY ts DESC, id LIMIT ?"
    )
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute(sql, (limit,))]


async def test_the_example_loads_more_and_moves_rows_on_a_join_and_a_leave(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Joined, more, posted, join, leave: each step as printed, then the feed == the database's window."""
    db = tmp_path / "chat.db"
    feed = await chat.main(f"sqlite:///{db}")
    assert capsys.readouterr().out.splitlines() == EXPECTED
    assert feed.subset.limit == 100
    assert [m.id for m in feed.value.ordered()] == newest_in_db(db, 100)


async def test_the_example_runs_as_a_script(tmp_path: Path) -> None:
    """``python docs/examples/newest_messages.py --db ...`` prints the same steps and exits 0."""
    db = tmp_path / "chat.db"
    script = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "newest_messages.py"), "--db", f"sqlite:///{db}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(script.communicate(), 45)
    finally:
        if script.returncode is None:
            script.kill()
            await script.wait()
    assert script.returncode == 0, stderr.decode()
    assert stdout.decode().splitlines() == EXPECTED
