"""Waiting until stores are live: the observables behind ``store.live()`` and ``root.live()``.

A table store is live once the gateway has sent everything up to now (its
snapshot or replay) and changes arrive as they are committed
(:attr:`~rxstore.client.connection.SyncState.LIVE`); a root store is live when it is
connected and every one of its table stores is. Each wait is an observable
that emits once and completes, or fails with
:class:`~rxstore.protocol.errors.LiveTimeout` after ``timeout`` seconds on its
scheduler, so a marble test runs the same code in virtual time and
``await`` runs it on the asyncio loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase

from rxstore.client.connection import ConnectionState, SyncState, SyncStatus
from rxstore.protocol.errors import LiveTimeout

if TYPE_CHECKING:
    from rxstore.stores.table import TableStore

__all__ = ["root_live", "table_live"]

T = TypeVar("T")


def describe(status: SyncStatus) -> str:
    """Return a sync status in words, e.g. ``"replaying (cursor 12)"``."""
    where = "no snapshot yet" if status.cursor is None else f"cursor {status.cursor}"
    return f"{status.state.value} ({where})"


def _describe_connection(state: ConnectionState) -> str:
    return state.status.value + (f" ({state.reason})" if state.reason else "")


def _within(
    source: Observable[T],
    timeout: float | None,
    failure: Any,
    scheduler: SchedulerBase | None,
) -> Observable[T]:
    """``source`` (one value, then completion), or ``failure()`` raised after ``timeout`` seconds."""
    if timeout is None:
        return source
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")

    def fail(_scheduler: Any = None) -> Observable[T]:
        return reactivex.throw(failure())

    return source.pipe(ops.timeout(timeout, reactivex.defer(fail), scheduler=scheduler))


def table_live(
    store: TableStore[Any], timeout: float | None, scheduler: SchedulerBase | None = None
) -> Observable[SyncStatus]:
    """Emit ``store``'s sync status once it is live (at once if it is), then complete.

    Raises (on the observable):
        LiveTimeout: Not live within ``timeout`` seconds; names the store and its state.
    """

    def is_live(status: SyncStatus) -> bool:
        return status.state is SyncState.LIVE

    def failure() -> LiveTimeout:
        return LiveTimeout(timeout or 0.0, {store.name: describe(store.sync)})

    return _within(store.status.pipe(ops.filter(is_live), ops.take(1)), timeout, failure, scheduler)


def root_live(
    connection: Observable[ConnectionState],
    current: Any,
    tables: Sequence[TableStore[Any]],
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

    return _within(live, timeout, failure, scheduler)
