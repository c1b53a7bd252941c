"""The root store's connection loop: connect, reconnect with backoff, give up.

:class:`Connector` is the part of :class:`~rxstore.client.root.RootStore` that keeps
the one link to the gateway up: it holds the transport, the backoff, the
link's state (``root.connection``) and the task running the loop. The rules
the loop decides with (tokens, which failures are fatal, the error it stops
with) are in :mod:`rxstore.client.connection`. It logs as ``rxstore.client.root``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from reactivex import Observable
from reactivex.subject import BehaviorSubject, Subject

from rxstore.client.connection import (
    Backoff,
    ConnectionState,
    ConnectionStatus,
    Retry,
    Token,
    behind,
    checked_token,
    dropped_at_once,
    gave_up,
    is_fatal,
    reason_of,
    resolve_token,
)
from rxstore.client.metrics import Metrics
from rxstore.client.outbox import consume_exception
from rxstore.client.router import Router
from rxstore.client.subscriptions import Subscriptions
from rxstore.client.tasks import cancel_and_wait
from rxstore.client.transport import Transport
from rxstore.protocol.errors import (
    ConnectError,
    ConnectionRefused,
    RxStoreError,
    TokenProviderError,
    TransportError,
)
from rxstore.stores.status import SyncState
from rxstore.stores.table import TableStore

__all__ = ["Connector"]

log = logging.getLogger("rxstore.root")


class Connector:
    """Keeps the root store's one link to the gateway up, and says how it is.

    Args:
        urls: Gateway URLs to fail over between (tried in turn).
        transport: The link (its callbacks are bound by the root store).
        router: Where frames go; its cursor (with its ``ts``) and epoch are sent on every connect.
        metrics: The root store's counters (frames, reconnects).
        tables: The table stores whose sync state follows the link (a list kept up to date).
        follows: What the stores follow: the auth payload's ``topics`` and
            ``subscriptions``, told when a connection is accepted.
        token: A token string, an async callable returning one, or ``None``.
        backoff: Reconnection delays.
        connect_timeout: Seconds a waiting :meth:`start` tries to make the
            first connection; ``None`` retries for ever (see
            :class:`~rxstore.client.root.RootStore`).
        report: Where refusals, provider failures and giving up are reported.
        resume: Called once a connection is up (the outbox sends what waits).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        transport: Transport,
        router: Router,
        metrics: Metrics,
        tables: Sequence[TableStore[Any]],
        follows: Subscriptions,
        token: Token,
        backoff: Backoff,
        connect_timeout: float | None,
        report: Callable[[RxStoreError], None],
        resume: Callable[[], None],
    ) -> None:
        self.urls: tuple[str, ...] = tuple(urls)
        self.transport = transport
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.token: Token = checked_token(token)
        """What :meth:`start`'s attempts authenticate with (checked by ``checked_token``)."""
        self._router = router
        self._metrics = metrics
        self._tables = tables
        self._follows = follows
        self._report = report
        self._resume = resume
        self._connection: BehaviorSubject[ConnectionState] = BehaviorSubject(
            ConnectionState(ConnectionStatus.IDLE)
        )
        self._retries: Subject[Retry] = Subject()
        self._url: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._rng = random.Random()
        self._url_index = 0

    # -- state -----------------------------------------------------------------

    @property
    def connection(self) -> Observable[ConnectionState]:
        """The link's state, on each change of status; a new subscriber gets the current state first."""
        return self._connection

    @property
    def retries(self) -> Observable[Retry]:
        """Each failed attempt that will be retried, with the delay before the next (hot)."""
        return self._retries

    @property
    def state(self) -> ConnectionState:
        """The link's current state, synchronously."""
        return self._connection.value

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task running the loop; ``None`` before :meth:`start` and after :meth:`stop`."""
        return self._task

    @property
    def running(self) -> bool:
        """Whether the connection loop runs: ``False`` before start, after stop, or once it gave up."""
        return self._task is not None and not self._task.done()

    # -- lifecycle -------------------------------------------------------------

    async def start(self, *, wait: bool = True) -> None:
        """Start the loop unless it runs; with ``wait``, return once connected.

        Raises:
            RxStoreError: With ``wait``, the loop gave up (or the first
                connection took over ``connect_timeout``): see
                :meth:`rxstore.client.root.RootStore.setup_realtime`.
        """
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        first: asyncio.Future[None] = loop.create_future()
        timeout = self.connect_timeout if wait else None
        deadline = None if timeout is None else loop.time() + timeout
        self._task = asyncio.create_task(self._run(first, deadline, waited=wait), name="rxstore-root")
        if wait:
            await first
        else:
            first.add_done_callback(consume_exception)  # giving up shows on connection and errors

    async def stop(self) -> None:
        """Cancel the loop and wait for it to end (the transport stays as it is).

        The loop is cancelled again until it ends (:func:`~rxstore.client.tasks.cancel_and_wait`):
        else it could go on reconnecting after the teardown, which would wait for it forever.
        """
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)
        with contextlib.suppress(asyncio.CancelledError, RxStoreError):
            task.result()

    def closed(self) -> None:
        """Mark the link closed (unless it never started) and the tables stale."""
        if self._connection.value.status is not ConnectionStatus.IDLE:
            self._set_state(ConnectionState(ConnectionStatus.DISCONNECTED, reason="closed"))
        self.set_sync(SyncState.STALE)

    # -- the loop --------------------------------------------------------------

    def auth_payload(self, token: str | None) -> dict[str, Any]:
        """Return the auth payload sent on every (re)connect (see docs/protocol.md)."""
        router = self._router
        fields = self._follows.auth_fields(router.cursor)
        cursor = router.cursor
        ts = router.cursor_ts if cursor is not None else None
        return {"token": token, **fields, "cursor": cursor, "cursor_ts": ts, "epoch": router.epoch}

    async def _attempt(self, url: str) -> RxStoreError | None:
        """Try to connect to ``url`` once; return why it failed, or ``None`` once connected."""
        try:
            token = await resolve_token(self.token)
        except TokenProviderError as exc:
            return exc
        # A new session begins now, not when connect() returns: its first frames (a snapshot's
        # chunks, rxstore:live) may be handled before that, and must not be thrown away then.
        self._router.link_up()
        try:
            await self.transport.connect(url, self.auth_payload(token))
        except ConnectionRefused as exc:
            if exc.reason == "unavailable":
                self._url_index += 1  # that node is going away: try the next one
            return exc
        except (TimeoutError, TransportError, OSError) as exc:
            self._url_index += 1
            if isinstance(exc, TransportError):
                return exc
            return behind(TransportError(f"cannot connect to {url}: {exc}"), exc)
        return None

    async def _run(
        self, first: asyncio.Future[None], deadline: float | None = None, *, waited: bool = False
    ) -> None:
        """Connect, and reconnect whenever the link is lost, until cancelled or given up.

        ``deadline`` (loop time) bounds the first connection: see ``connect_timeout``.
        ``waited``: a caller awaits ``first``, so what ends the first connection is
        raised to it, and logged at INFO only (the user is told once).
        """
        failures = 0
        ever_connected = False
        loud = False  # the run of failures was logged at WARNING: so is its end
        try:
            while True:
                url = self.urls[self._url_index % len(self.urls)]
                if failures == 0:
                    status = ConnectionStatus.RECONNECTING if ever_connected else ConnectionStatus.CONNECTING
                    self._set_state(ConnectionState(status, url=url))
                loop = asyncio.get_running_loop()
                self._lost = loop.create_future()
                frames = self._metrics.frames  # frames may arrive while connect() returns
                error = await self._attempt(url)
                raised = waited and not first.done()  # a waiting setup_realtime() raises what ends this
                if error is not None:
                    failures += 1
                    if is_fatal(error, renewable=callable(self.token)):
                        self._give_up(error, url, first, raised=raised)
                        return
                    if self.backoff.gives_up(failures):
                        final = gave_up(error, failures)
                        self._give_up(final, url, first, reason=reason_of(error), raised=raised)
                        return
                    left = None if ever_connected or deadline is None else deadline - loop.time()
                    retry_after = error.retry_after if isinstance(error, ConnectionRefused) else None
                    if left is not None and (left <= 0 or (retry_after is not None and left < retry_after)):
                        # Out of time, or the gateway asked us to stay away longer than is left.
                        timed_out = self._timed_out(error, url, failures)
                        self._give_up(timed_out, url, first, reason="connect_timeout", raised=raised)
                        return
                    if not isinstance(error, TransportError):
                        self._report(error)  # transport failures are reported only on giving up
                    # A waiting first connection with a deadline ends in one error; else the
                    # first failure of a run is a WARNING, the others INFO (root.retries has each).
                    loud = loud or (failures == 1 and not (raised and deadline is not None))
                    await self._wait_before(
                        failures,
                        url,
                        reason_of(error),
                        left,
                        retry_after=retry_after,
                        loud=failures == 1 and loud,
                    )
                    continue
                if ever_connected:
                    self._metrics.reconnects += 1
                ever_connected = True
                up_since = loop.time()
                if loud:
                    log.warning("[RootStore] connected to %s after %d failed attempts", url, failures)
                    loud = False
                self.link_up(url)
                if not first.done():
                    first.set_result(None)
                self._resume()
                reason = await self._lost
                log.info("[RootStore] connection to %s lost: %s", url, reason)
                uptime = loop.time() - up_since
                if self._metrics.frames != frames or uptime >= self.backoff.stable_after:
                    failures = 0
                    await asyncio.sleep(self.backoff.pause(self._rng))
                    continue
                # Accepted, then dropped before a single frame (a server refusing in
                # handleConnection): a failed attempt, or this loop would never end.
                failures += 1
                error = dropped_at_once(url, reason, uptime)
                if self.backoff.gives_up(failures):
                    self._give_up(gave_up(error, failures), url, first, reason=reason_of(error))
                    return
                if not isinstance(error, TransportError):
                    self._report(error)
                loud = loud or failures == 1
                await self._wait_before(failures, url, reason_of(error), loud=failures == 1)
        except asyncio.CancelledError:
            if not first.done():
                first.cancel()
            raise
        except Exception as exc:  # a bug, or a raising subscriber: fail setup_realtime(), never hang it
            log.exception("[RootStore] the connection loop failed")
            if not first.done():
                error = TransportError(f"the connection loop failed: {exc!r}")
                error.__cause__ = exc
                first.set_exception(error)

    def _give_up(
        self,
        error: RxStoreError,
        url: str,
        first: asyncio.Future[None],
        *,
        reason: str | None = None,
        raised: bool = False,
    ) -> None:
        """Stop the connection loop: report ``error``, mark the link down, fail a waiting setup.

        ``raised``: a waiting ``setup_realtime()`` raises ``error``, so it is logged at INFO only.
        """
        log.log(
            logging.INFO if raised else logging.WARNING, "[RootStore] %s: %.200s; not retrying", url, error
        )
        self._report(error)
        self._set_state(
            ConnectionState(ConnectionStatus.DISCONNECTED, reason=reason or reason_of(error), url=url)
        )
        self.set_sync(SyncState.STALE)
        if not first.done():
            first.set_exception(error)

    def _timed_out(self, error: RxStoreError, url: str, failures: int) -> ConnectError:
        """The error of a first connection that took longer than ``connect_timeout`` (``error`` behind it)."""
        timeout = self.connect_timeout or 0.0
        return behind(ConnectError(url, attempts=failures, timeout=timeout, cause=error), error)

    async def _wait_before(
        self,
        attempt: int,
        url: str,
        reason: str,
        left: float | None = None,
        *,
        retry_after: float | None = None,
        loud: bool = False,
    ) -> None:
        """Wait the backoff delay of ``attempt``, at most ``left`` seconds (the first connection's).

        A gateway's ``retry_after`` (seconds) is honoured: see :meth:`Backoff.after`.
        The attempt goes to :attr:`retries`, and to the log: at WARNING when ``loud``, else INFO.
        """
        if retry_after is None:
            delay = self.backoff.delay(attempt, self._rng)
        else:
            delay = self.backoff.after(retry_after, attempt, self._rng)
        if left is not None:
            delay = min(delay, left)
        self._set_state(ConnectionState(ConnectionStatus.RECONNECTING, reason=reason, url=url))
        self._retries.on_next(Retry(attempt, delay, reason, url))
        log.log(
            logging.WARNING if loud else logging.INFO,
            "[RootStore] attempt %d to %s failed (%.200s); retrying in %.2f s",
            attempt,
            url,
            reason,
            delay,
        )
        await asyncio.sleep(delay)

    # -- the link's transitions ------------------------------------------------

    def link_up(self, url: str) -> None:
        """Mark the link to ``url`` up: replay from the cursor, tables replaying (unless live already).

        The router's session began before the connect (:meth:`Router.link_up
        <rxstore.client.router.Router.link_up>`): frames may have come first.
        """
        self._url = url
        log.info("[RootStore] connected to %s (cursor=%s)", url, self._router.cursor)
        self._set_state(ConnectionState(ConnectionStatus.CONNECTED, url=url))
        if not self._router.live:  # its rxstore:live may have come before connect() returned
            self.set_sync(SyncState.REPLAYING)
        self._follows.link_up()  # the stores it did not follow yet are subscribed now

    def link_refused(self, exc: ConnectionRefused, url: str) -> None:
        """Mark the link refused for good: report ``exc``, disconnected, tables stale."""
        log.warning("[RootStore] %s refused the connection: %s", url, exc.reason)
        self._report(exc)
        self._set_state(ConnectionState(ConnectionStatus.DISCONNECTED, reason=exc.reason, url=url))
        self.set_sync(SyncState.STALE)

    def link_lost(self, reason: str) -> None:
        """Mark the established link lost: reconnecting, tables stale."""
        if self._router.closing is not None:
            reason = self._router.closing  # e.g. token_expired: the gateway said why it ended the session
        lost = self._lost
        if lost is not None and not lost.done():
            lost.set_result(reason)
        self._set_state(ConnectionState(ConnectionStatus.RECONNECTING, reason=reason, url=self._url))
        self.set_sync(SyncState.STALE)

    def set_sync(self, state: SyncState) -> None:
        """Set the sync state of every table store."""
        for store in self._tables:
            store.set_sync(state)

    def _set_state(self, state: ConnectionState) -> None:
        """Emit ``state`` on :attr:`connection` if its status is new (a retry is no new state)."""
        if state.status is not self._connection.value.status:
            self._connection.on_next(state)
