"""The root store's subscriptions: which stores follow what, on every connect and at runtime.

:class:`Subscriptions` is the part of :class:`~rxstore.client.root.RootStore` that
keeps its stores: their pipelines on the root's event stream (attached and
detached, at setup or by ``root.add`` / ``root.remove``), and what each
:class:`~rxstore.stores.table.TableStore` follows on the gateway (docs/protocol.md):

* a whole-table store under its class's event goes in the auth payload's
  ``topics`` (as before live queries: an older gateway serves it unchanged);
* any other (a ``where``, ``columns`` or its own ``event``) is a subscription
  whose id is its ``event``, in ``subscriptions``, with ``"since": P`` when
  its last snapshot (seq ``P``) is ahead of the cursor.

A store goes in the auth payload only while the gateway follows exactly its
subset (acknowledged, or sent in the payload of a connection it accepted),
or on a first sync (no cursor: every subscription gets a snapshot). Any other
(added or switched while offline) is *pending*: it is subscribed with
``rxstore:subscribe`` once the link is up, which brings its snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Final

from reactivex import Observable
from reactivex.abc import DisposableBase

from rxstore.client.outbox import consume_exception
from rxstore.client.transport import Transport
from rxstore.protocol.errors import CallTimeout, NotConnected, RxStoreError
from rxstore.protocol.events import MORE, Event, topic_event_name
from rxstore.protocol.subsets import Subset, SubsetError
from rxstore.stores.domain import DomainStore, RealtimeStore
from rxstore.stores.status import SyncState
from rxstore.stores.table import TableStore

__all__ = ["SUBSCRIBE", "UNSUBSCRIBE", "Subscriptions"]

SUBSCRIBE: Final = "rxstore:subscribe"
"""Client -> gateway: follow a subscription, or switch its subset (acknowledged after its snapshot)."""
UNSUBSCRIBE: Final = "rxstore:unsubscribe"
"""Client -> gateway: stop a subscription (``{"id": ...}``; acknowledged)."""

log = logging.getLogger("rxstore.root")

Store = TableStore[Any]

Attach = Callable[[RealtimeStore], list[DisposableBase]]
"""Subscribes a store to the root's events; returns what undoes it."""


class Subscriptions:
    """The root's stores, their pipelines, and what the gateway is asked to send them.

    Args:
        stores: The stores the root is built with.
        topics: Topics to follow besides the tables of whole-table stores.
        live: Whether the session's ``rxstore:live`` arrived (the router's).
        cursor: The router's cursor.
        transport: Where ``rxstore:subscribe`` / ``rxstore:unsubscribe`` go.
        connected: Whether the link is up now.
        report: Where a failed subscription after a reconnect goes (the root's ``errors``).
        call_timeout: Seconds to wait for an acknowledgement.

    Attributes:
        tables: Every table store (the connection's sync state reaches them all).
        live_tables: The table stores ``rxstore:live`` makes LIVE (the others wait for their ack).

    Raises:
        SubsetError: Two stores share an event name (one of them a subscription),
            or a subscription's id is an extra topic's event name.
    """

    def __init__(
        self,
        stores: Sequence[RealtimeStore],
        topics: Iterable[str],
        *,
        live: Callable[[], bool],
        cursor: Callable[[], int | None],
        transport: Transport,
        connected: Callable[[], bool],
        report: Callable[[RxStoreError], None],
        call_timeout: float,
    ) -> None:
        self.tables: list[Store] = []
        self.live_tables: list[Store] = []
        self.stores: tuple[RealtimeStore, ...] = ()
        self._extra = tuple(topics)
        self._live = live
        self._cursor = cursor
        self._transport = transport
        self._connected = connected
        self._report = report
        self._call_timeout = call_timeout
        self._acked: dict[Store, Subset] = {}
        """The subset the gateway follows for each store (known to be in sync with the cursor)."""
        self._offered: dict[Store, Subset] | None = None
        """The stores of this connection's auth payload, with the subset each was offered with."""
        self._handlers: dict[RealtimeStore, list[DisposableBase]] | None = None
        """Each attached store's subscriptions; ``None`` until :meth:`attach_all`."""
        self._tasks: set[asyncio.Task[None]] = set()
        for store in stores:
            self._register(store)
            if isinstance(store, TableStore):
                self._acked[store] = store.subset  # built with the root: in sync with its cursor
        self.live_tables[:] = self.tables

    # -- registry --------------------------------------------------------------

    def _register(self, store: RealtimeStore) -> None:
        """Add ``store`` (checking its event name against the others') without attaching it."""
        if store in self.stores:
            raise ValueError(f"{store!r} is already a store of this root")
        if isinstance(store, TableStore):
            self._check_clash(store)
            self.tables.append(store)
            store._switch = self.switch
            store._more = self.more
        self.stores = (*self.stores, store)

    def _unregister(self, store: RealtimeStore) -> None:
        self.stores = tuple(s for s in self.stores if s is not store)
        if isinstance(store, TableStore):
            for tables in (self.tables, self.live_tables):
                if store in tables:
                    tables.remove(store)
            self._acked.pop(store, None)
            store._switch = None
            store._more = None

    def _check_clash(self, store: Store) -> None:
        for other in self.tables:
            if other.event == store.event and (store.subscribed or other.subscribed):
                raise SubsetError(
                    f"{store.name} and {other.name} both use the event {store.event!r}: two stores "
                    "of one root need distinct names; pass event='...' to one of them"
                )
        if store.subscribed and store.event in {topic_event_name(topic) for topic in self._extra}:
            raise SubsetError(
                f"{store.name}: the event {store.event!r} is the one of a topic in topics=; "
                "pass event='...' to the store"
            )

    def topics(self) -> tuple[str, ...]:
        """The auth payload's ``topics``: whole-table stores' tables, then the extra topics."""
        tables = [store.table for store in self.tables if not store.subscribed]
        return tuple(dict.fromkeys([*tables, *self._extra]))

    # -- the auth payload and the link ------------------------------------------

    def auth_fields(self, cursor: int | None) -> dict[str, Any]:
        """``topics`` and (if any) ``subscriptions`` of the auth payload, given the router's cursor."""
        offered = self._in_sync(cursor)
        self._offered = {store: store.subset for store in offered}
        fields: dict[str, Any] = {"topics": list(self.topics())}
        subscriptions = [_wire(store, cursor) for store in offered if store.subscribed]
        if subscriptions:
            fields["subscriptions"] = subscriptions
        return fields

    def _in_sync(self, cursor: int | None) -> list[Store]:
        """What an auth payload offers: every store on a first sync, else those the gateway follows as is."""
        return [s for s in self.tables if cursor is None or self._acked.get(s) == s.subset]

    def link_up(self) -> None:
        """A connection was accepted: the gateway follows what was offered; subscribe the pending stores.

        A store switched (``where``) while the attempt was under way is pending: the
        gateway follows the subset it was offered with, not the new one.
        """
        offered, self._offered = self._offered, None
        if offered is None:  # a harness that drives the link without an auth payload
            offered = {store: store.subset for store in self._in_sync(self._cursor())}
        for store, subset in offered.items():
            if store in self.tables:
                self._acked[store] = subset
        self.live_tables[:] = [s for s in self.tables if offered.get(s) == s.subset]
        pending = [s for s in self.tables if s not in self.live_tables]
        if pending:
            self._start(self._subscribe_pending(pending))

    async def _subscribe_pending(self, stores: Sequence[Store]) -> None:
        for store in stores:
            if store not in self.tables or not self._connected():
                continue  # removed meanwhile, or the link dropped (pending again at the next connect)
            try:
                await self._subscribe(store, store.subset)
            except NotConnected:
                return
            except RxStoreError as exc:
                log.warning("[RootStore] %s: subscription %r failed: %s", store.name, store.event, exc)
                self._report(exc)

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task; on a link that answers at once (virtual time), now to its end."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or getattr(self._transport, "answers_at_once", False):
            run_now(coroutine)
            return
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(consume_exception)

    async def close(self) -> None:
        """Cancel the subscriptions under way (teardown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    # -- runtime changes ---------------------------------------------------------

    async def _subscribe(self, store: Store, subset: Subset) -> None:
        """Send ``rxstore:subscribe``; on its acknowledgement the gateway follows ``subset`` for ``store``.

        Raises:
            SubsetError: The gateway refused it (``code`` is its error).
            NotConnected, CallTimeout: No acknowledgement (the store stays pending).
        """
        self._acked.pop(store, None)
        ack = await self._transport.call(SUBSCRIBE, subset.to_wire(store.event), timeout=self._call_timeout)
        _accepted(ack, f"subscription {store.event!r}")
        if store.subset != subset or store not in self.tables:
            return  # switched again, or removed, meanwhile: that call decides
        self._acked[store] = subset
        if store not in self.live_tables:
            self.live_tables.append(store)
            if self._live():
                store.set_sync(SyncState.LIVE)

    async def switch(self, store: Store, subset: Subset) -> None:
        """Make ``store`` follow ``subset`` (``store.where``); on a connected root, after the ack.

        Which subset ``store`` follows in each outcome:

        * acknowledged: ``subset``, its rows in the store;
        * refused (``SubsetError``): the old subset, as the gateway still follows it;
        * not connected, or the link lost before the acknowledgement: ``subset``,
          subscribed once the link is back (no error: the store is not live meanwhile);
        * no acknowledgement in time on a link that stays up (``CallTimeout``):
          ``subset``, sent again at once; if that fails too, its error goes to
          ``root.errors`` and ``subset`` is subscribed from the next connect.

        Raises:
            SubsetError: The gateway refused it: ``store`` keeps its old subset.
            CallTimeout: No acknowledgement in time; ``store`` follows ``subset`` nonetheless.
        """
        old, old_acked = store._subset, self._acked.get(store)
        store._subset = subset
        if not self._connected():
            return  # followed from the next connect (a pending store)
        try:
            await self._subscribe(store, subset)
        except SubsetError:
            if store._subset is subset:  # not switched again meanwhile: back to the old subset
                store._subset = old
                if old_acked is not None:
                    self._acked[store] = old_acked
            raise
        except NotConnected:
            return
        except CallTimeout:
            if not self._connected():
                return  # the link was lost: pending, subscribed from the next connect
            if store._subset is subset:  # the gateway may follow either: ask again for this one
                self._start(self._subscribe_pending([store]))
            raise

    async def more(self, store: Store, subset: Subset) -> int:
        """Widen ``store``'s window to ``subset`` (``store.more``): ``rxstore:more``; the rows added.

        Which window ``store`` follows in each outcome, as for :meth:`switch`:
        acknowledged, ``subset`` (the rows in the store); refused, the old one; not
        connected or the link lost before the acknowledgement, ``subset``,
        subscribed whole once the link is back. A store the gateway does not follow
        as it is (a switch in flight) is switched to ``subset`` instead.

        Raises:
            SubsetError: The gateway refused it: ``store`` keeps its old window.
            CallTimeout: No acknowledgement in time; ``store`` follows ``subset`` nonetheless.
        """
        old, old_acked = store._subset, self._acked.get(store)
        if not self._connected() or old_acked != old:
            held = len(store.confirmed)
            await self.switch(store, subset)
            return max(0, len(store.confirmed) - held) if self._acked.get(store) == subset else 0
        store._subset = subset
        self._acked.pop(store, None)  # lost before the ack: subscribed whole, widened, from the next connect
        n = (subset.limit or 0) - (old.limit or 0)
        try:
            ack = await self._transport.call(MORE, {"id": store.event, "n": n}, timeout=self._call_timeout)
            _accepted(ack, f"more of {store.event!r}")
        except SubsetError:
            if store._subset is subset:
                store._subset = old
                self._acked[store] = old
            raise
        except NotConnected:
            return 0
        except CallTimeout:
            if self._connected() and store._subset is subset:
                self._start(self._subscribe_pending([store]))
            raise
        if store._subset is subset and store in self.tables:
            self._acked[store] = subset
        added = ack.get("added")
        return added if type(added) is int else 0

    async def add(self, store: RealtimeStore, attach: Attach) -> None:
        """Register ``store``, attach it if the root's handlers are set up, and subscribe it if connected.

        Raises:
            SubsetError: Its event name clashes, or the gateway refused it (then it is not added).
        """
        self._register(store)
        if self._handlers is not None:
            self._handlers[store] = attach(store)
        if not isinstance(store, TableStore) or not self._connected():
            return
        store.set_sync(SyncState.REPLAYING)
        try:
            await self._subscribe(store, store.subset)
        except SubsetError:
            self._detach(store)
            self._unregister(store)
            store.set_sync(SyncState.STALE)
            raise
        except NotConnected:
            return

    async def remove(self, store: RealtimeStore) -> None:
        """Unsubscribe ``store`` (if connected, after the ack) and detach it; its state stays.

        Raises:
            SubsetError: The gateway refused the unsubscription (the store is removed anyway).
        """
        if store not in self.stores:
            raise ValueError(f"{store!r} is not a store of this root")
        followed = store in self._acked or store in self.live_tables
        self._unregister(store)
        try:
            if (
                isinstance(store, TableStore)
                and followed
                and self._connected()
                and not any(other.event == store.event for other in self.tables)
            ):
                ack = await self._transport.call(UNSUBSCRIBE, {"id": store.event}, timeout=self._call_timeout)
                _accepted(ack, f"unsubscription {store.event!r}")
        except NotConnected:
            pass
        finally:
            self._detach(store)
            if isinstance(store, TableStore):
                store.set_sync(SyncState.STALE)

    # -- pipelines -------------------------------------------------------------

    def attach_all(self, attach: Attach) -> None:
        """Attach every store (once: calling it again does nothing until :meth:`detach_all`)."""
        if self._handlers is None:
            self._handlers = {store: attach(store) for store in self.stores}

    def detach_all(self) -> None:
        """Dispose every store's subscriptions (teardown)."""
        handlers, self._handlers = self._handlers, None
        for subscriptions in (handlers or {}).values():
            for subscription in subscriptions:
                subscription.dispose()

    def _detach(self, store: RealtimeStore) -> None:
        for subscription in (self._handlers or {}).pop(store, []):
            subscription.dispose()


def attach_to(events: Observable[Event], report: Callable[[RxStoreError], None]) -> Attach:
    """How a root attaches a store to its ``events``: its pipeline, and its errors into ``report``."""

    def attach(store: RealtimeStore) -> list[DisposableBase]:
        handlers = [store.errors.subscribe(report)] if isinstance(store, DomainStore) else []
        handlers.append(store.setup_realtime_handlers(events))
        return handlers

    return attach


def run_now(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (on a virtual link) to its end, without an event loop.

    Raises:
        RuntimeError: It waited for something (only a virtual link answers at once).
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the coroutine waited: without an event loop only a virtual link answers at once")


def _wire(store: Store, cursor: int | None) -> dict[str, Any]:
    seq = store.seq
    since = seq if cursor is not None and seq is not None and seq > cursor else None
    return store.subset.to_wire(store.event, since)


def _accepted(ack: Any, what: str) -> Mapping[str, Any]:
    """A positive acknowledgement, or :class:`SubsetError` with the ack's error code."""
    if isinstance(ack, Mapping) and ack.get("ok") is True:
        return ack
    fields: Mapping[str, Any] = ack if isinstance(ack, Mapping) else {}
    code = str(fields.get("error") or "invalid_subscription")
    message = fields.get("message")
    raise SubsetError(f"{what} refused: {message or code}", code=code)
