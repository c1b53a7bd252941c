"""A gateway on a fixed port over one SQLite file (so it can be stopped and started again), and counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rxstore import Event, EventKind, RootStore
from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, create_demo_schema, register_demo_mutations, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, PostStore

__all__ = ["AUTH", "PostStore", "Received", "gateway_on", "sample", "write_posts"]


async def gateway_on(directory: Path, port: int, **options: Any) -> RealtimeGateway:
    """A gateway over ``directory/app.db`` on ``port`` (the demo schema and its mutations)."""
    log = open_change_log(f"sqlite:///{directory}/app.db")
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH, **options)
    register_demo_mutations(gateway)
    await gateway.start(port=port)
    return gateway


async def write_posts(gateway: RealtimeGateway, ids: range, title: str = "t") -> None:
    """Write one post per id (one transaction each)."""
    for i in ids:
        await save_post(gateway.log, Post(id=f"p{i}", title=f"{title}{i}"))


def sample(gateway: RealtimeGateway, name: str) -> float:
    """A metric's value as ``/metrics`` reports it."""
    value = gateway.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


class Received:
    """The snapshots and changes a root hands its stores (after its duplicate filter)."""

    def __init__(self, root: RootStore) -> None:
        self.snapshots = 0
        self.snapshot_rows = 0
        self.changes = 0
        root.events.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.kind is EventKind.SNAPSHOT:
            self.snapshots += 1
            self.snapshot_rows += len(event.data.records)
        elif event.kind is EventKind.CHANGE:
            self.changes += 1
