"""``rxstore inspect``'s app under Textual's pilot, following a real gateway (SQLite, real Socket.IO)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rxstore import Backoff
from rxstore.devtools.follower import Follower
from rxstore.devtools.table_spec import TableSpec
from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, delete_post, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.devtools.screens import screenshot_dir
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

pytest.importorskip("textual", reason="the inspector needs textual: pip install -e '.[devtools]'")
from textual.widgets import DataTable, Static

from rxstore.devtools.inspect_app import InspectApp

FAST = Backoff(initial=0.05, factor=2.0, maximum=0.2, jitter=0.0)
"""Quick reconnects: the test waits for conditions, not for delays."""


def cells(table: DataTable[Any]) -> list[list[str]]:
    """The table as shown, row by row."""
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


def link(app: InspectApp) -> str:
    return str(app.query_one("#link", Static).render())


async def test_tables_rows_link_and_frames_follow_the_gateway_live(tmp_path: Path) -> None:
    """The tables followed go live with their rows (a subset keeps only its rows), the link panel
    shows the connection and the root's numbers, the frames panel lists the snapshot and each change,
    and highlighting the subset shows its rows; a screenshot is saved."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    await save_post(gateway.log, Post(id="p1", title="Hello", author="ann", likes=2))
    await save_post(gateway.log, Post(id="p2", title="Other", author="bob"))
    specs = [TableSpec.parse("posts"), TableSpec.parse('posts={"author": "ann"}')]
    follower = Follower(gateway.url, token=AUTH.issue("alice"), tables=specs, frames=5)
    app = InspectApp(follower, rows=10, interval=0.05)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            tables = app.query_one("#tables", DataTable)
            rows = app.query_one("#rows", DataTable)
            frames = app.query_one("#frames", DataTable)

            def live() -> bool:
                shown = cells(tables)
                return len(shown) == 2 and all("live" in row[2] for row in shown)

            await wait_for(live, what="both tables live", timeout=15.0, pause=pilot.pause)
            assert [row[:2] + row[3:] for row in cells(tables)] == [
                ["posts", "post_update", "2", str(follower.stores[0].seq)],
                ['posts {"author":"ann"}', "inspect-1", "1", str(follower.stores[1].seq)],
            ]
            assert "● connected" in link(app) and "reconnects 0" in link(app)
            assert [row[0] for row in cells(rows)] == ["p1", "p2"]
            assert rows.border_title == "rows of posts: 2 of 2 shown"
            assert any(row[1] == "rxstore:snapshot" and "2 rows at seq" in row[2] for row in cells(frames))

            await save_post(gateway.log, Post(id="p3", title="Live", author="ann"))
            await delete_post(gateway.log, "p2")
            await wait_for(
                lambda: [row[0] for row in cells(rows)] == ["p1", "p3"],
                what="the live insert and delete in the rows",
                timeout=15.0,
                pause=pilot.pause,
            )
            seq = follower.root.cursor
            await wait_for(
                lambda: f"cursor {seq}" in link(app) and "DELETE" in str(cells(frames)),
                what="the cursor and the last frames",
                timeout=15.0,
                pause=pilot.pause,
            )
            assert "events/s" in link(app) and "lag" in link(app) and "last error: none" in link(app)
            assert frames.row_count <= 5 and str(frames.border_title).startswith(
                f"last frames: {frames.row_count} kept"
            )

            tables.move_cursor(row=1)
            await wait_for(
                lambda: (
                    [row[0] for row in cells(rows)] == ["p1", "p3"]
                    and str(rows.border_title).startswith('rows of posts {"author":"ann"}')
                ),
                what="the subset's rows",
                timeout=15.0,
                pause=pilot.pause,
            )
            app.save_screenshot("inspect.svg", str(screenshot_dir(tmp_path)))
    finally:
        await gateway.stop()
    assert follower.root.running is False  # the app stopped its root on exit


async def test_a_lost_gateway_shows_reconnecting_then_a_reconnect_and_the_missed_rows(tmp_path: Path) -> None:
    """While the gateway is down the link says reconnecting and the tables stale; once it is back the
    reconnect is counted and the rows written meanwhile arrive. The rows shown stop at ``rows``."""
    url = f"sqlite:///{tmp_path}/app.db"
    gateway = await start_gateway(url)
    await save_post(gateway.log, Post(id="p1", title="one"))
    await save_post(gateway.log, Post(id="p2", title="two"))
    port = gateway.port
    follower = Follower(gateway.url, token=AUTH.issue("alice"), tables=[TableSpec("posts")], backoff=FAST)
    app = InspectApp(follower, rows=1, interval=0.05)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            tables = app.query_one("#tables", DataTable)
            rows = app.query_one("#rows", DataTable)
            await wait_for(
                lambda: "live" in cells(tables)[0][2] and rows.border_title == "rows of posts: 1 of 2 shown",
                what="live, the first row of two",
                timeout=15.0,
                pause=pilot.pause,
            )
            assert [row[0] for row in cells(rows)] == ["p1"]
            await gateway.stop()
            await wait_for(
                lambda: "reconnecting" in link(app) and "stale" in cells(tables)[0][2],
                what="reconnecting, stale",
                timeout=15.0,
                pause=pilot.pause,
            )
            log = open_change_log(url)
            await log.open()
            await save_post(log, Post(id="p9", title="written while down"))
            await log.close()
            gateway = RealtimeGateway(open_change_log(url), topics=["posts"], auth=AUTH)
            await gateway.start(port=port)
            await wait_for(
                lambda: "reconnects 1" in link(app) and cells(tables)[0][3] == "3",
                what="reconnected with the missed row",
                timeout=30.0,
                pause=pilot.pause,
            )
            assert "live" in cells(tables)[0][2] and "failed attempts" in link(app)
    finally:
        await gateway.stop()
