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

from typing import Any, Protocol, TypeVar

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase

from rxstore.protocol.errors import LiveTimeout
from rxstore.stores.status import SyncState, SyncStatus

__all__ = ["Syncing", "describe", "table_live", "within"]

T = TypeVar("T")


def describe(status: SyncStatus) -> str:
    """Return a sync status in words, e.g. ``"replaying (cursor 12)"``."""
    where = "no snapshot yet" if status.cursor is None else f"cursor {status.cursor}"
    return f"{status.state.value} ({where})"


class Syncing(Protocol):
    """A store with a sync status (a :class:`~rxstore.stores.table.TableStore`)."""

    @property
    def name(self) -> str:
        """The store's name, in errors."""

    @property
    def status(self) -> Observable[SyncStatus]:
        """Its sync statuses, the current one first."""

    @property
    def sync(self) -> SyncStatus:
        """Its current sync status."""


def within(
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
    store: Syncing, timeout: float | None, scheduler: SchedulerBase | None = None
) -> Observable[SyncStatus]:
    """Emit ``store``'s sync status once it is live (at once if it is), then complete.

    Raises (on the observable):
        LiveTimeout: Not live within ``timeout`` seconds; names the store and its state.
    """

    def is_live(status: SyncStatus) -> bool:
        return status.state is SyncState.LIVE

    def failure() -> LiveTimeout:
        return LiveTimeout(timeout or 0.0, {store.name: describe(store.sync)})

    return within(store.status.pipe(ops.filter(is_live), ops.take(1)), timeout, failure, scheduler)
