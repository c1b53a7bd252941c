"""``rxstore top``'s app under Textual's pilot: a real gateway with a client, and a node that is down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rxstore.devtools.node_reader import NodeReader
from rxstore.devtools.top_app import NODE_COLUMNS
from rxstore.gateway.demo import Post, save_post
from tests.devtools.screens import screenshot_dir
from tests.gateway.harness import root_for, start_gateway
from tests.services import closed_port
from tests.waiting import wait_for

pytest.importorskip("textual", reason="top needs textual: pip install -e '.[devtools]'")
from textual.widgets import DataTable, Static

from rxstore.devtools.top_app import TopApp


def node_row(table: DataTable[Any], url: str) -> dict[str, str]:
    """The nodes table's row of ``url``: heading -> cell."""
    return dict(zip(NODE_COLUMNS, (str(cell) for cell in table.get_row(url)), strict=True))


async def test_a_gateway_shows_its_clients_and_head_and_a_closed_port_shows_down(tmp_path: Path) -> None:
    """Two nodes: the gateway's row has status ok, its one client and its head seq; the closed port's
    row says down (the app goes on); highlighting a node lists its metrics and health; a screenshot."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    root, posts = root_for(gateway)
    down = f"http://127.0.0.1:{closed_port()}"
    app = TopApp([gateway.url, down, gateway.url], interval=0.05, timeout=1.0)
    try:
        async with root:
            for n in range(3):
                await save_post(gateway.log, Post(id=f"p{n}", title="t"))
            await wait_for(lambda: len(posts.value) == 3, what="the client has the rows")
            head = str(posts.seq)
            async with app.run_test(size=(180, 36)) as pilot:
                nodes = app.query_one("#nodes", DataTable)
                assert nodes.row_count == 2  # a node named twice is read once
                await wait_for(
                    lambda: (
                        node_row(nodes, gateway.url)["head seq"] == head
                        and node_row(nodes, down)["status"] == "down"
                    ),
                    what="both nodes read",
                    timeout=15.0,
                    pause=pilot.pause,
                )
                row = node_row(nodes, gateway.url)
                assert row["status"] == "ok" and row["clients"] == "1" and row["queued bytes"] == "0"
                assert row["capture lag"] == "-" and row["lag"].endswith(" ms")
                assert node_row(nodes, down)["clients"] == "-"
                reads = app.reads
                await wait_for(
                    lambda: app.reads > reads + 1, what="reads go on", timeout=15.0, pause=pilot.pause
                )
                assert node_row(nodes, gateway.url)["events/s"] != "-"  # a rate from two reads

                health = app.query_one("#health", Static)
                metrics = app.query_one("#node", DataTable)
                assert f"{gateway.url}: status ok" in str(health.render())
                names = [str(metrics.get_row_at(i)[0]) for i in range(metrics.row_count)]
                assert "rxstore_connected_clients" in names and "rxstore_events_sent" in names
                app.save_screenshot("top.svg", str(screenshot_dir(tmp_path)))

                nodes.move_cursor(row=1)
                await wait_for(
                    lambda: str(health.render()).startswith(f"{down}: down: "),
                    what="the down node's reason",
                    timeout=15.0,
                    pause=pilot.pause,
                )
    finally:
        await gateway.stop()


def test_top_needs_a_node_and_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        TopApp([])
    with pytest.raises(ValueError, match="interval must be > 0"):
        TopApp(["http://x"], interval=0)


async def test_a_postgresql_gateway_shows_its_wal_capture_lag_in_ms(pg_dsn: str) -> None:
    """On PostgreSQL, /healthz carries the capture's status: the capture-lag cell shows its lag in ms
    (WAL capture), or a dash with triggers (wal_level=replica: nothing to lag)."""
    gateway = await start_gateway(pg_dsn)
    try:
        async with aiohttp.ClientSession() as http:
            sample = await NodeReader(gateway.url).read(http)
        capture = sample.health["capture"]
        assert sample.status == "ok" and capture["mode"] in ("wal", "trigger")
        lag = capture.get("lag_seconds")
        expected = "-" if lag is None else f"{lag * 1000:.0f} ms"
        assert NODE_COLUMNS["capture lag"](sample) == expected
    finally:
        await gateway.stop()
