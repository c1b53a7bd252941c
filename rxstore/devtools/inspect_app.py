"""``rxstore inspect``: a Textual app that shows what a client of a gateway receives, live."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from rxstore.client.connection import ConnectionStatus
from rxstore.devtools.follower import Follower
from rxstore.devtools.limits import INSPECT_INTERVAL, ROWS
from rxstore.stores.table import TableStore

__all__ = ["InspectApp"]

COLUMNS = 16
"""Most columns of the rows shown; the others are left out (the title says how many)."""
CELL_CHARS = 40
"""Longest cell shown; a longer value ends with an ellipsis."""
TABLE_COLUMNS = ("table", "event", "sync", "rows", "seq")
"""The columns of the tables panel."""

ICONS = {
    ConnectionStatus.IDLE: "○",
    ConnectionStatus.CONNECTING: "◌",
    ConnectionStatus.CONNECTED: "●",
    ConnectionStatus.RECONNECTING: "◌",
    ConnectionStatus.DISCONNECTED: "✖",
}


class InspectApp(App[None]):
    """Follows a gateway as a client and shows it: link, numbers, tables, rows and last frames.

    The top panel is the connection (state, reason, reconnects, failed attempts and the
    last states with their times), the root's metrics (events/s, lag and its p99,
    cursor, frames, changes, duplicates, errors) and the last error. Below: the tables
    followed (sync state, rows, seq), the rows of the one highlighted (the first
    ``rows``, in key order), and the last frames received,
    newest first. Everything is read from the :class:`~rxstore.devtools.follower.Follower`
    every ``interval`` seconds.

    Args:
        follower: What to follow (not started yet: the app starts and stops it).
        rows: Most rows shown of the highlighted table.
        interval: Seconds between refreshes.

    Example:
        ``InspectApp(Follower(url, token=t, tables=[TableSpec("posts")])).run()``
    """

    TITLE = "rxstore inspect"
    CSS = """
    #link { height: 5; padding: 0 1; background: $panel; }
    #tables { height: auto; max-height: 8; border: round $primary; }
    #rows { height: 1fr; border: round $primary; }
    #frames { height: 1fr; border: round $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit")]

    def __init__(self, follower: Follower, *, rows: int = ROWS, interval: float = INSPECT_INTERVAL) -> None:
        super().__init__()
        if rows < 1 or not interval > 0:
            raise ValueError(f"rows must be >= 1 and interval > 0, got rows={rows}, interval={interval}")
        self.follower = follower
        self.rows = rows
        self.interval = interval
        self.selected = 0
        """Index of the table whose rows are shown (the highlighted one)."""
        self._panel_link = Static(id="link", markup=False)
        self._panel_tables: DataTable[str] = DataTable(id="tables", cursor_type="row", zebra_stripes=True)
        self._panel_rows: DataTable[str] = DataTable(id="rows", zebra_stripes=True)
        self._panel_frames: DataTable[str] = DataTable(id="frames", zebra_stripes=True)
        self._shown_rows: tuple[int, Any] | None = None
        self._shown_frames = -1

    def compose(self) -> ComposeResult:
        """The panels: link, tables, rows, frames."""
        yield Header()
        yield self._panel_link
        yield self._panel_tables
        yield self._panel_rows
        yield self._panel_frames
        yield Footer()

    async def on_mount(self) -> None:
        """Start following, then refresh every ``interval`` seconds."""
        root = self.follower.root
        self.sub_title = " ".join(root.urls)
        tables = self._panel_tables
        tables.border_title = "tables followed"
        for column in TABLE_COLUMNS:
            tables.add_column(column, key=column)
        for store in self.follower.stores:
            tables.add_row(*self._table_cells(store), key=store.event)
        frames = self._panel_frames
        for column in ("time", "frame", "what"):
            frames.add_column(column, key=column)
        await self.follower.start()
        self.refresh_view()
        self.set_interval(self.interval, self.refresh_view)

    async def on_unmount(self) -> None:
        """Stop following."""
        await self.follower.stop()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """A table highlighted: show its rows."""
        if event.data_table.id == "tables":
            self.selected = event.cursor_row
            self._show_rows()

    def refresh_view(self) -> None:
        """Show what the follower holds now."""
        self._show_link()
        self._show_tables()
        self._show_rows()
        self._show_frames()

    # -- the panels -------------------------------------------------------------

    def _show_link(self) -> None:
        follower = self.follower
        root = follower.root
        state = root.connection_state
        metrics = root.metrics.snapshot()
        reason = f" ({state.reason})" if state.reason and not state.connected else ""
        history = ", ".join(f"{_clock(at)} {s.status.value}" for at, s in list(follower.states)[-4:])
        lines = [
            f"{ICONS[state.status]} {state.status.value}{reason}   reconnects {metrics.reconnects}   "
            f"failed attempts {follower.failed_attempts}   history: {history or '-'}",
            f"events/s {metrics.events_per_second:.1f}   lag {_ms(metrics.lag_seconds)} "
            f"(p99 {_ms(metrics.lag_p99_seconds)})   cursor {_or_dash(metrics.cursor)}   "
            f"epoch {(root.epoch or '-')[:8]}",
            f"frames {metrics.frames}   events {metrics.events}   changes {metrics.changes_applied}   "
            f"replayed {metrics.replayed}   duplicates {metrics.duplicates}   errors {metrics.errors}",
            f"last error: {_last_error(follower)}",
        ]
        self._panel_link.update("\n".join(lines))

    def _show_tables(self) -> None:
        tables = self._panel_tables
        for store in self.follower.stores:
            for column, cell in zip(TABLE_COLUMNS, self._table_cells(store), strict=True):
                tables.update_cell(store.event, column, cell, update_width=True)

    @staticmethod
    def _table_cells(store: TableStore[Any]) -> tuple[str, ...]:
        sync = store.sync
        since = f" for {time.time() - sync.since:.0f} s" if sync.since else ""
        return (
            store.name,
            store.event,
            f"{sync.state.value}{since}",
            str(len(store.value)),
            _or_dash(store.seq),
        )

    def _show_rows(self) -> None:
        stores = self.follower.stores
        if not stores:
            return
        store = stores[min(self.selected, len(stores) - 1)]
        state = store.value
        if (
            self._shown_rows is not None
            and self._shown_rows[1] is state
            and self._shown_rows[0] == self.selected
        ):
            return
        self._shown_rows = (self.selected, state)
        records = state.ordered()[: self.rows]
        columns = _columns(store.primary_key, records)
        table = self._panel_rows
        table.clear(columns=True)
        for column in columns[:COLUMNS]:
            table.add_column(column, key=column)
        for record in records:
            row = record if isinstance(record, Mapping) else getattr(record, "__dict__", {})
            table.add_row(*(_cell(row.get(column)) for column in columns[:COLUMNS]))
        hidden = f", {len(columns) - COLUMNS} columns not shown" if len(columns) > COLUMNS else ""
        table.border_title = f"rows of {store.name}: {len(records)} of {len(state)} shown{hidden}"

    def _show_frames(self) -> None:
        log = self.follower.frames
        if log.seen == self._shown_frames:
            return
        self._shown_frames = log.seen
        table = self._panel_frames
        table.clear()
        for line in log.lines():
            table.add_row(_clock(line.at), line.name, line.summary)
        table.border_title = f"last frames: {len(log)} kept of {log.seen} received (at most {log.limit})"


def _columns(key: str, records: tuple[Any, ...]) -> list[str]:
    """The key first, then every field of the records shown, in the order first seen."""
    seen: dict[str, None] = {key: None}
    for record in records:
        row = record if isinstance(record, Mapping) else getattr(record, "__dict__", {})
        seen.update(dict.fromkeys(str(column) for column in row))
    return list(seen)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _last_error(follower: Follower) -> str:
    if not follower.errors:
        return "none"
    at, error = follower.errors[-1]
    return f"{_clock(at)} {type(error).__name__}: {' '.join(str(error).split())}"[:300]
