"""docs/examples/dashboard.py: the Textual dashboard, driven by Textual's pilot against a real gateway."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, delete_post, register_demo_mutations, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.docs import load_example
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

textual = pytest.importorskip("textual", reason="the dashboard needs textual: pip install -e '.[docs]'")
from textual.widgets import DataTable, Static  # noqa: E402

dashboard = load_example("dashboard")


def rows(table: DataTable[Any]) -> dict[str, list[str]]:
    """The table as shown: row key -> cells."""
    return {str(key.value): [str(c) for c in table.get_row(key)] for key in table.rows}


def status_text(app: Any) -> str:
    return str(app.query_one("#status", Static).render())


async def test_rows_appear_change_and_go_live_with_connection_and_sync_status(tmp_path: Path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    register_demo_mutations(gateway)
    await save_post(gateway.log, Post(id="p1", title="Before the dashboard", author="bob", likes=3))
    app = dashboard.Dashboard(gateway.url, AUTH.issue("alice"))
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.query_one(DataTable)
            # The snapshot: rows that existed before the dashboard started.
            await wait_for(
                lambda: rows(table) == {"p1": ["p1", "Before the dashboard", "bob", "3"]},
                what="snapshot",
                timeout=15.0,
                pause=pilot.pause,
            )
            await wait_for(
                lambda: "connected" in status_text(app) and "posts live" in status_text(app),
                what="live",
                timeout=15.0,
                pause=pilot.pause,
            )
            assert app.user == "alice" and app.status_line == status_text(app)

            # Live changes: insert, update, delete, each reaches the table.
            await save_post(gateway.log, Post(id="p2", title="Written live", author="cy"))
            await wait_for(
                lambda: rows(table).get("p2") == ["p2", "Written live", "cy", "0"],
                what="insert",
                timeout=15.0,
                pause=pilot.pause,
            )
            await save_post(gateway.log, Post(id="p1", title="Renamed", author="bob", likes=4))
            await wait_for(
                lambda: rows(table)["p1"] == ["p1", "Renamed", "bob", "4"],
                what="update",
                timeout=15.0,
                pause=pilot.pause,
            )
            await delete_post(gateway.log, "p2")
            await wait_for(lambda: "p2" not in rows(table), what="delete", timeout=15.0, pause=pilot.pause)
            assert f"seq {app.posts.seq}" in status_text(app) and "1 rows" in status_text(app)

            # "n": a save_post mutation, shown at once, then confirmed by the change log.
            await pilot.press("n")
            await wait_for(
                lambda: table.row_count == 2, what="optimistic row", timeout=15.0, pause=pilot.pause
            )
            [mine] = [key for key in rows(table) if key.startswith("alice-")]
            await wait_for(
                lambda: mine in app.posts.confirmed and not app.posts.pending,
                what="confirmed",
                timeout=15.0,
                pause=pilot.pause,
            )
            assert rows(table)[mine][2] == "alice"

            # "d" on someone else's post is refused locally; on our own it deletes it.
            table.move_cursor(row=table.get_row_index("p1"))
            await pilot.press("d")
            await pilot.pause(0.2)
            assert "p1" in rows(table)
            table.move_cursor(row=table.get_row_index(mine))
            await pilot.press("d")
            await wait_for(
                lambda: mine not in rows(table) and mine not in app.posts.confirmed,
                what="deleted",
                timeout=15.0,
                pause=pilot.pause,
            )
            assert app.errors == []
    finally:
        await gateway.stop()


async def test_status_goes_stale_while_the_gateway_is_down_and_catches_up_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    gateway = await start_gateway(url)
    port = gateway.port
    app = dashboard.Dashboard(gateway.url, AUTH.issue("alice"))
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.query_one(DataTable)
            await save_post(gateway.log, Post(id="p1", title="one"))
            await wait_for(lambda: "p1" in rows(table), what="first row", timeout=15.0, pause=pilot.pause)

            await gateway.stop()
            await wait_for(
                lambda: "reconnecting" in status_text(app),
                what="reconnecting",
                timeout=15.0,
                pause=pilot.pause,
            )
            assert "posts stale" in status_text(app)
            with sqlite3.connect(tmp_path / "app.db") as db:  # written while nobody serves it
                db.execute("INSERT INTO posts (id, title) VALUES ('p2', 'written offline')")

            gateway = RealtimeGateway(open_change_log(url), topics=["posts"], auth=AUTH)
            await gateway.start(port=port)
            await wait_for(lambda: "p2" in rows(table), what="replayed row", timeout=30, pause=pilot.pause)
            await wait_for(
                lambda: "posts live" in status_text(app), what="live again", timeout=15.0, pause=pilot.pause
            )
            assert rows(table)["p2"] == ["p2", "written offline", "", "0"]
            assert app.root.metrics.reconnects == 1 and app.root.metrics.duplicates == 0
    finally:
        await gateway.stop()


def test_main_needs_a_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RXSTORE_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        dashboard.main(["--url", "http://127.0.0.1:1"])
    assert "RXSTORE_TOKEN" in capsys.readouterr().err


def test_token_subject_reads_the_sub_claim() -> None:
    assert dashboard.token_subject(AUTH.issue("alice")) == "alice"
    assert dashboard.token_subject("not-a-jwt") == ""
