"""A live terminal dashboard of the posts table (Textual).

It shows every post as the database changes, the connection state, and the
sync status of the table (live, replaying or stale, with its cursor). ``n``
writes a new post through the demo's ``save_post`` mutation, shown at once
(optimistically) and confirmed when its change comes back through the log;
``d`` deletes the selected post if it is yours; ``q`` quits.

Run it against a gateway serving the demo schema::

    pip install -e ".[gateway,docs]"          # textual comes with the docs extra
    export RXSTORE_SECRET=change-me-to-a-long-random-secret
    rxstore serve --db sqlite:///app.db --demo-schema &
    python docs/examples/dashboard.py --token "$(rxstore token --sub alice)"

``--url`` (default ``$RXSTORE_URL`` or ``http://127.0.0.1:8080``) and
``--token`` (default ``$RXSTORE_TOKEN``) say where and who.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
from reactivex.abc import DisposableBase
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from rxstore import ConnectionStatus, RootStore, RxStoreError, SyncState, TableState, TableStore


@attrs.frozen
class Post:
    """A row of the demo ``posts`` table (``rxstore serve --demo-schema``)."""

    id: str
    title: str
    body: str = ""
    author: str = ""
    private: bool = False
    likes: int = 0
    updated_at: float = 0.0


class PostStore(TableStore[Post]):
    """The posts table, mirrored: a snapshot on first connect, then every change."""

    table = "posts"
    record_type = Post


COLUMNS = ("id", "title", "author", "likes")

ICONS = {
    ConnectionStatus.IDLE: "○",
    ConnectionStatus.CONNECTING: "◌",
    ConnectionStatus.CONNECTED: "●",
    ConnectionStatus.RECONNECTING: "◌",
    ConnectionStatus.DISCONNECTED: "✖",
}


def cells(post: Post) -> tuple[str, ...]:
    """The row of ``post`` in the table, one string per column of ``COLUMNS``."""
    return (post.id, post.title, post.author, str(post.likes))


def natural(text: str) -> list[Any]:
    """Sort key that orders ``p2`` before ``p10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def token_subject(token: str) -> str:
    """The ``sub`` claim of a JWT, read without verifying it (for display only)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
        return str(claims.get("sub", ""))
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return ""


class Dashboard(App[None]):
    """The posts table, live, with connection and sync status.

    Args:
        url: The gateway.
        token: A JWT for it (``rxstore token --sub alice``).
    """

    TITLE = "rxstore dashboard"
    CSS = """
    DataTable { height: 1fr; }
    #status { height: 1; padding: 0 1; background: $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_post", "New post"),
        Binding("d", "delete_post", "Delete mine"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, url: str, token: str) -> None:
        super().__init__()
        self.user = token_subject(token)
        self.posts = PostStore()
        self.root = RootStore(url, stores=[self.posts], token=token)
        self.errors: list[RxStoreError] = []
        self.status_line = ""
        self._shown: TableState[Post] = TableState()
        self._render_scheduled = False
        self._subscriptions: list[DisposableBase] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="posts", cursor_type="row", zebra_stripes=True)
        yield Static(id="status", markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.sub_title = f"{self.root.urls[0]} as {self.user or '?'}"
        # Everything runs on Textual's asyncio loop: the callbacks may touch widgets.
        self._subscriptions = [
            self.posts.state.subscribe(lambda _: self._schedule_render()),
            self.posts.status.subscribe(lambda _: self._show_status()),
            self.root.connection.subscribe(lambda _: self._show_status()),
            self.root.errors.subscribe(self._on_error),
        ]
        # Connect in the background: the root keeps reconnecting until torn down.
        await self.root.setup_realtime(wait=False)
        self.set_interval(1.0, self._show_status)  # the stale time keeps growing

    async def on_unmount(self) -> None:
        for subscription in self._subscriptions:
            subscription.dispose()
        await self.root.teardown_realtime()

    # -- rendering -------------------------------------------------------------

    def _schedule_render(self) -> None:
        # A burst of changes (a replay, a busy table) costs one table update per screen refresh.
        if not self._render_scheduled:
            self._render_scheduled = True
            self.call_after_refresh(self._render_posts)

    def _render_posts(self) -> None:
        """Apply the difference between the shown state and the current one to the table."""
        self._render_scheduled = False
        state, shown = self.posts.value, self._shown
        if state.rows is shown.rows:
            return
        table = self.query_one(DataTable)
        added = False
        for key, post in state.rows.items():
            before = shown.get(key)
            if before is None:
                table.add_row(*cells(post), key=key)
                added = True
            elif before is not post and before != post:
                for column, old, new in zip(
                    COLUMNS, cells(before), cells(post), strict=True
                ):
                    if old != new:
                        table.update_cell(key, column, new, update_width=True)
        for key in shown.rows:
            if key not in state:
                table.remove_row(key)
        if added:
            table.sort("id", key=natural)
        self._shown = state
        self._show_status()

    def _show_status(self) -> None:
        connection, sync = self.root.connection_state, self.posts.sync
        parts = [f"{ICONS[connection.status]} {connection.status.value}"]
        if connection.reason and not connection.connected:
            parts[0] += f" ({connection.reason})"
        stale_for = (
            f" for {sync.lag:.0f} s"
            if sync.state is SyncState.STALE and sync.lag
            else ""
        )
        parts.append(f"posts {sync.state.value}{stale_for}")
        parts.append(f"seq {self.posts.seq if self.posts.seq is not None else '-'}")
        parts.append(f"{len(self.posts.value)} rows")
        if self.posts.pending:
            parts.append(f"{len(self.posts.pending)} pending")
        parts.append(f"{len(self.errors)} errors")
        self.status_line = "  ·  ".join(parts)
        self.query_one("#status", Static).update(self.status_line)

    def _on_error(self, error: RxStoreError) -> None:
        self.errors.append(error)
        self.notify(str(error), severity="warning", markup=False)
        self._show_status()

    # -- actions -----------------------------------------------------------------

    def action_new_post(self) -> None:
        """Write a new post; it shows at once and is confirmed through the log."""
        now = time.time()
        post = Post(
            id=f"{self.user or 'anon'}-{int(now * 1000):x}",
            title=f"Written from the dashboard at {time.strftime('%H:%M:%S')}",
            author=self.user,
            updated_at=now,
        )
        fields = attrs.asdict(post, filter=lambda a, _: a.name != "author")
        self.run_worker(
            self._mutate("save_post", fields, {post.id: post}), group="mutations"
        )

    def action_delete_post(self) -> None:
        """Delete the selected post, if the user wrote it."""
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        post = self.posts.value.get(key)
        if post is None or post.author != self.user:
            self.notify("You can only delete your own posts.", severity="warning")
            return
        self.run_worker(
            self._mutate("delete_post", {"id": key}, {key: None}), group="mutations"
        )

    async def _mutate(
        self, name: str, args: dict[str, Any], rows: dict[Any, Post | None]
    ) -> None:
        try:
            await self.root.mutate(name, args, optimistic={self.posts: rows})
        except RxStoreError as exc:  # rolled back already; root.errors reported it
            self.notify(f"{name} failed: {exc}", severity="error", markup=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--url`` and ``--token`` (or ``RXSTORE_URL``, ``RXSTORE_TOKEN``) and run."""
    parser = argparse.ArgumentParser(
        description="A live terminal dashboard of the posts table."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("RXSTORE_URL", "http://127.0.0.1:8080"),
        help="gateway URL (default: $RXSTORE_URL or %(default)s)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("RXSTORE_TOKEN"),
        help="JWT (default: $RXSTORE_TOKEN)",
    )
    args = parser.parse_args(argv)
    if not args.token:
        parser.error(
            "no token: pass --token or set RXSTORE_TOKEN (rxstore token --sub alice)"
        )
    Dashboard(args.url, args.token).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
