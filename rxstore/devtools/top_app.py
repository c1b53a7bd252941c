"""``rxstore top``: a Textual app that reads ``/healthz`` and ``/metrics`` of gateway nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import ClassVar

import aiohttp
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from rxstore.devtools.limits import TIMEOUT, TOP_INTERVAL
from rxstore.devtools.node_reader import NodeReader
from rxstore.devtools.node_sample import NodeSample

__all__ = ["NODE_COLUMNS", "TopApp"]


def _number(name: str) -> Callable[[NodeSample], str]:
    return lambda sample: _format(sample.value(name))


def _per_second(name: str) -> Callable[[NodeSample], str]:
    return lambda sample: _format(sample.rate(name), ".1f")


def _lag(sample: NodeSample) -> str:
    value = sample.value("rxstore_lag_seconds")
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _capture_lag(sample: NodeSample) -> str:
    capture = sample.health.get("capture")
    if not isinstance(capture, dict) or capture.get("lag_seconds") is None:
        return "-"  # SQLite, or PostgreSQL triggers: no capture to lag
    return f"{float(capture['lag_seconds']) * 1000:.0f} ms"


NODE_COLUMNS: dict[str, Callable[[NodeSample], str]] = {
    "node": lambda sample: sample.url,
    "status": lambda sample: sample.status,
    "clients": _number("rxstore_connected_clients"),
    "subscriptions": _number("rxstore_subscriptions"),
    "queued bytes": _number("rxstore_queued_bytes"),
    "syncs pending": _number("rxstore_pending_syncs"),
    "snapshots waiting": _number("rxstore_snapshots_waiting"),
    "in flight": _number("rxstore_requests_in_flight"),
    "events/s": _per_second("rxstore_events_sent"),
    "changes/s": _per_second("rxstore_changes"),
    "head seq": _number("rxstore_head_seq"),
    "lag": _lag,
    "capture lag": _capture_lag,
}
"""The columns of the nodes table: heading -> the cell of a sample."""


class TopApp(App[None]):
    """Reads every node's ``/healthz`` and ``/metrics`` each ``interval`` seconds and shows them.

    One row per node (clients, subscriptions, queue depths, events and changes per
    second from counter deltas, head seq, broadcast lag, capture lag); below it, every
    ``rxstore_*`` metric of the highlighted node with its rate, and its ``/healthz``
    body. A node that does not answer within ``timeout`` shows as ``down``, with the
    reason; it is read again at the next interval.

    Args:
        urls: The nodes' base URLs.
        interval: Seconds between two reads.
        timeout: Seconds one read of a node may take.

    Example:
        ``TopApp(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).run()``
    """

    TITLE = "rxstore top"
    CSS = """
    #nodes { height: auto; max-height: 12; border: round $primary; }
    #node { height: 1fr; border: round $primary; }
    #health { height: 2; padding: 0 1; background: $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit")]

    def __init__(
        self, urls: Iterable[str], *, interval: float = TOP_INTERVAL, timeout: float = TIMEOUT
    ) -> None:
        super().__init__()
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.readers = [NodeReader(url, timeout=timeout) for url in dict.fromkeys(urls)]
        if not self.readers:
            raise ValueError("name at least one node URL")
        self.interval = interval
        self.samples: dict[str, NodeSample] = {}
        """The last sample of each node, by URL."""
        self.reads = 0
        """Rounds of reads done (every node once each)."""
        self.selected = 0
        """Index of the node whose metrics are listed (the highlighted one)."""
        self._panel_nodes: DataTable[str] = DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
        self._panel_health = Static(id="health", markup=False)
        self._panel_node: DataTable[str] = DataTable(id="node", zebra_stripes=True)

    def compose(self) -> ComposeResult:
        """The nodes table, the highlighted node's health and its metrics."""
        yield Header()
        yield self._panel_nodes
        yield self._panel_health
        yield self._panel_node
        yield Footer()

    def on_mount(self) -> None:
        """Lay out the tables and start reading."""
        self.sub_title = f"{len(self.readers)} node(s), every {self.interval:g} s"
        nodes = self._panel_nodes
        nodes.border_title = "nodes"
        for heading in NODE_COLUMNS:
            nodes.add_column(heading, key=heading)
        for reader in self.readers:
            nodes.add_row(reader.url, "…", *["-"] * (len(NODE_COLUMNS) - 2), key=reader.url)
        node = self._panel_node
        for heading in ("metric", "value", "per second"):
            node.add_column(heading, key=heading)
        self.run_worker(self._read_forever(), exclusive=True)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """A node highlighted: list its metrics."""
        if event.data_table.id == "nodes":
            self.selected = event.cursor_row
            self._show_node()

    async def _read_forever(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                samples = await asyncio.gather(*(reader.read(http) for reader in self.readers))
                self.samples = {sample.url: sample for sample in samples}
                self.reads += 1
                self._show_nodes()
                self._show_node()
                await asyncio.sleep(self.interval)

    def _show_nodes(self) -> None:
        nodes = self._panel_nodes
        for url, sample in self.samples.items():
            for heading, cell in NODE_COLUMNS.items():
                nodes.update_cell(url, heading, cell(sample), update_width=True)

    def _show_node(self) -> None:
        if not self.samples:
            return
        reader = self.readers[min(self.selected, len(self.readers) - 1)]
        sample = self.samples[reader.url]
        health = self._panel_health
        if not sample.up:
            health.update(f"{sample.url}: down: {sample.error}")
        else:
            fields = ", ".join(f"{key} {value}" for key, value in sample.health.items())
            health.update(f"{sample.url}: {fields}")
        table = self._panel_node
        table.clear()
        for name, value in sorted(sample.values.items()):
            table.add_row(name, _format(value), _format(sample.rate(name), ".1f", blank=""))
        table.border_title = f"metrics of {sample.url}"


def _format(value: float | None, spec: str = "g", *, blank: str = "-") -> str:
    if value is None:
        return blank
    if spec == "g" and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format(value, spec)
