"""The presence channels a root joined, with its metadata in each: joined again on every connect.

A join, an update or a leave made while connected is sent at once and returns with
its acknowledgement (the channel's whole member list is in the channel's
:class:`~rxstore.stores.presence.PresenceStore` by then). Made offline, it is
remembered and sent when the link is up. On every (re)connect the root joins each
channel again with its latest metadata, so a store gets the whole list again (never
the deltas it missed); when the link drops, each store is marked not synced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from rxstore.client.outbox import accepted, consume_exception
from rxstore.client.subscriptions import run_now
from rxstore.client.transport import Transport
from rxstore.protocol.errors import CallRejected, CallTimeout, NotConnected, RxStoreError
from rxstore.protocol.presence import PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE_UPDATE, check_channel
from rxstore.stores.domain import RealtimeStore
from rxstore.stores.presence import PresenceStore

__all__ = ["PresenceJoins"]

log = logging.getLogger("rxstore.root")


class PresenceJoins:
    """What the root joined, and sending it.

    Args:
        transport: Where the joins, updates and leaves go.
        stores: The root's stores (a channel's :class:`PresenceStore`, if any, is among them).
        connected: Whether the link is up now.
        report: Where a join refused after a reconnect goes (the root's ``errors``).
        call_timeout: Seconds to wait for an acknowledgement.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        stores: Callable[[], Iterable[RealtimeStore]],
        connected: Callable[[], bool],
        report: Callable[[RxStoreError], None],
        call_timeout: float,
    ) -> None:
        self._transport = transport
        self._stores = stores
        self._connected = connected
        self._report = report
        self._call_timeout = call_timeout
        self.joined: dict[str, Any] = {}
        """Channel -> the metadata this root set there (watched channels too, with ``None``)."""
        self.watching: set[str] = set()
        """The channels this root watches: it sees their members without being one."""
        self.conns: dict[str, str] = {}
        """Channel -> this connection's id there (the ``conn`` of its member), once acknowledged."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._rejoining: asyncio.Task[None] | None = None
        """The joins of the last connect, being sent."""

    async def join(self, channel: str, meta: Any = None, *, watch: bool = False) -> str | None:
        """Join ``channel`` with ``meta`` (or ``watch`` it); this connection's id there (``None`` offline).

        Raises:
            CallRejected: The gateway refused it (``forbidden_channel``, ``meta_too_large``, ...);
                the channel is not joined.
            CallTimeout: No acknowledgement in time; the channel stays joined (joined again
                on the next connect).
            ProtocolError: ``channel`` is not a channel name.
        """
        check_channel(channel)
        self.joined[channel] = None if watch else meta
        if watch:
            self.watching.add(channel)
        else:
            self.watching.discard(channel)
        if not self._connected():
            return None
        try:
            conn: str | None = await self._unless_dropped(self._join(channel, meta, watch=watch))
        except CallRejected:
            self.joined.pop(channel, None)
            self.watching.discard(channel)
            raise
        return conn

    async def update(self, channel: str, meta: Any) -> None:
        """Set this root's metadata in ``channel`` (sent now, or with the join of the next connect).

        Raises:
            ValueError: ``channel`` was not joined.
            CallRejected: The gateway refused it (``meta_too_large``, ``too_many_updates``, ...).
        """
        if channel not in self.joined or channel in self.watching:
            raise ValueError(
                f"update of presence channel {channel!r}: join it first (watchers have no metadata)"
            )
        before, self.joined[channel] = self.joined[channel], meta
        await self._rejoined()
        if self._connected():
            try:
                await self._unless_dropped(
                    self._send(PRESENCE_UPDATE, {"channel": channel, "meta": meta}, channel)
                )
            except CallRejected:
                self.joined[channel] = before  # the gateway keeps the metadata before: so does the next join
                raise

    async def leave(self, channel: str) -> None:
        """Leave ``channel``: its store is emptied (every member a leave), not synced."""
        if self.joined.pop(channel, _MISSING) is _MISSING:
            return
        self.watching.discard(channel)
        self.conns.pop(channel, None)
        store = self._store(channel)
        if store is not None:
            store.clear()
        if self._connected():  # a link that drops first: the gateway forgets its channels with it
            await self._unless_dropped(self._send(PRESENCE_LEAVE, {"channel": channel}, channel))

    # -- the link ------------------------------------------------------------------

    def link_up(self) -> None:
        """A connection was accepted: join every channel again, with its latest metadata."""
        if self.joined:
            self._rejoining = self._start(self._rejoin())

    def link_lost(self) -> None:
        """The link dropped: every channel's store is marked not synced."""
        self.conns.clear()
        for channel in self.joined:
            store = self._store(channel)
            if store is not None and store.value.synced:
                store.mark_stale()

    async def close(self) -> None:
        """Cancel the joins under way (teardown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    # -- helpers -------------------------------------------------------------------

    async def _rejoin(self) -> None:
        for channel in list(self.joined):
            if not self._connected():
                return
            if channel not in self.joined:
                continue  # left meanwhile
            watch = channel in self.watching
            try:
                await self._unless_dropped(self._join(channel, self.joined[channel], watch=watch))
            except RxStoreError as exc:
                log.warning(
                    "[RootStore] presence channel %r: join failed after a reconnect: %s", channel, exc
                )
                self._report(exc)

    async def _unless_dropped(self, call: Coroutine[Any, Any, Any]) -> Any:
        """``await call``; ``None`` if the link dropped before its acknowledgement.

        What was asked is remembered: the next connect joins again with it (a leave needs
        nothing more: the gateway forgets a connection's channels with it).

        Raises:
            CallTimeout: No acknowledgement in time on a link that is still up.
        """
        try:
            return await call
        except NotConnected:
            return None
        except CallTimeout:
            if self._connected():
                raise
            return None

    async def _join(self, channel: str, meta: Any, *, watch: bool = False) -> str:
        data = {"channel": channel, "watch": True} if watch else {"channel": channel, "meta": meta}
        ack = await self._send(PRESENCE_JOIN, data, channel)
        conn = str(ack.get("conn", ""))
        self.conns[channel] = conn
        return conn

    async def _send(self, event: str, data: dict[str, Any], channel: str) -> Any:
        ack = await self._transport.call(event, data, timeout=self._call_timeout)
        return accepted(ack, f"presence {event.removeprefix('rxstore:presence_')} of {channel!r}")

    def _store(self, channel: str) -> PresenceStore | None:
        for store in self._stores():
            if isinstance(store, PresenceStore) and store.channel == channel:
                return store
        return None

    async def _rejoined(self) -> None:
        """Wait for the joins of the last connect to be sent (an update must not overtake its join)."""
        rejoin = self._rejoining
        if rejoin is not None and not rejoin.done():
            await asyncio.wait({rejoin})

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coroutine`` as a task; on a link that answers at once (virtual time), now to its end."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or getattr(self._transport, "answers_at_once", False):
            run_now(coroutine)
            return None
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(consume_exception)
        return task


_MISSING = object()
