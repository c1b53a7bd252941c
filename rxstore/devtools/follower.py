"""A real RootStore following a gateway for the inspector: its tables, last frames, link and errors."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from reactivex.abc import DisposableBase

from rxstore.client.connection import Backoff, ConnectionState, Retry, Token
from rxstore.client.root import RootStore
from rxstore.client.transport import Transport
from rxstore.devtools.frame_log import FrameLog
from rxstore.devtools.limits import FRAMES, HISTORY
from rxstore.devtools.table_spec import TableSpec
from rxstore.protocol.errors import RxStoreError
from rxstore.stores.table import TableStore

__all__ = ["Follower"]


class Follower:
    """Follows a gateway as any client does: a :class:`~rxstore.client.root.RootStore` and its stores.

    Each table named gets a :class:`~rxstore.stores.table.TableStore` of rows as dicts
    (a subset is a subscription of its own, ``inspect-1``, ``inspect-2``, ...); the
    router's frame tap keeps the last frames (:class:`~rxstore.devtools.frame_log.FrameLog`);
    the connection's states, failed attempts and errors are kept with their times, the
    last :data:`HISTORY` of each. The numbers (events/s, lag, reconnects, cursor) are
    the root's own ``root.metrics``.

    Args:
        url: The gateway.
        token: A token for it (a string or an async provider).
        tables: What to follow; a table named twice alike is followed once.
        frames: Most frames kept.
        transport: The link (python-socketio by default).
        backoff: Reconnection delays (the root's default by default).

    Example:
        ``follower = Follower(url, token=t, tables=[TableSpec("posts")]); await follower.start()``;
        ``follower.root.metrics.snapshot()``, ``follower.frames.lines()``; ``await follower.stop()``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: Token,
        tables: Iterable[TableSpec],
        frames: int = FRAMES,
        transport: Transport | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.specs: tuple[TableSpec, ...] = tuple({(s.label, s.key): s for s in tables}.values())
        self.stores: tuple[TableStore[Any], ...] = tuple(_stores(self.specs))
        self.root = RootStore(url, stores=self.stores, token=token, transport=transport, backoff=backoff)
        self.frames = FrameLog(limit=frames)
        self.root.router.recorder = self.frames
        self.states: deque[tuple[float, ConnectionState]] = deque(maxlen=HISTORY)
        self.retries: deque[tuple[float, Retry]] = deque(maxlen=HISTORY)
        self.errors: deque[tuple[float, RxStoreError]] = deque(maxlen=HISTORY)
        self.failed_attempts = 0
        """Connection attempts that failed since the start (each one on ``root.retries``)."""
        self._watching: list[DisposableBase] = []

    async def start(self) -> None:
        """Connect in the background: the root keeps (re)connecting until :meth:`stop`."""
        self._watching = [
            self.root.connection.subscribe(lambda state: self.states.append((time.time(), state))),
            self.root.retries.subscribe(self._on_retry),
            self.root.errors.subscribe(lambda error: self.errors.append((time.time(), error))),
        ]
        await self.root.setup_realtime(wait=False)

    async def stop(self) -> None:
        """Disconnect and stop watching."""
        for watching in self._watching:
            watching.dispose()
        self._watching = []
        await self.root.teardown_realtime()

    def _on_retry(self, retry: Retry) -> None:
        self.failed_attempts += 1
        self.retries.append((time.time(), retry))


def _stores(specs: Sequence[TableSpec]) -> list[TableStore[Any]]:
    """A store per spec: a whole table under its topic's event, a subset under ``inspect-N``."""
    subsets = 0
    stores: list[TableStore[Any]] = []
    for spec in specs:
        if spec.where is None:
            stores.append(spec.store())
        else:
            subsets += 1
            stores.append(spec.store(f"inspect-{subsets}"))
    return stores
