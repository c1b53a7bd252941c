"""Helpers for gateway tests: a gateway on a real database, a PostStore, waiting."""

from __future__ import annotations

from typing import Any

from rxstore import Event, RootStore, TableStore
from rxstore.gateway.access.auth import TokenAuth
from rxstore.gateway.demo import Post, create_demo_schema
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.server import RealtimeGateway
from tests.waiting import wait_for as wait_for  # re-exported for older imports; use tests.waiting

SECRET = "rxstore-test-secret-0123456789abcdef"
AUTH = TokenAuth(secret=SECRET)


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


async def start_gateway(url: str, **options: Any) -> RealtimeGateway:
    """Open the log at ``url``, create the demo schema, serve it on a free port."""
    log = open_change_log(url)
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH, **options)
    await gateway.start(port=0)
    return gateway


def root_for(gateway: RealtimeGateway, user: str = "alice", **options: Any) -> tuple[RootStore, PostStore]:
    posts = PostStore()
    return RootStore(gateway.url, stores=[posts], token=AUTH.issue(user), **options), posts


class SeqCounter:
    """Counts every change seq a root receives (before its own duplicate filter)."""

    def __init__(self, root: RootStore) -> None:
        self.seen: list[int] = []
        self.rows: list[dict[str, Any]] = []
        root.events.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.change is not None:
            self.seen.append(event.change.seq)
            row = event.change.record or event.change.old
            if row is not None:
                self.rows.append(dict(row))
