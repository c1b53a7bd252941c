"""Waiting until a root is live: connected, with every table store live (``root.live()``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase

from rxstore.client.connection import ConnectionState
from rxstore.protocol.errors import LiveTimeout
from rxstore.stores.live import Syncing, describe, within
from rxstore.stores.status import SyncState

__all__ = ["root_live"]


def _describe_connection(state: ConnectionState) -> str:
    return state.status.value + (f" ({state.reason})" if state.reason else "")


def root_live(
    connection: Observable[ConnectionState],
    current: Any,
    tables: Sequence[Syncing],
    timeout: float | None,
    scheduler: SchedulerBase | None = None,
) -> Observable[None]:
    """Emit ``None`` once connected with every table store live, then complete.

    Args:
        connection: The root's connection states (current one first).
        current: Returns the current connection state (for the error message).
        tables: The root's table stores.
        timeout: Seconds to wait; ``None`` waits for ever.
        scheduler: Where the timeout runs (the subscriber's by default).

    Raises (on the observable):
        LiveTimeout: Not live in time; names every store that was not live and the connection state.
    """

    def all_live(values: tuple[Any, ...]) -> bool:
        state, *statuses = values
        return bool(state.connected) and all(status.state is SyncState.LIVE for status in statuses)

    live = reactivex.combine_latest(connection, *(store.status for store in tables)).pipe(
        ops.filter(all_live), ops.take(1), ops.map(lambda _: None)
    )

    def failure() -> LiveTimeout:
        waiting = {s.name: describe(s.sync) for s in tables if s.sync.state is not SyncState.LIVE}
        return LiveTimeout(timeout or 0.0, waiting, connection=_describe_connection(current()))

    return within(live, timeout, failure, scheduler)
