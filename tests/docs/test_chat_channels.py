"""docs/examples/chat_channels.py: the Live queries page's example, run for real.

The example starts a gateway on SQLite and follows one channel with a
``MessageStore(where=...)``; these tests check what it prints after each step
and that the store it ends with is exactly the database's subset.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import attrs
import pytest

from tests.docs import EXAMPLES, load_example

chat = load_example("chat_channels")

pytestmark = pytest.mark.timeout(60)

EXPECTED = [
    "joined   #general: 1:hello 3:welcome",
    "live     #general: 1:hello 3:welcome 5:anyone here?",
    "switch   #random: 2:cats 6:not for #general",
    "move-in  #random: 1:hello 2:cats 6:not for #general",
    "move-out #random: 2:cats 6:not for #general",
    "staff    #staff-lounge: (none)",
    "back     #random: 2:cats 6:not for #general",
    "added    5 public messages",
]
"""What the example prints: each switch returns with exactly the new channel's rows."""


def subset_in_db(db: Path, channel: str) -> dict[int, dict[str, object]]:
    """The rows of ``channel`` as the database has them."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM messages WHERE channel_id = ?", (channel,)).fetchall()
    return {row["id"]: dict(row) for row in rows}


async def test_the_example_switches_channels_and_ends_with_the_database_subset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Joined, live, switched, moved in and out, hidden by authorize: each step as printed, then == db."""
    db = tmp_path / "chat.db"
    messages = await chat.main(f"sqlite:///{db}")
    assert capsys.readouterr().out.splitlines() == EXPECTED
    assert messages.subset == chat.MessageStore(where={"channel_id": "random"}).subset
    held = {key: attrs.asdict(message) for key, message in messages.value.items()}
    assert held == subset_in_db(db, "random") != {}
    assert all(row["channel_id"] == "random" for row in held.values())


async def test_the_example_runs_as_a_script(tmp_path: Path) -> None:
    """``python docs/examples/chat_channels.py --db ...`` prints the same steps and exits 0."""
    db = tmp_path / "chat.db"
    script = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "chat_channels.py"), "--db", f"sqlite:///{db}",
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
    assert sorted(subset_in_db(db, "random")) == [2, 6]
