"""The realtime gateway: change log in, authorized Socket.IO broadcasts out.

One tailer reads the change log from the last seq it saw and hands each
batch, in one synchronous step, to the send queue of every live client.
A new or returning client is first brought up to date from the log (a
snapshot at a known seq for a new one, a replay after its cursor for a
returning one) and only then marked live, in the same synchronous step that
compares its cursor with the tailer's head, so there is no gap and no
duplicate at the seam::

    log        ──1──2──3──4──5──6──
    tailer     ──────[1-3]─────[4-6]──     (head 3, then 6)
    client     connects at cursor 1: replay [2-3], live, then [4-6]

This module wires the gateway together and holds its lifecycle; each other
concern has a package or module of its own:

* ``rxstore.gateway.api``: Topic, Retention, Writes, the hook types (no Socket.IO).
* ``rxstore.gateway.log``: the change log (its contract, SQLite, PostgreSQL).
* ``rxstore.gateway.delivery``: the live path (``delivery.tailer``), bringing a client
  up to date (``delivery.sync``, ``delivery.catchup``), per-client queues
  (``delivery.queues``), the direct wire, fan-out.
* ``rxstore.gateway.queries``: subsets, their index, who sees which change.
* ``rxstore.gateway.access``: tokens, the wire's guard against hostile input, and the
  one seam per library (``socketio_seam``, ``engineio_seam``) through which the gateway
  reaches python-socketio's and python-engineio's private names.
* ``rxstore.gateway.sessions``: the connect handshake and the sessions it opens;
  ``rxstore.gateway.live_queries``: subscriptions at runtime; ``rxstore.gateway.sio``:
  the Socket.IO server, assembled.
* ``rxstore.gateway.client_events``: what clients send (mutations, broadcasts, handlers).
* ``rxstore.gateway.mount``: serving it as an ASGI app (alone and in an aiohttp app: here).
* ``rxstore.gateway.metrics`` and ``rxstore.gateway.health``: the metrics, ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal, Self

from aiohttp import web

from rxstore.gateway.access.auth import TokenAuth, User
from rxstore.gateway.access.socketio_seam import initialize_manager
from rxstore.gateway.api import (
    GatewayUsageError,
    Handler,
    MutationHandler,
    Retention,
    RowFilter,
    Topic,
    TopicFilter,
    Writes,
)
from rxstore.gateway.client_events import ClientEvents
from rxstore.gateway.delivery.fanout import RedisFanout
from rxstore.gateway.delivery.queued_manager import QueuedManager
from rxstore.gateway.delivery.queues import Client, Delivery
from rxstore.gateway.delivery.sync import Sync
from rxstore.gateway.delivery.tailer import Tailer
from rxstore.gateway.health import health_report, metrics_report
from rxstore.gateway.live_queries import LiveQueries
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.trimmer import Trimmer
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.mount import ASGIApp, GatewayASGIApp
from rxstore.gateway.presence.channels import JoinFilter, PresenceChannels
from rxstore.gateway.presence.limits import PresenceLimits
from rxstore.gateway.presence.relay import PresenceRelay
from rxstore.gateway.queries.visibility import Throttled, fail_closed
from rxstore.gateway.sessions import SHUTDOWN_GRACE, Sessions, authorize_failed
from rxstore.gateway.sio import guarded_server

__all__ = [
    "GatewayUsageError",
    "Handler",
    "MutationHandler",
    "RealtimeGateway",
    "Retention",
    "RowFilter",
    "Topic",
    "TopicFilter",
    "Writes",
]

log = logging.getLogger("rxstore.gateway")

_Metrics = Metrics
"""The gateway's metrics live in :mod:`rxstore.gateway.metrics`."""


class RealtimeGateway:
    """Serves a change log to Socket.IO clients, authorized per user and row.

    Args:
        log: The change log (SQLite or PostgreSQL), not necessarily opened yet.
        topics: The tables to serve (names or :class:`Topic` values).
        auth: Verifies the clients' tokens.
        authorize: Row filter; a user never receives a row it denies (an UPDATE
            that hides a row is sent as a DELETE, one that reveals it as an INSERT).
        can_subscribe: Topic filter (default: every served topic).
        batch_size: Most changes per read and per ``rxstore:batch`` frame.
        coalesce: Shortest time, in seconds, between two live broadcasts. Changes
            committed meanwhile go out together in one frame per client, so the
            frames per second each client handles stay at most ``1 / coalesce``
            while the latency grows by at most ``coalesce``. ``0`` (default):
            every read is broadcast at once. A backlog (a read that filled
            ``batch_size``) is always read on without waiting. Worth setting
            (e.g. ``0.05``) for many clients of a busy log: see docs/operations.md.
        serializer: ``"json"`` or ``"msgpack"`` (clients must match).
        max_frame_bytes: Largest frame a client may send. A bigger one is answered
            ``invalid_payload`` (an acknowledgement if it asked for one; a CONNECT is
            refused with ``bad_request``) up to a quarter more (at least 16 KiB more:
            the websocket limit, :func:`~rxstore.gateway.access.guarded_websockets.websocket_limit`);
            beyond that the connection is closed (websocket close code 1009).
        frame_bytes: Target size of the frames the gateway sends: snapshots go in
            chunks, and replay and live batches are cut, so that each frame stays
            under it; one change bigger than it travels alone in its frame. Keep it
            well under the clients' own limit (``SocketIOTransport(max_frame_bytes=)``,
            64 MiB; browsers have none).
        client_send_timeout: Seconds a client may take to accept one frame; a
            client that stalls longer is dropped (it resumes when it returns).
        snapshot_concurrency: Most snapshots read from the database and sent at
            once (each holds a read transaction and a connection); others wait.
            One user's snapshots are sent one at a time, so that one user's
            stalled connections cannot hold every slot.
        client_queue_limit: Most changes waiting for one client; a live client further behind
            catches up from the log on its connection (:mod:`~rxstore.gateway.delivery.catchup`).
        client_queue_bytes: Most encoded bytes waiting for one client, likewise.
        behind: ``"drop"``: a client over those bounds is dropped instead (it resumes later).
        retention: Trimming of the change log.
        watch: Install the capture triggers on ``topics`` at start.
        cors_allowed_origins: Origins allowed to connect from a browser.
        redis_url: Redis shared by several gateway nodes, for client broadcasts
            (``root.broadcast``); changes never go through it.
        handshake_timeout: Seconds a connection may stay open without joining the
            namespace (the Socket.IO CONNECT); then it is closed and counted in
            ``rxstore_handshake_timeouts``. ``None``: no limit.
        bad_input_log_per_minute: Most warning lines per minute about bad clients
            (malformed or binary frames, handshake timeouts; one line per client
            at most); every bad frame is counted in ``rxstore_bad_frames``.
        async_mode: How the gateway is served: ``"aiohttp"`` for :meth:`start`
            and :meth:`attach` (an aiohttp app), ``"asgi"`` for :meth:`asgi_app`
            (uvicorn, Starlette, FastAPI). One Socket.IO server speaks one of
            them; under ASGI a dropped client's TCP connection is not cut (see
            docs/gateway.md, "Mounting the gateway in your app").
        max_subscriptions: Most subscriptions (topics included) one connection may hold,
            counted from each ``rxstore:subscribe`` on its receipt (those in flight included);
            one more is refused with ``too_many_subscriptions``.
        max_in_flight: Most events of one connection handled at once (calls, mutations,
            broadcasts, subscribes), counted from each event's receipt to its
            acknowledgement; one more is refused at once with ``too_many_requests``
            (``rxstore_requests_in_flight``). ``RootStore`` sends at most this many at once.
        max_pending_syncs: Most clients being brought up to date at once (waiting
            for or getting a snapshot, or a replay; ``rxstore_pending_syncs``). A
            connect beyond it is refused at once with ``unavailable`` and
            ``retry_after`` (counted in ``rxstore_refused{reason="unavailable"}``)
            rather than left to time out; the root store waits that long before
            trying again. ``None``: no limit.
        shed_retry_after: Seconds such a refusal asks the client to wait (it adds jitter).
        can_join: Who may join a presence channel, and so see its members:
            ``can_join(user, channel) -> bool`` (a hook that raises denies). Default: the
            served topics, to the users ``can_subscribe`` lets subscribe to them.
        can_watch: Who may see a presence channel's members without being one (a join
            with ``"watch": true``): ``can_watch(user, channel) -> bool``. Default: ``can_join``.
        presence: The bounds of presence (members per channel, metadata bytes, updates
            per second, channels per connection; with Redis, the nodes' heartbeat and lease).
        ping_interval: Seconds between two Engine.IO pings to each client.
        ping_timeout: Seconds a client may take to answer a ping. A client whose network
            went away without closing its connection is dropped (and leaves its presence
            channels) within ``ping_interval + ping_timeout`` seconds; one whose connection
            closed (a killed process, a reset) at once.

    Example:
        ``gateway = RealtimeGateway(open_change_log("sqlite:///app.db"), topics=["posts"],
        auth=TokenAuth(secret=...))`` then ``await gateway.start(port=8080)``.
    """

    def __init__(
        self,
        log: ChangeLog,
        *,
        topics: Iterable[str | Topic],
        auth: TokenAuth,
        authorize: RowFilter | None = None,
        can_subscribe: TopicFilter | None = None,
        batch_size: int = 200,
        coalesce: float = 0.0,
        serializer: Literal["json", "msgpack"] = "json",
        max_frame_bytes: int = 1 << 20,
        frame_bytes: int = 1 << 20,
        client_send_timeout: float = 30.0,
        snapshot_concurrency: int = 4,
        client_queue_limit: int = 20_000,
        client_queue_bytes: int = 16 << 20,
        retention: Retention | None = None,
        watch: bool = True,
        cors_allowed_origins: str | list[str] = "*",
        redis_url: str | None = None,
        handshake_timeout: float | None = 10.0,
        bad_input_log_per_minute: int = 10,
        async_mode: Literal["aiohttp", "asgi"] = "aiohttp",
        max_subscriptions: int = 64,
        max_in_flight: int = 64,
        max_pending_syncs: int | None = 1000,
        shed_retry_after: float = 1.0,
        behind: Literal["catch_up", "drop"] = "catch_up",
        can_join: JoinFilter | None = None,
        can_watch: JoinFilter | None = None,
        presence: PresenceLimits | None = None,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
    ) -> None:
        if async_mode not in ("aiohttp", "asgi"):
            raise ValueError(f"async_mode must be 'aiohttp' or 'asgi', got {async_mode!r}")
        self.async_mode = async_mode
        self.log = log
        self.topics: dict[str, Topic] = {}
        for topic in topics:
            spec = topic if isinstance(topic, Topic) else Topic(name=topic)
            self.topics[spec.name] = spec
        self.auth = auth
        self.authorize = authorize
        self.can_subscribe = can_subscribe
        self.batch_size = batch_size
        if frame_bytes < 1024 or client_send_timeout <= 0 or snapshot_concurrency < 1:
            raise ValueError(
                "frame_bytes must be >= 1024, client_send_timeout > 0 and snapshot_concurrency >= 1"
            )
        self.frame_bytes = frame_bytes
        self.client_send_timeout = client_send_timeout
        self.snapshot_concurrency = snapshot_concurrency
        self._read_bytes = max(frame_bytes, client_queue_bytes // 4)
        """Most bytes of rows one read of the log returns: a big transaction is sent in parts."""
        self._hook_warnings = Throttled()
        self.coalesce = coalesce
        self.client_queue_limit = client_queue_limit
        self.client_queue_bytes = client_queue_bytes
        self.retention = retention or Retention()
        self.watch = watch
        self.metrics = Metrics()
        self._authorize: RowFilter | None = (
            fail_closed(authorize, authorize_failed(self.metrics, self._hook_warnings)) if authorize else None
        )
        self.fanout = RedisFanout(redis_url) if redis_url else None
        if handshake_timeout is not None and handshake_timeout <= 0:
            raise ValueError(f"handshake_timeout must be > 0 seconds or None, got {handshake_timeout}")
        self.sio: Any = guarded_server(
            self.metrics,
            serializer=serializer,
            max_frame_bytes=max_frame_bytes,
            handshake_timeout=handshake_timeout,
            bad_input_log_per_minute=bad_input_log_per_minute,
            async_mode=async_mode,
            client_manager=self.fanout.manager if self.fanout else QueuedManager(),
            cors_allowed_origins=cors_allowed_origins,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        self._clients: dict[str, Client] = {}
        self._stopping = False
        self._opened = False
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._events = {name: spec.event for name, spec in self.topics.items()}
        self._key_only_old = {
            name: spec.primary_key for name, spec in self.topics.items() if spec.old == "key"
        }
        """Topic -> primary key, for topics whose envelopes carry only the old row's key."""
        self.delivery = Delivery(
            self.sio,
            self.metrics,
            self._clients,
            self._forget,
            frame_bytes=frame_bytes,
            client_send_timeout=client_send_timeout,
            client_queue_limit=client_queue_limit,
            client_queue_bytes=client_queue_bytes,
        )
        self.client_events = ClientEvents(
            log,
            self.sio,
            self.metrics,
            self.fanout,
            frozenset(self._events.values()),
            max_in_flight=max_in_flight,
        )
        retention = self.retention
        self.trimmer = Trimmer(
            log,
            max_age=retention.max_age,
            max_rows=retention.max_rows,
            interval=retention.interval,
            faults=self.client_events.write_faults,
            counted=self.metrics.write_faults.inc,
        )
        primary_keys = {name: spec.primary_key for name, spec in self.topics.items()}
        self.handlers: dict[str, Handler] = self.client_events.handlers
        self.mutations: dict[str, MutationHandler] = self.client_events.mutations
        self.tailer = Tailer(
            log,
            self.delivery,
            self.metrics,
            self._clients,
            authorize=self._authorize,
            names=self._events,
            primary_keys=primary_keys,
            key_only=self._key_only_old,
            batch_size=batch_size,
            read_bytes=self._read_bytes,
            coalesce=coalesce,
        )
        self.sync = Sync(
            log,
            self.delivery,
            self.metrics,
            head=lambda: self.tailer.head,
            events_for=self.tailer.events_for,
            authorize=self._authorize,
            names=self._events,
            primary_keys=primary_keys,
            batch_size=batch_size,
            read_bytes=self._read_bytes,
            snapshot_concurrency=snapshot_concurrency,
            behind=behind,
        )
        self.sessions = Sessions(
            self.sio,
            self.metrics,
            self._clients,
            delivery=self.delivery,
            sync=self.sync,
            auth=auth,
            topics=self.topics,
            can_subscribe=can_subscribe,
            warnings=self._hook_warnings,
            max_pending_syncs=max_pending_syncs,
            shed_retry_after=shed_retry_after,
        )
        if max_subscriptions < 1:
            raise ValueError(f"max_subscriptions must be >= 1, got {max_subscriptions}")
        self.live_queries = LiveQueries(
            log,
            self.sio,
            self.delivery,
            self.sync,
            self.metrics,
            names=self._events,
            primary_keys=primary_keys,
            key_only=self._key_only_old,
            may_subscribe=self.sessions.may_subscribe,
            max_subscriptions=max_subscriptions,
        )
        self.sessions.live_queries = self.live_queries
        self.client_events.live_queries = self.live_queries
        self.presence = self._presence(can_join, can_watch, presence or PresenceLimits(), redis_url)
        self.client_events.presence = self.presence
        self.tailer.index = self.live_queries.index
        self.tailer.refill = self.sync.catch_ups.refill
        self.sync.refile = self.live_queries.index.refile
        self.sessions.plain = self.live_queries.plain = self.tailer.plain
        self.sio.manager.deliver = self.delivery.deliver_to_room
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_client_event)

    def _presence(
        self,
        can_join: JoinFilter | None,
        can_watch: JoinFilter | None,
        limits: PresenceLimits,
        redis_url: str | None,
    ) -> PresenceChannels:
        """The presence channels, across nodes through ``redis_url`` when given."""
        presence = PresenceChannels(
            self.delivery,
            self._clients,
            self.metrics,
            can_join=can_join or self._topic_channel,
            can_watch=can_watch,
            limits=limits,
            node=secrets.token_hex(6),
        )
        if redis_url:
            presence.relay = PresenceRelay(
                redis_url,
                node=presence.node,
                roster=presence.roster,
                deliver=presence.deliver,
                limits=limits,
                metrics=self.metrics,
            )
        return presence

    def _topic_channel(self, user: User, channel: str) -> bool:
        """The default ``can_join``: a served topic the user may subscribe to."""
        return channel in self.topics and self.sessions.may_subscribe(user, channel)

    @property
    def head(self) -> int:
        """The last seq broadcast to the live clients."""
        return self.tailer.head

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Open the log, install the triggers and start tailing; serves nothing.

        :meth:`start` calls it, and so do the startup of an app the gateway is
        mounted in (:meth:`attach`, :meth:`asgi_app`, :meth:`lifespan`); call it
        yourself only to serve the gateway some other way. :meth:`close` undoes
        it, also after it raised.

        Raises:
            GatewayUsageError: It is open already.
        """
        if self._opened:
            raise GatewayUsageError("the gateway is open already: close() it before opening it again")
        self._opened = True
        self._stopping = False
        await self.log.open()
        if self.watch:
            for spec in self.topics.values():
                await self.log.watch(spec.name, primary_key=spec.primary_key, old=spec.old)
        self.tailer.head = await self.log.head()
        self.metrics.head.set(self.head)
        self._tasks = [
            asyncio.create_task(self.tailer.tail(), name="rxstore-gateway-tail"),
            asyncio.create_task(self.trimmer.run(), name="rxstore-gateway-trim"),
        ]
        if self.fanout is not None:
            self._tasks.append(asyncio.create_task(self.fanout.watch(self.sio), name="rxstore-gateway-redis"))
        if self.presence.relay is not None:
            relay = self.presence.relay.run()
            self._tasks.append(asyncio.create_task(relay, name="rxstore-gateway-presence"))
        if self.fanout is not None:
            # Start the Redis listener now, not on the first connection as python-socketio
            # would, so a node with no client yet hears the others (and reports healthy).
            initialize_manager(self.sio)

    async def close(self) -> None:
        """Refuse new clients, disconnect every client, stop tailing and close the log; idempotent.

        The HTTP server is not the gateway's here: the app serving it stops it.
        """
        await self._disconnect_all()
        await self._release()

    async def _disconnect_all(self) -> None:
        """Refuse new clients, stop tailing, disconnect every client and let its close frame go."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.sessions.disconnect_all()

    async def _release(self) -> None:
        """Close what :meth:`open` opened (Redis, the log); idempotent."""
        if self.presence.relay is not None:
            await self.presence.relay.close()  # 'bye': the other nodes drop its members at once
        if self.fanout is not None:
            await self.fanout.close()
        await self.log.close()
        self._opened = False

    def on(self, event: str) -> Callable[[Handler], Handler]:
        """Register ``async handler(user, data) -> ack`` for an event clients send.

        Example:
            ``@gateway.on("create_post")`` above ``async def create(user, data): ...``
        """

        def register(handler: Handler) -> Handler:
            self.handlers[event] = handler
            return handler

        return register

    def mutation(self, name: str) -> Callable[[MutationHandler], MutationHandler]:
        """Register the mutation ``name``: ``async handler(user, args) -> Writes``.

        Clients run it with ``root.mutate(name, args)``; the gateway runs the
        returned statements in one transaction, once per client mutation id
        (a retry after a lost acknowledgement is not applied twice), and the
        changes they write reach every client through the log.

        Example:
            ``@gateway.mutation("rename_post")`` above ``async def rename(user, args):
            return Writes([("UPDATE posts SET title = ? WHERE id = ? AND author = ?",
            (args["title"], args["id"], user.id))])``
        """

        def register(handler: MutationHandler) -> MutationHandler:
            self.mutations[name] = handler
            return handler

        return register

    # -- serving ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """:meth:`open` on entry, :meth:`close` on exit, as an ASGI app's lifespan wants it.

        Example:
            ``Starlette(routes=[Mount("/realtime", gateway.asgi_app())], lifespan=gateway.lifespan)``;
            in a lifespan of your own: ``async with gateway.lifespan(): yield``.
        """
        await self.open()
        try:
            yield
        finally:
            await self.close()

    async def start(self, host: str = "127.0.0.1", port: int = 8080, *, reuse_port: bool = False) -> None:
        """Open the gateway (:meth:`open`) and serve it alone on ``host:port``.

        Serves Socket.IO, ``/healthz`` and ``/metrics``. Use ``port=0`` for a
        free port; :attr:`port` tells which. ``reuse_port`` (Linux) lets other
        processes serve the same port (``SO_REUSEPORT``: the kernel spreads
        connections; ``rxstore serve --workers``). To serve it inside your own
        app instead, see :meth:`attach` and :meth:`asgi_app`.
        """
        self._require_mode("aiohttp", "start()")
        await self.open()
        app = web.Application()
        self._add_routes(app, "socket.io", "/healthz", "/metrics")
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port or None)
        await self._site.start()
        log.info("[RealtimeGateway] serving %s on %s", sorted(self.topics), self.url)

    def attach(
        self,
        app: web.Application,
        *,
        socketio_path: str = "socket.io",
        healthz: str | None = "/healthz",
        metrics: str | None = "/metrics",
    ) -> None:
        """Serve the gateway inside an aiohttp app, run by the app's lifecycle.

        Adds the Socket.IO endpoint (``/socket.io/``; clients of another path
        pass ``SocketIOTransport(socketio_path=...)``) and the ``healthz`` and
        ``metrics`` routes (``None``: not added). The app's startup opens the
        gateway, its shutdown disconnects the clients (before aiohttp waits for
        open requests), its cleanup stops tailing and closes the log.

        Raises:
            GatewayUsageError: The gateway was built with ``async_mode="asgi"``.
        """
        self._require_mode("aiohttp", "attach()")
        self._add_routes(app, socketio_path, healthz, metrics)

        async def opened(app: web.Application) -> None:
            await self.open()

        async def disconnected(app: web.Application) -> None:
            await self._disconnect_all()

        async def closed(app: web.Application) -> None:
            await self.close()  # all of it, also when the startup failed half-way

        app.on_startup.append(opened)
        app.on_shutdown.append(disconnected)
        app.on_cleanup.append(closed)

    def asgi_app(
        self,
        other_asgi_app: ASGIApp | None = None,
        *,
        socketio_path: str = "socket.io",
        healthz: str | None = "/healthz",
        metrics: str | None = "/metrics",
    ) -> GatewayASGIApp:
        """An ASGI app serving the gateway, and ``other_asgi_app`` (Starlette, FastAPI, ...) beside it.

        It serves Socket.IO on ``socketio_path``, ``healthz`` and ``metrics``
        (``None``: left to the other app), hands every other request to
        ``other_asgi_app`` (404 without one), and opens the gateway at the
        lifespan's startup (before the other app's) and closes it at its
        shutdown (after the other app's). Mounted under a prefix, it gets no
        lifespan: pass ``lifespan=gateway.lifespan`` to the outer app.

        Raises:
            GatewayUsageError: The gateway was not built with ``async_mode="asgi"``.
        """
        self._require_mode("asgi", "asgi_app()")
        return GatewayASGIApp(
            self, other_asgi_app, socketio_path=socketio_path, healthz=healthz, metrics=metrics
        )

    def _require_mode(self, mode: str, what: str) -> None:
        if self.async_mode != mode:
            raise GatewayUsageError(
                f"{what} needs RealtimeGateway(..., async_mode={mode!r}); "
                f"this gateway was built with async_mode={self.async_mode!r}"
            )

    def _add_routes(
        self, app: web.Application, socketio_path: str, healthz: str | None, metrics: str | None
    ) -> None:
        self.sio.attach(app, socketio_path=socketio_path)
        if healthz is not None:
            app.router.add_get(healthz, self._healthz)
        if metrics is not None:
            app.router.add_get(metrics, self._metrics)

    @property
    def port(self) -> int:
        """The TCP port served (after :meth:`start`)."""
        return int(self._address()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the gateway (after :meth:`start`)."""
        host, port = self._address()[:2]
        return f"http://{host}:{port}"

    def _address(self) -> Any:
        if self._runner is None or not self._runner.addresses:
            raise GatewayUsageError(
                "the gateway serves no port of its own: start() it (an app it is mounted in has its own)"
            )
        return self._runner.addresses[0]

    async def stop(self) -> None:
        """Stop accepting, disconnect every client, stop tailing, close the log and the HTTP server."""
        self._stopping = True
        if self._site is not None:
            await self._site.stop()  # no new TCP connections; reconnecting clients go elsewhere
        await self._disconnect_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        await self._release()

    async def __aenter__(self) -> Self:
        await self.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def health_report(self) -> tuple[int, dict[str, Any]]:
        """What ``/healthz`` answers: its HTTP status (200 or 503) and body."""
        running = self._opened and all(not t.done() for t in self._tasks)
        writes = self.client_events.write_faults.status()
        return health_report(self.log, self.fanout, running, len(self._clients), self.head, writes)

    def metrics_report(self) -> tuple[bytes, str]:
        """What ``/metrics`` answers: the Prometheus text and its content type."""
        return metrics_report(self.metrics, self.log)

    async def _healthz(self, request: web.Request) -> web.Response:
        status, body = self.health_report()
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics_report()
        return web.Response(body=body, headers={"Content-Type": content_type})

    # -- connections -----------------------------------------------------------

    async def _on_connect(self, sid: str, environ: Any, auth: Any = None) -> Any:
        if self.sio.manager.is_connected(sid, "/"):
            # Not a handshake: python-socketio routes a client event named 'connect' here.
            return self.client_events.reject("forbidden", "'connect' is a reserved event name")
        if self._stopping:
            raise self.sessions.refuse("unavailable", "the gateway is shutting down; try another node")
        await self.sessions.connect(sid, environ, auth)
        return None

    async def _on_disconnect(self, sid: str, reason: Any = None) -> Any:
        if self.sio.manager.is_connected(sid, "/"):
            # Not a disconnect: python-socketio routes a client event named 'disconnect' here.
            return self.client_events.reject("forbidden", "'disconnect' is a reserved event name")
        self._forget(sid)
        return None

    def _forget(self, sid: str) -> None:
        self.sessions.forget(sid)
        self.presence.forget(sid)

    async def _on_client_event(self, event: str, sid: str, *args: Any) -> Any:
        client = self._clients.get(sid)
        if client is None:
            return {"ok": False, "error": "not_connected"}
        return await self.client_events.handle(client, event, args)
