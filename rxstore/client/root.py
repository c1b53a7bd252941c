"""The root store: one connection, every event as a stream, stores subscribed to it.

The seed's ``RootStore`` owned the socket and handed it to each domain store.
Here the root owns one transport whose frames go to a
:class:`~rxstore.client.router.Router`: it turns them into
:class:`~rxstore.protocol.events.Event` values on the hot stream :attr:`RootStore.events`,
and each domain store subscribes to the keyed view of its names
(:meth:`RootStore.events_named`), so the cost per event does not grow with
the number of stores.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from reactivex import Observable
from reactivex.abc import SchedulerBase
from reactivex.subject import Subject

from rxstore.client.connection import (
    Backoff,
    ConnectionState,
    ConnectionStatus,
    Retry,
    Token,
    TokenProvider,
    checked_token,
)
from rxstore.client.connector import Connector
from rxstore.client.live import root_live
from rxstore.client.metrics import Metrics
from rxstore.client.outbox import Outbox, consume_exception
from rxstore.client.presence import PresenceJoins
from rxstore.client.recorder import Recorder, RecordLimits
from rxstore.client.recorder.limits import MAX_BYTES, MAX_FRAMES, MAX_SECONDS
from rxstore.client.router import Router
from rxstore.client.subscriptions import Subscriptions, attach_to
from rxstore.client.transport import SocketIOTransport, Transport
from rxstore.operators.keyed import Frame
from rxstore.persist.batch import Outgoing
from rxstore.persist.mutation import PendingMutation
from rxstore.persist.options import Persist
from rxstore.persist.persister import Persister
from rxstore.protocol.errors import ConnectionRefused, OutboxFull, RxStoreError
from rxstore.protocol.events import Event
from rxstore.stores.domain import RealtimeStore
from rxstore.stores.table import TableStore

__all__ = ["RootStore", "Token", "TokenProvider"]

S = TypeVar("S", bound=RealtimeStore)


class RootStore:
    """Owns the one connection to the gateway and feeds the domain stores.

    Args:
        url: Gateway URL, or several to fail over between (tried in turn).
        stores: The domain stores (any :class:`~rxstore.stores.domain.RealtimeStore`).
        token: A token string, or an async callable returning one (called
            again before every reconnection), or ``None``.
        topics: Topics to subscribe besides the tables of the ``TableStore`` s.
        transport: The link to use; python-socketio over websocket by default.
        backoff: Reconnection delays.
        outbox_limit: Most messages queued while offline; beyond it
            :meth:`call` raises :class:`~rxstore.protocol.errors.OutboxFull`.
        call_timeout: Default seconds to wait for a call's acknowledgement.
        settle_after: Seconds after an acknowledged mutation at which its
            optimistic rows are dropped if no change of it has arrived.
        connect_timeout: Seconds a waiting :meth:`setup_realtime` (and
            ``async with``) keeps trying to make the *first* connection
            before it stops and raises :class:`~rxstore.protocol.errors.ConnectError`
            (10 s: a wrong URL or a gateway that is down fails fast); ``None``
            retries for ever, per ``backoff``, as a long-lived service that
            waits for its gateway wants. An attempt under way when the time
            runs out finishes first (the transport bounds one attempt:
            ``SocketIOTransport(connect_timeout=5.0)``). Once connected, a lost
            connection is retried per ``backoff`` whatever this is; with
            ``setup_realtime(wait=False)`` it does not apply either.
        persist: A state file (a path, or :class:`~rxstore.persist.Persist` with its
            bounds): the stores are filled from it before the first connect
            (:meth:`loaded`), the root resumes from its cursor, and mutations
            accepted offline survive a restart (see docs/offline.md).

    Example:
        ``async with RootStore("http://localhost:8080", stores=[posts], token=t) as root:``
        connects, subscribes ``posts``, and tears everything down on exit.
    """

    def __init__(
        self,
        url: str | Sequence[str] = "http://127.0.0.1:8080",
        *,
        stores: Iterable[RealtimeStore] = (),
        token: Token = None,
        topics: Iterable[str] = (),
        transport: Transport | None = None,
        backoff: Backoff | None = None,
        outbox_limit: int = 1000,
        call_timeout: float = 10.0,
        settle_after: float = 5.0,
        connect_timeout: float | None = 10.0,
        persist: str | os.PathLike[str] | Persist | None = None,
    ) -> None:
        urls: tuple[str, ...] = (url,) if isinstance(url, str) else tuple(url)
        if not urls:
            raise ValueError("RootStore needs at least one gateway URL")
        if connect_timeout is not None and not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0 seconds or None, got {connect_timeout!r}")
        self.metrics = Metrics()
        transport = transport or SocketIOTransport()
        self._subs = Subscriptions(
            tuple(stores),
            topics,
            live=lambda: self._router.live,
            cursor=lambda: self._router.cursor,
            transport=transport,
            connected=lambda: self._connector.state.connected,
            report=self._report,
            call_timeout=call_timeout,
        )  # refuses two stores with one event name
        self._tables = self._subs.tables
        self._router = Router(metrics=self.metrics, report=self._report, tables=self._subs.live_tables)
        self._connector = Connector(
            urls,
            transport=transport,
            router=self._router,
            metrics=self.metrics,
            tables=self._tables,
            follows=self._subs,
            token=token,
            backoff=backoff or Backoff(),
            connect_timeout=connect_timeout,
            report=self._report,
            resume=lambda: self.outbox.resume(),
        )  # checks the token first: a bad one is a TypeError, and no transport is bound
        self._transport: Transport = self._connector.transport
        self._transport.bind(self._router.on_frame, self.link_lost)
        self._errors: Subject[RxStoreError] = Subject()
        self.outbox = Outbox(
            self._transport,
            self.metrics,
            connected=lambda: self._connector.state.connected,
            report=self._report,
            limit=outbox_limit,
            call_timeout=call_timeout,
            settle_after=settle_after,
        )
        """Calls, emits and mutations on their way (``call``, ``mutate``, ... delegate to it)."""
        self.persist: Persister | None = None
        """The state file's writer and loader (``persist=``), with its ``metrics``; ``None`` without."""
        if persist is not None:
            options = persist if isinstance(persist, Persist) else Persist(persist)
            self.persist = Persister(
                options, stores=lambda: self.stores, position=self._router, report=self._report
            )
            self.outbox.journal = self.persist
        self._presence = PresenceJoins(
            self._transport,
            stores=lambda: self.stores,
            connected=lambda: self._connector.state.connected,
            report=self._report,
            call_timeout=call_timeout,
        )
        self._connector.connection.subscribe(self._presence_follows)
        self.recovered: tuple[PendingMutation, ...] = ()
        """The mutations recovered from the state file at start, sent again in order; await their results."""
        self._recovering: bool = False
        self._persisting: Any = None

    # -- the connection's settings ---------------------------------------------

    @property
    def urls(self) -> tuple[str, ...]:
        """The gateway URLs, tried in turn (may be replaced between connections)."""
        return self._connector.urls

    @urls.setter
    def urls(self, urls: tuple[str, ...]) -> None:
        self._connector.urls = urls

    @property
    def backoff(self) -> Backoff:
        """Reconnection delays."""
        return self._connector.backoff

    @backoff.setter
    def backoff(self, backoff: Backoff) -> None:
        self._connector.backoff = backoff

    @property
    def connect_timeout(self) -> float | None:
        """Seconds a waiting :meth:`setup_realtime` tries to make the first connection."""
        return self._connector.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, timeout: float | None) -> None:
        self._connector.connect_timeout = timeout

    @property
    def stores(self) -> tuple[RealtimeStore, ...]:
        """The domain stores: those given to the constructor, then those :meth:`add` -ed."""
        return self._subs.stores

    @property
    def topics(self) -> tuple[str, ...]:
        """Whole tables followed (the auth payload's ``topics``): whole-table stores', then extra."""
        return self._subs.topics()

    # -- observables -----------------------------------------------------------

    @property
    def events(self) -> Observable[Event]:
        """Every incoming event, hot: a late subscriber sees only later events.

        ``events.pipe(rxstore.operators.named(...))`` is :meth:`events_named`.
        """
        return self._router.events

    def events_named(self, *names: str) -> Observable[Frame]:
        """The keyed view of :attr:`events`: the events named ``names``, one frame at a time.

        O(1) per event whatever the number of stores (one dict from name to
        views), and one notification per incoming frame: a batch of 100
        changes is one tuple of 100 events. Fold it with
        :func:`rxstore.operators.safe_scan` to write a store as a pipeline.
        """
        return self._router.events.named(*names)

    @property
    def router(self) -> Router:
        """Where frames enter (``root.router.on_frame(name, data)``: the transport's callback)."""
        return self._router

    @property
    def cursor(self) -> int | None:
        """Seq of the last change received; sent on every reconnect."""
        return self._router.cursor

    @cursor.setter
    def cursor(self, seq: int | None) -> None:
        self._router.cursor = seq
        self._router.cursor_ts = None  # not known for a cursor set by hand: set :attr:`cursor_ts` after

    @property
    def cursor_ts(self) -> float | None:
        """The commit time (``ts``) of the change at the cursor; sent with it on every reconnect.

        The gateway checks it against its log in one read: a log that holds another
        change at the cursor (a restored backup, another database) resets the root and
        sends snapshots. ``None`` (unknown): the cursor is resumed without the check.
        """
        return self._router.cursor_ts

    @cursor_ts.setter
    def cursor_ts(self, ts: float | None) -> None:
        self._router.cursor_ts = ts

    @property
    def epoch(self) -> str | None:
        """The change log's epoch the cursor belongs to (from ``rxstore:live``); ``None`` until known."""
        return self._router.epoch

    @epoch.setter
    def epoch(self, epoch: str | None) -> None:
        self._router.epoch = epoch

    @property
    def connection(self) -> Observable[ConnectionState]:
        """The link's state, on each change of status; a new subscriber gets the current state first.

        An outage is one ``reconnecting`` state however many attempts it takes
        (each is on :attr:`retries`)::

            idle -> connecting -> connected -> reconnecting -> connected -> ... -> disconnected
        """
        return self._connector.connection

    @property
    def retries(self) -> Observable[Retry]:
        """Each failed connection attempt that will be retried, with the delay before the next (hot).

        ``root.retries.subscribe(lambda r: print(f"attempt {r.attempt}: {r.reason}; next in {r.delay} s"))``
        """
        return self._connector.retries

    @property
    def connection_state(self) -> ConnectionState:
        """The link's current state, synchronously."""
        return self._connector.state

    @property
    def running(self) -> bool:
        """Whether the connection loop runs: ``False`` before setup, after teardown, or once it gave up."""
        return self._connector.running

    @property
    def errors(self) -> Observable[RxStoreError]:
        """Bad payloads, failing reducers, refusals: reported here, never raised into a store."""
        return self._errors

    # -- waiting until live ----------------------------------------------------

    def when_live(
        self, timeout: float | None = 30.0, *, scheduler: SchedulerBase | None = None
    ) -> Observable[None]:
        """Emit ``None`` once connected with every table store live, then complete.

        This is :meth:`live` as an observable: record it in a marble test (the
        timeout runs in virtual time), or subscribe to it in a UI.

        Args:
            timeout: Seconds to wait; ``None`` waits for ever.
            scheduler: Where the timeout runs; the subscriber's scheduler by default.

        Raises (on the observable):
            LiveTimeout: Not live in time; names each table store that was not
                live, its state, and the connection's state.
        """
        connector = self._connector
        return root_live(connector.connection, lambda: connector.state, self._tables, timeout, scheduler)

    async def live(self, timeout: float | None = 30.0) -> None:
        """Wait until connected with every table store live: snapshots applied, changes arriving.

        ``async with RootStore(...)`` returns as soon as the connection is up,
        while the tables are still replaying (0 rows on a first connect);
        after ``await root.live()`` every table store holds its whole table.
        Returns at once if that is already so.

        Raises:
            LiveTimeout: Not live within ``timeout`` seconds (also a
                ``TimeoutError``); the message names each store that was not
                live with its state (stale or replaying) and the connection's
                state and reason.

        Example:
            ``async with RootStore(url, stores=[posts], token=t) as root:
            await root.live(timeout=10); print(len(posts.value))``
        """
        await self.when_live(timeout)

    # -- the state file (persist=) ----------------------------------------------

    async def loaded(self) -> bool:
        """Fill the stores from the state file, once (before the first connect); whether it held a state.

        Works offline: ``await root.setup_realtime(wait=False); await root.loaded()``
        and the app runs on the rows from disk while the connection is retried
        behind. A table store says so: ``store.sync.from_disk`` until it is live.
        Mutations the file still holds are sent again, in order (:attr:`recovered`).
        Without ``persist=``, returns ``False`` at once.
        """
        persist = self.persist
        if persist is None:
            return False
        persist.open()  # again after a teardown
        outgoing = await persist.load()
        if not self._recovering:
            self._recovering = True
            self.recovered = tuple(m for m in map(self._resubmit, outgoing) if m is not None)
        return persist.restored

    def _resubmit(self, entry: Outgoing) -> PendingMutation | None:
        """Put a mutation recovered from disk back into the outbox, with its id and optimistic rows."""
        mutation, name, args, rows, timeout = entry
        tables = {store.event: store for store in self._tables}
        optimistic = {
            tables[event]: {key: row for key, row in pairs}
            for event, pairs in rows.items()
            if event in tables
        }
        try:
            pending = self.outbox.submit(
                name, args, optimistic=optimistic, timeout=timeout, mutation_id=mutation
            )
        except OutboxFull:
            return None  # reported; it stays on disk for the next start
        pending.result.add_done_callback(consume_exception)
        return pending

    async def persisted(self) -> None:
        """Return once every change and mutation accepted so far is in the state file.

        Raises:
            PersistError: Writing stopped (a failed write, the size bound); see ``root.persist.failed``.
        """
        if self.persist is not None:
            await self.persist.persisted()

    def submit(
        self,
        name: str,
        args: Any = None,
        *,
        optimistic: Mapping[TableStore[Any], Mapping[Any, Any]] | None = None,
        timeout: float | None = None,
    ) -> PendingMutation:
        """Accept the mutation ``name`` now (as :meth:`mutate` does), and return it at once.

        ``await m.stored`` returns once it is on disk (with ``persist=``): from then
        on it survives a ``kill -9``, and the next start sends it again with its id
        (applied once). ``await m`` is its result.

        Raises:
            OutboxFull: Offline and the outbox is full; nothing was accepted.
        """
        return self.outbox.submit(name, args, optimistic=optimistic, timeout=timeout)

    # -- lifecycle (the seed's names) ------------------------------------------

    def setup_domain_event_handlers(self) -> None:
        """Connect every store to the event flow, once (calling it again does nothing).

        Every store gets the hot :attr:`events` stream
        (``setup_realtime_handlers``): a domain store subscribes to the keyed
        view of its names, any other :class:`~rxstore.stores.domain.RealtimeStore`
        does what it likes; a domain store's errors also go to :attr:`errors`.
        """
        self._subs.attach_all(attach_to(self._router.events, self._report))
        if self.persist is not None and self._persisting is None:
            self._persisting = self.persist.attach(self._router.events)

    async def add(self, store: S) -> S:
        """Add ``store`` and return it: ``orders = await root.add(OrderStore(where={"region": "eu"}))``.

        A table store is subscribed: on a connected root this returns after the
        ack (its snapshot applied), else on the next connect (see rxstore.client.subscriptions).

        Raises:
            SubsetError: Its event name is another store's, or the gateway refused it
                (``exc.code``); it is not added.
            CallTimeout: No acknowledgement in time (it stays, subscribed on the next connect).
        """
        await self._subs.add(store, attach_to(self._router.events, self._report))
        return store

    async def remove(self, store: RealtimeStore) -> None:
        """Detach ``store``, a table store after its unsubscription's ack; its state stays, STALE.

        Raises:
            SubsetError: The gateway refused the unsubscription (removed all the same).
            ValueError: ``store`` is not one of this root's stores.
        """
        await self._subs.remove(store)

    async def setup_realtime(self, token: Token = None, *, wait: bool = True) -> None:
        """Connect to the gateway and keep the connection up until teardown.

        Every failed attempt (unreachable gateway, a refusal that may pass,
        a token provider that raises) is logged at WARNING and retried after a
        backoff; refusals and provider failures also go to :attr:`errors`.
        After ``Backoff.max_attempts`` failed attempts in a row the root store
        stops: the state becomes disconnected and the last failure, as
        "gave up after N failed attempts: ...", goes to :attr:`errors`. With
        ``wait``, it also stops when the first connection is not made within
        ``connect_timeout`` seconds (whichever comes first); without, it keeps
        trying in the background (per ``backoff``).

        Returning means connected, not live: the tables may still be
        replaying; ``await root.live()`` waits for them.

        Args:
            token: Replaces the token given to the constructor.
            wait: Return only once connected (default), or at once.

        Raises:
            ConnectError: With ``wait``, no connection within ``connect_timeout``
                seconds (unreachable gateway, wrong URL, a refusal that may pass);
                names the URL and the last failure (the ``__cause__``).
            ConnectionRefused: With ``wait``, the gateway refused for good
                (``invalid_token``, ``forbidden_topic``, ``bad_request``), or
                refused ``max_attempts`` times in a row; see ``exc.reason``.
            TokenProviderError: With ``wait``, the token provider is not async,
                or raised ``max_attempts`` times in a row (the ``__cause__``).
            TransportError: With ``wait``, the gateway was unreachable
                ``max_attempts`` times in a row.
            TypeError: ``token`` is neither a string, a callable nor ``None``.
        """
        if token is not None:
            self._connector.token = checked_token(token)
        await self.loaded()
        self.setup_domain_event_handlers()
        await self._connector.start(wait=wait)

    async def teardown_realtime(self) -> None:
        """Close the connection and release every task and subscription.

        Calls still queued fail with :class:`~rxstore.protocol.errors.NotConnected`.
        The stores keep their state; :meth:`setup_realtime` may be called again.
        """
        await self._connector.stop()
        await self.outbox.close()
        await self._presence.close()
        self._presence.link_lost()
        await self._subs.close()
        await self._transport.disconnect()
        self._subs.detach_all()
        if self._persisting is not None:
            self._persisting.dispose()
            self._persisting = None
        if self.persist is not None:
            await self.persist.close()
        self._connector.closed()

    async def __aenter__(self) -> Self:
        await self.setup_realtime()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.teardown_realtime()

    # -- the link (the connector) ---------------------------------------------

    def auth_payload(self, token: str | None) -> dict[str, Any]:
        """Return the auth payload sent on every (re)connect (see docs/protocol.md)."""
        return self._connector.auth_payload(token)

    def link_up(self, url: str) -> None:
        """Mark the link to ``url`` up: replay from the cursor, tables replaying.

        Called by the connection loop once a connection is accepted, and by a
        harness that drives the link itself (``rxstore.testing.VirtualLink``).
        """
        self._connector.link_up(url)

    def link_refused(self, exc: ConnectionRefused, url: str) -> None:
        """Mark the link refused for good: report ``exc``, disconnected, tables stale.

        For a harness that drives the link itself (``rxstore.testing.VirtualLink``).
        """
        self._connector.link_refused(exc, url)

    def link_lost(self, reason: str) -> None:
        """Mark the established link lost (the transport's callback): reconnecting, tables stale."""
        self._connector.link_lost(reason)

    def _report(self, error: RxStoreError) -> None:
        self.metrics.errors += 1
        self._errors.on_next(error)

    # -- sending: each call goes through the outbox ---------------------------------

    async def call(self, event: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Send ``event`` and return the gateway's acknowledgement.

        While offline the call is queued (in order, up to ``outbox_limit``) and
        sent after the connection is back; ``timeout`` counts from the send. A
        call is sent at most once: if the link drops after the send and before
        the acknowledgement, it fails with :class:`~rxstore.protocol.errors.CallTimeout`
        (use :meth:`mutate` for operations that must be retried).

        Raises:
            OutboxFull: Offline and the outbox is full; nothing was queued.
            CallTimeout: No acknowledgement in time.
            NotConnected: The root store was torn down before the call was sent.
        """
        return await self.outbox.call(event, data, timeout=timeout)

    async def mutate(
        self,
        name: str,
        args: Any = None,
        *,
        optimistic: Mapping[TableStore[Any], Mapping[Any, Any]] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run the gateway mutation ``name`` exactly once, optionally showing its result at once.

        The mutation gets a fresh id and is resent with the same id until the
        gateway acknowledges it (after reconnects too), so a retry after a lost
        acknowledgement is applied once. ``optimistic`` rows (store -> key ->
        record, or ``None`` for a deletion) are shown at once on top of the
        confirmed state; the change coming back through the log replaces them,
        and a rejection or timeout rolls them back.

        Args:
            name: The mutation, as registered on the gateway (``gateway.mutation(name)``).
            args: Its arguments (JSON-able).
            optimistic: Rows to show until the mutation's changes arrive.
            timeout: Seconds for the whole mutation, retries included.

        Returns:
            The mutation's result, as returned by the gateway handler.

        Raises:
            CallRejected: The gateway refused it (``invalid_payload``, ``forbidden``, ...).
            CallTimeout: Not acknowledged within ``timeout``.
            OutboxFull: Offline and the outbox is full.

        Example:
            ``await root.mutate("rename_post", {"id": "p1", "title": "New"},
            optimistic={posts: {"p1": Post("p1", "New")}})``
        """
        return await self.outbox.mutate(name, args, optimistic=optimistic, timeout=timeout)

    async def broadcast(self, topic: str, event: str, data: Any = None) -> None:
        """Send ``event`` to the other clients of ``topic``, on every gateway node.

        For what is not in the change log (presence, typing, cursors). Receivers
        get ``event`` with ``{"from": user, "topic": topic, "data": data}``; a
        :class:`~rxstore.stores.domain.DomainStore` that accepts ``event`` folds it.
        Delivered at most once, and not replayed after a reconnect.

        Raises:
            CallRejected: Not a subscribed topic, or a reserved event name.
        """
        await self.outbox.broadcast(topic, event, data)

    # -- developers' tools -------------------------------------------------------

    def record(
        self,
        *,
        stores: Iterable[RealtimeStore] | None = None,
        max_frames: int = MAX_FRAMES,
        max_bytes: int = MAX_BYTES,
        max_seconds: float = MAX_SECONDS,
    ) -> Recorder:
        """Record every frame received and every state ``stores`` publish, from now (docs/devtools.md).

        Start it before connecting to replay the session later: ``rxstore replay FILE``
        turns the saved file into a test that replays the frames through the same store
        classes and checks each state. It stops at the first bound reached (it says so
        once, a warning); until then each frame costs its JSON encoding, and each state
        its :func:`~rxstore.client.recorder.plain` form (a table store's whole rows).

        Args:
            stores: The stores whose states to record (all by default; the frames are all recorded).
            max_frames: Most frames (100,000).
            max_bytes: Most bytes of the file (64 MiB).
            max_seconds: Longest recording (an hour).

        Raises:
            RuntimeError: A recording goes on already.

        Example:
            ``with root.record() as rec: await work(); rec.save("session.jsonl")``
        """
        limits = RecordLimits(max_frames=max_frames, max_bytes=max_bytes, max_seconds=max_seconds)
        chosen = self.stores if stores is None else tuple(stores)
        return Recorder(self._router, chosen, self.connection, limits=limits, cursor=self.cursor)

    # -- presence ---------------------------------------------------------------

    @property
    def presence_channels(self) -> Mapping[str, Any]:
        """The presence channels joined, each with the metadata set there (not those only watched)."""
        watching = self._presence.watching
        return {channel: meta for channel, meta in self._presence.joined.items() if channel not in watching}

    @property
    def presence_watched(self) -> frozenset[str]:
        """The presence channels watched (:meth:`watch_presence`)."""
        return frozenset(self._presence.watching)

    async def join_presence(self, channel: str, meta: Any = None) -> str | None:
        """Join the presence channel ``channel`` with ``meta`` (any JSON value; the user is the token's).

        Connected, it returns once the gateway acknowledged it: the channel's
        :class:`~rxstore.stores.presence.PresenceStore` holds the whole member list by then.
        Offline, it returns at once and the join goes with the next connect. On every
        reconnect the root joins again with the latest metadata (the store gets the whole
        list again, never missed deltas). Joining a joined channel sets its metadata.

        Returns:
            This connection's id in the channel (its member's ``conn``), or ``None`` offline.

        Raises:
            CallRejected: Refused (``exc.code``: ``forbidden_channel``, ``meta_too_large``,
                ``invalid_meta``, ``too_many_members``, ``too_many_channels``,
                ``too_many_updates``); the channel is not joined.
            CallTimeout: No acknowledgement in time; the channel stays joined (joined again
                on the next connect).

        Example:
            ``room = await root.add(PresenceStore("room:1")); await root.join_presence("room:1",
            {"status": "online"})``, then ``room.value.users()``.
        """
        return await self._presence.join(channel, meta)

    async def watch_presence(self, channel: str) -> str | None:
        """See the members of ``channel`` without being one (the gateway's ``can_watch`` decides).

        As :meth:`join_presence` otherwise: the whole list on return (connected), watched again on
        every reconnect, :meth:`leave_presence` to stop; a member that watches leaves the list.

        Raises:
            CallRejected: Refused (``forbidden_channel``, ``too_many_channels``, ``too_many_updates``).
        """
        return await self._presence.join(channel, watch=True)

    async def update_presence(self, channel: str, meta: Any) -> None:
        """Replace this connection's metadata in the joined channel ``channel``.

        Raises:
            ValueError: ``channel`` was not joined (or is only watched).
            CallRejected: Refused (``meta_too_large``, ``invalid_meta``, ``too_many_updates``).
        """
        await self._presence.update(channel, meta)

    async def leave_presence(self, channel: str) -> None:
        """Leave ``channel`` (not joined: nothing happens); its store is emptied, not synced."""
        await self._presence.leave(channel)

    def _presence_follows(self, state: ConnectionState) -> None:
        """Join the channels again on each connect; mark their stores not synced when the link drops."""
        if state.connected:
            self._presence.link_up()
        elif state.status is not ConnectionStatus.IDLE and state.status is not ConnectionStatus.CONNECTING:
            self._presence.link_lost()

    async def emit(self, event: str, data: Any = None) -> None:
        """Send ``event`` without waiting for an acknowledgement (queued while offline).

        Raises:
            OutboxFull: Offline and the outbox is full; nothing was queued.
        """
        await self.outbox.emit(event, data)
