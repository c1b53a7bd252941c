"""rxstore.gateway.log.sqlite.reads: a paged snapshot's rows are the JSON values the changes carry."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SQLiteChangeLog]:
    log = SQLiteChangeLog(f"sqlite:///{tmp_path}/app.db", poll_interval=0.02)
    await log.open()
    await log.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, data BLOB, score REAL, meta)")
    await log.watch("files")
    yield log
    await log.close()


async def test_paged_rows_hold_blobs_as_hex_and_infinities_as_strings_as_the_changes_do(
    log: SQLiteChangeLog,
) -> None:
    """Rows are zipped as read, except those holding a BLOB or an infinity: those are converted."""
    rows = [
        (1, None, 1.5, "plain"),
        (2, b"\x00\xff", 2.0, "blob"),
        (3, None, math.inf, "inf"),
        (4, None, -math.inf, b"\x01"),
        (5, None, 0.1, 7),
    ]
    for row in rows:
        await log.execute("INSERT INTO files VALUES (?, ?, ?, ?)", *row)
    changes = await log.read(0)
    async with log.snapshot_reader(["files"]) as reader:
        page, more = await reader.fetch("files", 10)
    assert not more
    assert page == [change.record for change in changes]
    assert page[1]["data"] == "00FF" and page[2]["score"] == "Infinity" and page[3]["meta"] == "01"
    assert page[0] == {"id": 1, "data": None, "score": 1.5, "meta": "plain"}
