"""The outbox: calls, emits and mutations on their way to the gateway.

While the link is down, what the application sends waits here, in order and
up to a limit; once the root says the link is up again (:meth:`Outbox.resume`)
it is sent, in order. A mutation carries a fresh id and is resent with it
until acknowledged, so a retry after a lost acknowledgement is applied once;
its optimistic rows are dropped when it fails, or ``settle_after`` seconds
after its acknowledgement if no change of it came back.

The root store composes one :class:`Outbox`; ``RootStore.call``, ``mutate``,
``emit`` and ``broadcast`` delegate to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from rxstore.client.metrics import Metrics
from rxstore.client.tasks import cancel_and_wait
from rxstore.client.transport import Transport
from rxstore.persist.batch import Outgoing
from rxstore.persist.mutation import PendingMutation
from rxstore.protocol.errors import CallRejected, CallTimeout, NotConnected, OutboxFull, RxStoreError
from rxstore.protocol.events import BROADCAST, MUTATE
from rxstore.stores.table import TableStore, converter

__all__ = ["Journal", "Outbox"]


class Journal(Protocol):
    """Keeps accepted mutations on disk until they settle (the root's :class:`~rxstore.persist.Persister`)."""

    def journal_add(self, entry: Outgoing) -> asyncio.Future[None]:
        """Write ``(id, name, args, optimistic rows, timeout)``; done once on disk."""
        ...

    def journal_remove(self, mutation: str) -> None:
        """Forget a settled mutation."""
        ...


@attrs.define
class _Outgoing:
    event: str
    data: Any
    future: asyncio.Future[Any]
    timeout: float
    """Seconds to wait for the acknowledgement once sent; 0 for an emit (none awaited)."""
    retry: bool = False
    """Resend after a lost acknowledgement (idempotent mutations only)."""
    deadline: float | None = None
    """Loop time after which a retried message fails with CallTimeout."""


class Outbox:
    """Sends calls, emits and mutations over the root's transport; queues them while offline.

    Args:
        transport: The link to send over.
        metrics: Where ``outbox_depth`` is kept.
        connected: Returns whether the link is up now.
        report: Where a failed mutation is reported (the root's ``errors``).
        limit: Most messages queued while offline; beyond it a call, emit or
            mutation raises :class:`~rxstore.protocol.errors.OutboxFull` and nothing is queued.
        call_timeout: Default seconds to wait for an acknowledgement.
        settle_after: Seconds after an acknowledged mutation at which its
            optimistic rows are dropped if no change of it has arrived.

    Example:
        ``RootStore(url, outbox_limit=100)`` builds ``root.outbox`` with
        ``limit=100``; ``await root.call("ping")`` is ``await root.outbox.call("ping")``.
    """

    def __init__(
        self,
        transport: Transport,
        metrics: Metrics,
        *,
        connected: Callable[[], bool],
        report: Callable[[RxStoreError], None],
        limit: int = 1000,
        call_timeout: float = 10.0,
        settle_after: float = 5.0,
    ) -> None:
        self.limit = limit
        self.call_timeout = call_timeout
        self.settle_after = settle_after
        self._transport = transport
        self._metrics = metrics
        self._connected = connected
        self._report = report
        self._queue: deque[_Outgoing] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._settle_timers: dict[tuple[TableStore[Any], str], asyncio.TimerHandle] = {}
        self.journal: Journal | None = None
        """Where accepted mutations are kept on disk until settled (``RootStore(persist=...)``)."""

    def __len__(self) -> int:
        """The number of messages waiting to be sent."""
        return len(self._queue)

    # -- sending ---------------------------------------------------------------

    async def call(self, event: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Send ``event`` and return the acknowledgement (:meth:`rxstore.client.root.RootStore.call`).

        Raises:
            OutboxFull: Offline and the outbox is full; nothing was queued.
            CallTimeout: No acknowledgement in time.
            NotConnected: The outbox was closed before the call was sent.
        """
        timeout = self.call_timeout if timeout is None else timeout
        if self._connected() and not self._queue:
            try:
                return await self._transport.call(event, data, timeout=timeout)
            except NotConnected:
                pass  # not sent: the link went down first; queue it
        return await self._enqueue(event, data, timeout)

    async def mutate(
        self,
        name: str,
        args: Any = None,
        *,
        optimistic: Mapping[TableStore[Any], Mapping[Any, Any]] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run the gateway mutation ``name`` exactly once (:meth:`rxstore.client.root.RootStore.mutate`).

        Raises:
            CallRejected: The gateway refused it.
            CallTimeout: Not acknowledged within ``timeout``, retries included.
            OutboxFull: Offline and the outbox is full.
        """
        return await self.submit(name, args, optimistic=optimistic, timeout=timeout).result

    def submit(
        self,
        name: str,
        args: Any = None,
        *,
        optimistic: Mapping[TableStore[Any], Mapping[Any, Any]] | None = None,
        timeout: float | None = None,
        mutation_id: str | None = None,
    ) -> PendingMutation:
        """Accept the mutation ``name`` into the outbox now; its result comes later (:meth:`mutate`).

        With a journal (``RootStore(persist=...)``) it is written to disk at once:
        ``stored`` is done then. ``mutation_id`` resends one recovered from disk (not written again).

        Raises:
            OutboxFull: Offline and the outbox is full (nothing accepted).
        """
        loop = asyncio.get_running_loop()
        mutation = mutation_id or uuid.uuid4().hex
        stores = list((optimistic or {}).items())
        for store, rows in stores:
            store.add_pending(mutation, rows)
        timeout = self.call_timeout if timeout is None else timeout
        payload = {"id": mutation, "name": name, "args": args}
        try:
            sent = self._enqueue(MUTATE, payload, timeout, retry=True)
        except RxStoreError as exc:
            for store, _ in stores:
                store.drop_pending(mutation)
            self._report(exc)
            raise
        journal = self.journal
        if journal is None or mutation_id is not None:
            stored: asyncio.Future[None] = loop.create_future()
            stored.set_result(None)
        else:
            stored = journal.journal_add((mutation, name, args, _wire_rows(stores), timeout))
        result = loop.create_task(self._settle_mutation(mutation, name, stores, sent))
        return PendingMutation(mutation, name, args, stored, result)

    async def _settle_mutation(
        self,
        mutation: str,
        name: str,
        stores: list[tuple[TableStore[Any], Mapping[Any, Any]]],
        sent: asyncio.Future[Any],
    ) -> Any:
        """Await the acknowledgement; roll back or settle the optimistic rows; forget it on disk."""
        try:
            ack = accepted(await sent, f"mutation {name!r}")
        except BaseException as exc:
            for store, _ in stores:
                store.drop_pending(mutation)
            if isinstance(exc, RxStoreError):
                self._report(exc)
            if self.journal is not None and not isinstance(exc, NotConnected | asyncio.CancelledError):
                self.journal.journal_remove(mutation)  # refused or timed out: it will not be sent again
            raise
        if self.journal is not None:
            self.journal.journal_remove(mutation)
        if stores:
            # The mutation's changes normally settle the rows; if it wrote none, stop showing them.
            loop = asyncio.get_running_loop()
            for store, _ in stores:
                handle = loop.call_later(self.settle_after, self._settle, store, mutation)
                self._settle_timers[(store, mutation)] = handle
        return ack.get("result")

    async def broadcast(self, topic: str, event: str, data: Any = None) -> None:
        """Send ``event`` to the other clients of ``topic`` (:meth:`rxstore.client.root.RootStore.broadcast`).

        Raises:
            CallRejected: Not a subscribed topic, or a reserved event name.
        """
        accepted(await self.call(BROADCAST, {"topic": topic, "event": event, "data": data}), f"{event!r}")

    async def emit(self, event: str, data: Any = None) -> None:
        """Send ``event`` without waiting for an acknowledgement (queued while offline).

        Raises:
            OutboxFull: Offline and the outbox is full; nothing was queued.
        """
        if self._connected() and not self._queue:
            try:
                await self._transport.emit(event, data)
                return
            except NotConnected:
                pass
        future = self._enqueue(event, data, 0.0)
        future.add_done_callback(consume_exception)

    # -- driven by the root ----------------------------------------------------

    def resume(self) -> None:
        """Start sending what is queued, unless the link is down or a flush is under way."""
        if self._queue and self._connected() and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="rxstore-outbox")

    async def close(self) -> None:
        """Stop sending and settling; what is still queued fails with ``NotConnected``."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            await cancel_and_wait(flusher)  # a lost cancellation would leave it sending after the close
            with contextlib.suppress(asyncio.CancelledError, RxStoreError):
                flusher.result()
        for handle in self._settle_timers.values():
            handle.cancel()
        self._settle_timers.clear()
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(NotConnected("the root store was torn down"))
        self._metrics.outbox_depth = 0

    # -- the queue -------------------------------------------------------------

    def _enqueue(self, event: str, data: Any, timeout: float, *, retry: bool = False) -> asyncio.Future[Any]:
        """Append a message to the queue and start flushing it if the link is up."""
        if len(self._queue) >= self.limit:
            raise OutboxFull(
                f"outbox holds {self.limit} messages; {event!r} was not queued "
                "(raise outbox_limit or wait for the connection)"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + timeout if retry else None
        if retry:  # the whole mutation has ``timeout``, also while offline for good
            timer = loop.call_later(timeout, _time_out, future, event)
            future.add_done_callback(lambda _: timer.cancel())
        self._queue.append(_Outgoing(event, data, future, timeout, retry, deadline))
        self._metrics.outbox_depth = len(self._queue)
        self.resume()
        return future

    async def _flush(self) -> None:
        """Send what was queued, in order; stop (keeping the rest) if the link drops."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue and self._connected():
            item = queue[0]
            if item.future.done():  # cancelled by its caller, or timed out while queued
                queue.popleft()
                continue
            timeout = item.timeout
            if item.deadline is not None:
                timeout = item.deadline - loop.time()
                if timeout <= 0:
                    queue.popleft()
                    item.future.set_exception(CallTimeout(f"{item.event!r} not acknowledged in time"))
                    continue
            try:
                result = await self._send(item, timeout)
            except NotConnected:
                return
            except CallTimeout as exc:
                if item.retry and loop.time() < (item.deadline or 0):
                    if not self._connected():
                        return  # resent with the same id after the reconnect
                    continue
                _settle_future(queue.popleft(), exc)
            except RxStoreError as exc:
                _settle_future(queue.popleft(), exc)
            else:
                if item.retry and _unavailable(result):  # the database takes no writes now: resend it
                    pause = min(_retry_after(result), (item.deadline or 0) - loop.time())
                    if pause > 0:  # later items wait behind it: mutations apply in the order made
                        await asyncio.sleep(pause)
                        continue
                _settle_future(queue.popleft(), None, result)
            self._metrics.outbox_depth = len(queue)

    async def _send(self, item: _Outgoing, timeout: float) -> Any:
        """Send one message: a call awaits its acknowledgement, an emit does not."""
        if item.timeout > 0:
            return await self._transport.call(item.event, item.data, timeout=timeout)
        await self._transport.emit(item.event, item.data)
        return None

    def _settle(self, store: TableStore[Any], mutation: str) -> None:
        self._settle_timers.pop((store, mutation), None)
        store.drop_pending(mutation)


def accepted(ack: Any, what: str) -> Mapping[str, Any]:
    """Return a positive acknowledgement, or raise the rejection it carries.

    Raises:
        CallRejected: ``{"ok": false, "error": code, "message": ...}`` (or no proper ack).

    Example:
        >>> accepted({"ok": True, "result": 1}, "mutation 'like'")["result"]
        1
        >>> accepted({"ok": False, "error": "forbidden"}, "mutation 'like'")
        Traceback (most recent call last):
        rxstore.protocol.errors.CallRejected: mutation 'like' rejected: forbidden
    """
    if isinstance(ack, Mapping) and ack.get("ok"):
        return ack
    code = str(ack.get("error", "rejected")) if isinstance(ack, Mapping) else "rejected"
    message = ack.get("message") if isinstance(ack, Mapping) else None
    raise CallRejected(code, f"{what} rejected: {message or code}")


def _unavailable(ack: Any) -> bool:
    """The gateway could not write now (``{"ok": false, "error": "unavailable"}``): resend later."""
    return isinstance(ack, Mapping) and ack.get("error") == "unavailable" and not ack.get("ok")


def _retry_after(ack: Mapping[str, Any]) -> float:
    """The gateway's ``retry_after`` (seconds), within [0.05, 10]; 1 when it gives none or nonsense."""
    value = ack.get("retry_after")
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < float("inf"):
        return 1.0
    return min(max(float(value), 0.05), 10.0)


def consume_exception(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (a done callback for a result nobody awaits)."""
    if not future.cancelled():
        future.exception()


def _settle_future(item: _Outgoing, error: RxStoreError | None, result: Any = None) -> None:
    if item.future.done():
        return
    if error is not None:
        item.future.set_exception(error)
    else:
        item.future.set_result(result)


def _wire_rows(stores: list[tuple[TableStore[Any], Mapping[Any, Any]]]) -> dict[str, Any]:
    """Optimistic rows as JSON: store event -> [[key, row or None], ...] (records unstructured)."""
    return {
        store.event: [[key, None if row is None else converter.unstructure(row)] for key, row in rows.items()]
        for store, rows in stores
    }


def _time_out(future: asyncio.Future[Any], event: str) -> None:
    if not future.done():
        future.set_exception(CallTimeout(f"{event!r} not acknowledged in time"))
