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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import engineio
import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rxstore.errors import AuthError, RxStoreError
from rxstore.events import (
    BATCH,
    BROADCAST,
    CLOSING,
    CONTROL_PREFIX,
    LIVE,
    MUTATE,
    RESET,
    SNAPSHOT,
    Change,
    Op,
    topic_event_name,
)
from rxstore.gateway.auth import TokenAuth, User
from rxstore.gateway.changelog import ChangeLog, SnapshotReader, Statement
from rxstore.gateway.codec import GatewayJSON, LogFrame, pack_msgpack
from rxstore.gateway.fanout import QueuedManager, RedisFanout
from rxstore.gateway.guard import (
    BadInputLog,
    BadPayload,
    GuardedServer,
    WireGuard,
    json_packet_class,
    msgpack_packet_class,
    websocket_limit,
)
from rxstore.gateway.mount import ASGIApp, GatewayASGIApp

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

RowFilter = Callable[[User, str, Mapping[str, Any]], bool]
"""``authorize(user, topic, row) -> bool``: may this user see this row?"""
TopicFilter = Callable[[User, str], bool]
"""``can_subscribe(user, topic) -> bool``: may this user subscribe to this topic?"""
Handler = Callable[[User, Any], Awaitable[Any]]
"""``async handler(user, data) -> ack`` for an event sent by clients."""


class _GatewayPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's JSON packet, minus the binary scan of the gateway's own frames.

    ``Packet.data_is_binary`` walks every value of every change looking for
    ``bytes``: ~40% of the gateway's CPU on 500-change batches (profiled with
    py-spy, see docs/benchmarks.md). Frames built from the log cannot hold bytes.
    Those frames are encoded by orjson (:class:`~rxstore.gateway.codec.GatewayJSON`).
    """

    json = GatewayJSON

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if type(data) is list and len(data) == 2 and type(data[1]) is LogFrame:
            return False
        return bool(super().data_is_binary(data))


def _fingerprint(name: Any, args: Any) -> str:
    """Digest of a mutation's name and arguments: tells a retry from a reused id."""
    try:
        text = json.dumps([name, args], sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):  # e.g. msgpack maps with keys of mixed types
        text = repr([name, args])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _msgpack_packet_class() -> type[Any]:
    """python-socketio's msgpack packet, packing the gateway's log frames with ormsgpack."""
    from socketio.msgpack_packet import MsgPackPacket

    class _GatewayMsgPackPacket(MsgPackPacket):  # type: ignore[misc]
        def encode(self) -> bytes:
            data = self.data
            if type(data) is list and len(data) == 2 and type(data[1]) is LogFrame:
                return pack_msgpack(self._to_dict())
            return super().encode()  # type: ignore[no-any-return]

    return _GatewayMsgPackPacket


@attrs.define(eq=False)
class _OutFrame:
    """A frame waiting in a client's send queue; shared by clients that get the same batch.

    Attributes:
        name: Socket event name.
        data: Payload.
        size: Changes it carries (counted against ``client_queue_limit``).
        packets: Its engine.io packets, encoded once on first send and reused.
    """

    name: str
    data: Any
    size: int = 0
    packets: list[Any] | None = None
    nbytes: int = 0


_MAX_MUTATION_ID = 128
_SOCKETIO_RESERVED = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
"""Event names Socket.IO clients give a meaning of their own: never broadcast under them."""
_SOCKET_BACKLOG = 8
_MAX_PAGE_ROWS = 10_000
_BIG_FRAME = 64 << 10
"""A frame this big waits until python-socketio holds at most one packet for its client."""
_SHUTDOWN_GRACE = 2.0
"""Seconds a stopping gateway waits for a client's connection before cutting it."""
"""Most frames handed to python-socketio for one client before waiting for its socket."""


@attrs.frozen
class Writes:
    """What a mutation handler returns: statements to run in one transaction, and a result.

    Attributes:
        statements: ``(sql, params)`` pairs, run in order, atomically.
        result: Sent back to the client in the acknowledgement (JSON-able).
    """

    statements: Sequence[Statement]
    result: Any = None


MutationHandler = Callable[[User, Any], Awaitable["Writes | Sequence[Statement]"]]
"""``async handler(user, args) -> Writes | [(sql, params), ...]``; raise ValueError to reject
the payload, PermissionError (or AuthError) to forbid it."""


@attrs.frozen(kw_only=True)
class Topic:
    """A table served by the gateway.

    Attributes:
        name: Table (and topic, and room) name.
        event: Socket event name of its changes; ``post_update`` for ``posts``.
        primary_key: The row field that identifies a row.
        old: What UPDATE and DELETE envelopes carry as ``old``: ``"full"`` (the
            whole row before the change, for reducers that compare before and
            after) or ``"key"`` (only ``{primary_key: value}``, as PostgreSQL's
            default replica identity does: what a ``TableStore`` needs, and
            frames about 40% smaller for UPDATEs). ``authorize`` always sees
            the whole row.

    Example:
        >>> Topic(name="posts").event
        'post_update'
        >>> Topic(name="posts", old="key").old
        'key'
    """

    name: str
    event: str = attrs.field(default=attrs.Factory(lambda self: topic_event_name(self.name), takes_self=True))
    primary_key: str = "id"
    old: Literal["full", "key"] = attrs.field(default="full", validator=attrs.validators.in_(("full", "key")))


@attrs.frozen(kw_only=True)
class Retention:
    """How long the change log keeps changes; older cursors get reset + snapshot.

    Attributes:
        max_age: Seconds a change is kept (``None``: no age limit).
        max_rows: Most changes kept (``None``: no size limit).
        interval: Seconds between trims.
    """

    max_age: float | None = 7 * 24 * 3600.0
    max_rows: int | None = 1_000_000
    interval: float = 60.0


@attrs.define(eq=False)
class _Client:
    sid: str
    user: User
    topics: frozenset[str]
    cursor: int | None
    live: bool = False
    skip: frozenset[int] = frozenset()
    epoch: str | None = None
    """The log epoch of the client's cursor (from its auth); once it is synced, the log's."""
    queue: deque[_OutFrame] = attrs.field(factory=deque)
    queued: int = 0
    queued_bytes: int = 0
    transport: Any = None
    """The client's TCP transport, aborted when the client is dropped."""
    ready: asyncio.Event = attrs.field(factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)
    expires: float | None = None
    """Unix time at which the client's token expires (its ``exp`` plus the leeway)."""
    expiry: asyncio.TimerHandle | None = None


class _PerUser:
    """One lock per user, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, user: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(user) or (asyncio.Lock(), 0)
        self._locks[user] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[user]
            if users == 1:
                del self._locks[user]
            else:
                self._locks[user] = (lock, users - 1)


class _Stalled(Exception):
    """A client took longer than ``client_send_timeout`` to accept a frame."""


class _Throttled:
    """Logs a warning at most once per ``interval`` seconds, counting what it held back."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        held, self._held, self._next = self._held, 0, now + self.interval
        suffix = f" ({held} more like it in the last {self.interval:g} s)" if held else ""
        log.warning(message + suffix, *args)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.clients = Gauge("rxstore_connected_clients", "Connected clients.", registry=r)
        self.changes = Counter("rxstore_changes", "Changes read from the log and broadcast.", registry=r)
        self.sent = Counter("rxstore_events_sent", "Change events sent to clients.", registry=r)
        self.replayed = Counter("rxstore_replayed", "Changes replayed to returning clients.", registry=r)
        self.snapshots = Counter("rxstore_snapshots", "Snapshots sent.", registry=r)
        self.refused = Counter("rxstore_refused", "Connections refused.", ["reason"], registry=r)
        self.dropped = Counter(
            "rxstore_slow_clients_dropped", "Clients disconnected for falling behind.", registry=r
        )
        self.bad_input = Counter("rxstore_bad_input", "Rejected client events.", ["reason"], registry=r)
        self.head = Gauge("rxstore_head_seq", "Last seq broadcast.", registry=r)
        self.lag = Gauge("rxstore_lag_seconds", "Commit-to-broadcast lag of the last batch.", registry=r)
        self.healthy = Gauge("rxstore_log_healthy", "1 while the database connection is up.", registry=r)
        self.snapshot_frames = Counter(
            "rxstore_snapshot_frames", "Snapshot frames (chunks) sent.", registry=r
        )
        self.snapshots_active = Gauge(
            "rxstore_snapshots_active", "Snapshots being read and sent now.", registry=r
        )
        self.snapshots_waiting = Gauge(
            "rxstore_snapshots_waiting", "Clients waiting for a snapshot slot.", registry=r
        )
        self.queued_bytes = Gauge(
            "rxstore_queued_bytes", "Encoded bytes waiting in every client's send queue.", registry=r
        )
        self.stalled = Counter(
            "rxstore_stalled_clients_dropped",
            "Clients dropped for not accepting a frame within client_send_timeout.",
            registry=r,
        )
        self.authorize_errors = Counter(
            "rxstore_authorize_errors",
            "authorize/can_subscribe calls that raised (the row or topic was denied).",
            registry=r,
        )
        self.expired = Counter(
            "rxstore_sessions_expired", "Sessions ended because their token expired.", registry=r
        )
        self.broadcasts = Counter(
            "rxstore_broadcasts", "Client broadcasts delivered to this node's clients.", registry=r
        )
        self.bad_frames = Counter(
            "rxstore_bad_frames",
            "Client frames refused at the wire, the socket closed (malformed, binary, oversize_closed).",
            ["reason"],
            registry=r,
        )
        self.handshake_timeouts = Counter(
            "rxstore_handshake_timeouts",
            "Connections closed for not joining the namespace within handshake_timeout.",
            registry=r,
        )
        self.bad_input_log_suppressed = Counter(
            "rxstore_bad_input_log_suppressed",
            "Warnings about bad clients not logged (over bad_input_log_per_minute).",
            registry=r,
        )


class GatewayUsageError(RxStoreError, RuntimeError):
    """The gateway was used in a way its mode or state does not allow; the message says what to do.

    Example:
        >>> from rxstore.gateway.auth import TokenAuth
        >>> from rxstore.gateway.changelog import open_change_log
        >>> gateway = RealtimeGateway(
        ...     open_change_log("sqlite:///app.db"), topics=["posts"], auth=TokenAuth(secret="s" * 32)
        ... )
        >>> try:
        ...     gateway.asgi_app()
        ... except GatewayUsageError as exc:
        ...     print(exc)
        asgi_app() needs RealtimeGateway(..., async_mode='asgi'); this gateway was built with ...
    """


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
            the websocket limit, :func:`~rxstore.gateway.guard.websocket_limit`);
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
        client_queue_limit: Most changes waiting for one client; a client further
            behind is dropped (it resumes from its cursor when it returns).
        client_queue_bytes: Most encoded bytes waiting for one client, likewise.
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
        self._snapshot_slots = asyncio.Semaphore(snapshot_concurrency)
        self._user_snapshots = _PerUser()
        self._hook_warnings = _Throttled()
        self._authorize: RowFilter | None = self._fail_closed(authorize) if authorize else None
        if coalesce < 0:
            raise ValueError(f"coalesce must be >= 0 seconds, got {coalesce}")
        self.coalesce = coalesce
        self.client_queue_limit = client_queue_limit
        self.client_queue_bytes = client_queue_bytes
        self.retention = retention or Retention()
        self.watch = watch
        self.head = 0
        self.metrics = _Metrics()
        self.handlers: dict[str, Handler] = {}
        self.mutations: dict[str, MutationHandler] = {}
        self.fanout = RedisFanout(redis_url) if redis_url else None
        if handshake_timeout is not None and handshake_timeout <= 0:
            raise ValueError(f"handshake_timeout must be > 0 seconds or None, got {handshake_timeout}")
        guard = WireGuard(
            max_frame_bytes=max_frame_bytes,
            handshake_timeout=handshake_timeout,
            bad_frames=self.metrics.bad_frames,
            handshake_timeouts=self.metrics.handshake_timeouts,
            report=BadInputLog(bad_input_log_per_minute, self.metrics.bad_input_log_suppressed),
        )
        packet_class = (
            msgpack_packet_class(_msgpack_packet_class(), max_frame_bytes=max_frame_bytes)
            if serializer == "msgpack"
            else json_packet_class(_GatewayPacket, max_frame_bytes=max_frame_bytes)
        )
        self.sio: Any = GuardedServer(
            guard=guard,
            async_mode=async_mode,
            client_manager=self.fanout.manager if self.fanout else QueuedManager(),
            serializer=packet_class,
            max_http_buffer_size=websocket_limit(max_frame_bytes),
            cors_allowed_origins=cors_allowed_origins,
        )
        self._clients: dict[str, _Client] = {}
        self._queued_total = 0
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
        self._change_events = frozenset(self._events.values())
        self.sio.manager.deliver = self._deliver_to_room
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_client_event)

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
                await self.log.watch(spec.name, primary_key=spec.primary_key)
        self.head = await self.log.head()
        self.metrics.head.set(self.head)
        self._tasks = [
            asyncio.create_task(self._tail(), name="rxstore-gateway-tail"),
            asyncio.create_task(self._trim(), name="rxstore-gateway-trim"),
        ]
        if self.fanout is not None:
            self._tasks.append(asyncio.create_task(self.fanout.watch(self.sio), name="rxstore-gateway-redis"))
        if self.fanout is not None and not self.sio.manager_initialized:
            # python-socketio starts the Redis listener on the first connection; start it
            # now, so a node with no client yet hears the others (and reports healthy).
            self.sio.manager_initialized = True
            self.sio.manager.initialize()

    async def close(self) -> None:
        """Refuse new clients, disconnect every client, stop tailing and close the log; idempotent.

        The HTTP server is not the gateway's here: the app serving it stops it.
        """
        await self._disconnect_all()
        await self._release()

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

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Open the gateway (:meth:`open`) and serve it alone on ``host:port``.

        Serves Socket.IO, ``/healthz`` and ``/metrics``. Use ``port=0`` for a
        free port; :attr:`port` tells which. To serve it inside your own app
        instead, see :meth:`attach` and :meth:`asgi_app`.
        """
        self._require_mode("aiohttp", "start()")
        await self.open()
        app = web.Application()
        self._add_routes(app, "socket.io", "/healthz", "/metrics")
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
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

    async def _disconnect_all(self) -> None:
        """Refuse new clients, stop tailing, disconnect every client and let its close frame go."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        transports = [c.transport for c in self._clients.values() if c.transport is not None]
        for sid in list(self._clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sio.disconnect(sid), _SHUTDOWN_GRACE)
            self._forget(sid)
        # Let the close frames go out before the HTTP server goes: some clients
        # (Node's ws) otherwise wait out a 30 s close timeout that aiohttp waits for.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while self.sio.eio.sockets and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for transport in transports:  # a client that stopped reading cannot take its close frame
            if not transport.is_closing():
                transport.abort()

    async def _release(self) -> None:
        """Close what :meth:`open` opened (Redis, the log); idempotent."""
        if self.fanout is not None:
            await self.fanout.close()
        await self.log.close()
        self._opened = False

    async def __aenter__(self) -> RealtimeGateway:
        await self.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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

    # -- connections -----------------------------------------------------------

    def _refuse(self, reason: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
        self.metrics.refused.labels(reason).inc()
        log.info("[RealtimeGateway] refused a connection: %s (%s)", reason, message)
        return socketio.exceptions.ConnectionRefusedError(reason, {"reason": reason, "message": message})

    async def _on_connect(self, sid: str, environ: Any, auth: Any = None) -> Any:
        if self.sio.manager.is_connected(sid, "/"):
            # Not a handshake: python-socketio routes a client event named 'connect' here.
            return self._reject("forbidden", "'connect' is a reserved event name")
        if self._stopping:
            raise self._refuse("unavailable", "the gateway is shutting down; try another node")
        if type(auth) is BadPayload:  # not JSON, too big, ...: see rxstore.gateway.guard
            raise self._refuse("bad_request", f"auth payload refused: {auth.message}")
        if not isinstance(auth, Mapping):
            raise self._refuse("invalid_token", "send auth={'token': '<jwt>', 'topics': [...], 'cursor': n}")
        try:
            user = self.auth.verify(auth.get("token"))
        except AuthError as exc:
            raise self._refuse(exc.reason, str(exc)) from None
        requested = auth.get("topics")
        if requested is None:
            requested = [t for t in self.topics if self._may_subscribe(user, t)]
        if not isinstance(requested, list) or not all(isinstance(t, str) for t in requested):
            raise self._refuse("bad_request", "'topics' must be a list of topic names")
        for topic in requested:
            if topic not in self.topics:
                raise self._refuse("forbidden_topic", f"no such topic {topic!r}")
            if not self._may_subscribe(user, topic):
                raise self._refuse("forbidden_topic", f"{user.id!r} may not subscribe to {topic!r}")
        cursor = auth.get("cursor")
        if cursor is not None and (type(cursor) is not int or cursor < 0):
            raise self._refuse("bad_request", "'cursor' must be a non-negative integer or null")
        epoch = auth.get("epoch")
        if epoch is not None and type(epoch) is not str:
            raise self._refuse("bad_request", "'epoch' must be the string of an rxstore:live frame, or null")
        client = _Client(sid, user, frozenset(requested), cursor, epoch=epoch)
        request = environ.get("aiohttp.request") if isinstance(environ, Mapping) else None
        client.transport = getattr(request, "transport", None)
        self._clients[sid] = client
        for topic in client.topics:
            await self.sio.enter_room(sid, _room(topic))
        self.metrics.clients.set(len(self._clients))
        client.tasks.append(asyncio.create_task(self._sync(client), name=f"rxstore-sync-{sid}"))
        client.tasks.append(asyncio.create_task(self._write(client), name=f"rxstore-write-{sid}"))
        exp = user.claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            client.expires = float(exp) + self.auth.leeway
            loop = asyncio.get_running_loop()
            client.expiry = loop.call_later(max(0.0, client.expires - time.time()), self._expire, client)

    def _may_subscribe(self, user: User, topic: str) -> bool:
        if self.can_subscribe is None:
            return True
        try:
            return bool(self.can_subscribe(user, topic))
        except Exception as exc:  # fail closed: a hook that raises denies
            self.metrics.authorize_errors.inc()
            self._hook_warnings.warning(
                "[RealtimeGateway] can_subscribe raised for %r on %r (denied): %r", user.id, topic, exc
            )
            return False

    def _fail_closed(self, authorize: RowFilter) -> RowFilter:
        """Wrap ``authorize`` so that a call that raises denies that row to that user, and is counted."""

        def guarded(user: User, topic: str, row: Mapping[str, Any]) -> bool:
            try:
                return bool(authorize(user, topic, row))
            except Exception as exc:
                self.metrics.authorize_errors.inc()
                self._hook_warnings.warning(
                    "[RealtimeGateway] authorize raised for %r on a %r row (hidden from them): %r",
                    user.id,
                    topic,
                    exc,
                )
                return False

        return guarded

    def _expire(self, client: _Client) -> None:
        """End a session whose token expired: nothing more is sent or accepted; it is told why."""
        if self._clients.get(client.sid) is not client:
            return
        self.metrics.expired.inc()
        log.info("[RealtimeGateway] %s (%s): token expired, session ended", client.sid, client.user.id)
        self._forget(client.sid)
        task = asyncio.ensure_future(
            self._close(client, "token_expired", "the token expired: reconnect with a fresh one")
        )
        task.add_done_callback(_log_failure)

    async def _close(self, client: _Client, reason: str, message: str) -> None:
        with contextlib.suppress(_Stalled):
            await asyncio.wait_for(self._emit(client, CLOSING, {"reason": reason, "message": message}), 2.0)
        await self.sio.disconnect(client.sid)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> Any:
        if self.sio.manager.is_connected(sid, "/"):
            # Not a disconnect: python-socketio routes a client event named 'disconnect' here.
            return self._reject("forbidden", "'disconnect' is a reserved event name")
        self._forget(sid)
        return None

    def _forget(self, sid: str) -> None:
        client = self._clients.pop(sid, None)
        if client is None:
            return
        client.live = False
        for task in client.tasks:
            task.cancel()
        if client.expiry is not None:
            client.expiry.cancel()
        client.queue.clear()
        self._queued_total -= client.queued_bytes
        client.queued = client.queued_bytes = 0
        self.metrics.queued_bytes.set(self._queued_total)
        self.metrics.clients.set(len(self._clients))

    async def _on_client_event(self, event: str, sid: str, *args: Any) -> Any:
        client = self._clients.get(sid)
        if client is None:
            return {"ok": False, "error": "not_connected"}
        if client.expires is not None and time.time() >= client.expires:
            return self._reject("token_expired", "the token expired: reconnect with a fresh one")
        if args and type(args[0]) is BadPayload:  # refused while decoding: see rxstore.gateway.guard
            return self._reject("invalid_payload", args[0].message)
        if len(args) > 1:
            return self._reject("invalid_payload", f"{event!r} takes one argument, got {len(args)}")
        data = args[0] if args else None
        if event == MUTATE:
            return await self._on_mutate(client, data)
        if event == BROADCAST:
            return await self._on_broadcast(client, data)
        handler = self.handlers.get(event)
        if handler is None:
            self.metrics.bad_input.labels("unknown_event").inc()
            return {"ok": False, "error": "unknown_event", "message": f"the gateway has no {event!r} handler"}
        try:
            result = await handler(client.user, data)
        except AuthError as exc:
            self.metrics.bad_input.labels(exc.reason).inc()
            return {"ok": False, "error": exc.reason, "message": str(exc)}
        except (ValueError, TypeError, KeyError) as exc:
            self.metrics.bad_input.labels("invalid_payload").inc()
            return {"ok": False, "error": "invalid_payload", "message": str(exc)}
        except Exception:
            log.exception("[RealtimeGateway] handler for %r failed", event)
            return {"ok": False, "error": "internal_error"}
        return {"ok": True, "result": result}

    def _reject(self, error: str, message: str) -> dict[str, Any]:
        self.metrics.bad_input.labels(error).inc()
        return {"ok": False, "error": error, "message": message}

    async def _on_mutate(self, client: _Client, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            return self._reject("invalid_payload", "a mutation is {'id': str, 'name': str, 'args': ...}")
        mutation, name = data.get("id"), data.get("name")
        if not isinstance(mutation, str) or not 0 < len(mutation) <= _MAX_MUTATION_ID:
            return self._reject(
                "invalid_payload", f"mutation 'id' must be a string of 1-{_MAX_MUTATION_ID} chars"
            )
        handler = self.mutations.get(name) if isinstance(name, str) else None
        if handler is None:
            return self._reject("unknown_mutation", f"the gateway has no mutation {name!r}")
        try:
            writes = await handler(client.user, data.get("args"))
        except (AuthError, PermissionError) as exc:
            return self._reject("forbidden", str(exc))
        except (ValueError, TypeError, KeyError) as exc:
            return self._reject("invalid_payload", str(exc) or type(exc).__name__)
        if not isinstance(writes, Writes):
            writes = Writes(list(writes))
        fingerprint = _fingerprint(name, data.get("args"))
        user = client.user.id
        try:
            applied = await self.log.apply_mutation(
                mutation, user, writes.statements, fingerprint=fingerprint, result=writes.result
            )
            if applied:
                return {"ok": True, "result": writes.result, "duplicate": False}
            previous = await self.log.applied_mutation(mutation, user)
        except Exception as exc:
            log.warning("[RealtimeGateway] mutation %r of %s failed: %s", name, user, exc)
            return self._reject("rejected", f"the database refused the mutation: {exc}")
        # A retry: acknowledge it with what the first application acknowledged.
        if previous is None:  # forgotten meanwhile (trimmed with the log)
            return {"ok": True, "result": writes.result, "duplicate": True}
        if previous.fingerprint and previous.fingerprint != fingerprint:
            return self._reject(
                "mutation_id_reused",
                f"mutation id {mutation!r} was used before for another mutation or other arguments; "
                "give every mutation a new id (retries keep theirs)",
            )
        return {"ok": True, "result": previous.result, "duplicate": True}

    async def _on_broadcast(self, client: _Client, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            return self._reject("invalid_payload", "a broadcast is {'topic': str, 'event': str, 'data': ...}")
        topic, event = data.get("topic"), data.get("event")
        if not isinstance(topic, str) or topic not in client.topics:
            return self._reject("forbidden_topic", f"broadcast to {topic!r}: not a subscribed topic")
        if not isinstance(event, str) or not event or len(event) > 100:
            return self._reject("invalid_payload", "broadcast 'event' must be a name of 1-100 chars")
        if event.startswith(CONTROL_PREFIX) or event in self._change_events:
            return self._reject("forbidden", f"{event!r} is reserved for the change log")
        if event in _SOCKETIO_RESERVED:
            return self._reject("forbidden", f"{event!r} is reserved by Socket.IO")
        if self.fanout is not None and not self.fanout.healthy:
            return self._reject(
                "unavailable", "the gateways' Redis is down: the broadcast would not reach all"
            )
        message = {"from": client.user.id, "topic": topic, "data": data.get("data")}
        await self.sio.emit(event, message, room=_room(topic), skip_sid=client.sid)
        return {"ok": True}

    # -- bringing a client up to date ------------------------------------------

    async def _sync(self, client: _Client) -> None:
        await asyncio.sleep(0)  # let python-socketio finish the handshake first
        try:
            cursor = client.cursor
            horizon = await self.log.horizon()
            epoch = await self.log.epoch()
            reason = None
            if cursor is not None and client.epoch is not None and client.epoch != epoch:
                reason = "epoch_changed"  # a cursor of another log: another database, a restored backup
            elif cursor is not None and cursor < horizon:
                reason = "cursor_expired"  # the changes after it were trimmed
            elif cursor is not None and cursor > await self.log.head():
                reason = "cursor_ahead"  # from another database (restored, recreated)
            if cursor is None or reason is not None:
                if reason is not None:
                    await self._emit(
                        client,
                        RESET,
                        {"reason": reason, "cursor": cursor, "horizon": horizon, "epoch": epoch},
                    )
                await self._send_snapshot(client)
            client.epoch = epoch  # sent in rxstore:live
            await self._catch_up(client)
        except asyncio.CancelledError:
            raise
        except _Stalled as exc:
            self._drop_stalled(client, exc)
        except Exception:
            log.exception("[RealtimeGateway] could not bring %s up to date", client.sid)
            await self.sio.disconnect(client.sid)

    async def _send_snapshot(self, client: _Client) -> None:
        """Stream the client's topics at one log position, a page of rows at a time.

        Each topic goes in ``rxstore:snapshot`` frames of at most ``frame_bytes``
        (``"more": true`` on all but its last); the next page is read only once
        the client has taken the previous frame, so a client that does not read
        holds a frame or two, never the table.
        """
        topics = sorted(client.topics)
        metrics = self.metrics
        metrics.snapshots_waiting.inc()
        async with self._user_snapshots.hold(client.user.id):  # one at a time per user
            try:
                await self._snapshot_slots.acquire()
            finally:
                metrics.snapshots_waiting.dec()
            metrics.snapshots_active.inc()
            try:
                async with self.log.snapshot_reader(topics) as reader:
                    for topic in topics:
                        await self._stream_topic(client, reader, topic)
                    seq, skip = reader.seq, reader.skip
            finally:
                metrics.snapshots_active.dec()
                self._snapshot_slots.release()
        metrics.snapshots.inc()
        client.cursor = seq
        client.skip = skip

    async def _stream_topic(self, client: _Client, reader: SnapshotReader, topic: str) -> None:
        authorize, user, event, seq = self._authorize, client.user, self._events[topic], reader.seq
        limit = 16  # rows per page: adapted to the rows' size so that a page is about one frame
        while True:
            rows, more = await reader.fetch(topic, limit)
            fetched = len(rows)
            if authorize is not None:
                rows = [row for row in rows if authorize(user, topic, row)]
            if not rows and more:
                limit = min(limit * 2, _MAX_PAGE_ROWS)  # all hidden: read on
                continue
            nbytes = 0
            for frame in self._snapshot_frames(topic, event, seq, rows, more):
                await self._send(client, frame)
                self.metrics.snapshot_frames.inc()
                nbytes += frame.nbytes
            if not more:
                return
            per_row = max(1, nbytes // max(1, len(rows)) * len(rows) // fetched)
            limit = max(1, min(_MAX_PAGE_ROWS, self.frame_bytes // per_row))

    def _snapshot_frames(
        self, topic: str, event: str, seq: int, rows: list[dict[str, Any]], more: bool
    ) -> list[_OutFrame]:
        """``rows`` as snapshot frames of at most ``frame_bytes`` (a bigger row alone), encoded."""
        frame = _OutFrame(SNAPSHOT, LogFrame(topic=topic, event=event, seq=seq, records=rows, more=more))
        self._encode(frame)
        if frame.nbytes <= self.frame_bytes or len(rows) <= 1:
            return [frame]
        half = len(rows) // 2
        return self._snapshot_frames(topic, event, seq, rows[:half], True) + self._snapshot_frames(
            topic, event, seq, rows[half:], more
        )

    async def _catch_up(self, client: _Client) -> None:
        prefetch: asyncio.Future[list[Change]] | None = None
        try:
            while True:
                cursor = client.cursor
                assert cursor is not None
                if cursor >= self.head:
                    # Synchronous from the check to here: the tailer cannot slip a batch in between.
                    client.live = True
                    self._enqueue(client, _OutFrame(LIVE, {"seq": cursor, "epoch": client.epoch}))
                    return
                if prefetch is None:
                    prefetch = asyncio.ensure_future(
                        self.log.read(cursor, limit=self.batch_size, max_bytes=self._read_bytes)
                    )
                changes = await prefetch
                prefetch = None
                if not changes:
                    client.cursor = self.head
                    continue
                if changes[0].seq != cursor + 1 and cursor < await self.log.horizon():
                    # Trimmed between our horizon check and this read: start over from a snapshot.
                    horizon = await self.log.horizon()
                    await self._emit(
                        client, RESET, {"reason": "cursor_expired", "cursor": cursor, "horizon": horizon}
                    )
                    await self._send_snapshot(client)
                    continue
                if changes[-1].seq < self.head:  # read the next page while this one is sent
                    prefetch = asyncio.ensure_future(
                        self.log.read(changes[-1].seq, limit=self.batch_size, max_bytes=self._read_bytes)
                    )
                events = self._events_for(client, changes)
                client.cursor = changes[-1].seq
                if events:
                    self.metrics.replayed.inc(len(events))
                    for frame in self._batch_frames(events):
                        await self._send(client, frame)
        finally:
            if prefetch is not None:
                prefetch.cancel()

    # -- the live path ---------------------------------------------------------

    async def _tail(self) -> None:
        log_ = self.log
        loop = asyncio.get_running_loop()
        last_broadcast = -float("inf")
        backlog = False
        while True:
            if self.coalesce and not backlog:
                pause = last_broadcast + self.coalesce - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
            try:
                changes = await log_.read(self.head, limit=self.batch_size, max_bytes=self._read_bytes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.healthy.set(0)
                log.warning("[RealtimeGateway] reading the change log failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self.metrics.healthy.set(1 if log_.healthy else 0)
            if not changes:
                await log_.wait(1.0)
                continue
            backlog = len(changes) >= self.batch_size
            if self.coalesce and not backlog:  # a read cut by max_bytes is a backlog too
                with contextlib.suppress(Exception):
                    backlog = changes[-1].seq < await log_.head()
            last_broadcast = loop.time()
            try:
                self._broadcast(changes)
            except Exception:  # never let one bad batch make the node deaf
                log.exception(
                    "[RealtimeGateway] broadcasting seq %d-%d failed", changes[0].seq, changes[-1].seq
                )

    def _broadcast(self, changes: Sequence[Change]) -> None:
        """Hand a batch to every live client; synchronous with the head update.

        A failure for one client (a bug) drops that client, which resumes from
        its own cursor later: the others, and the head, are not affected.
        """
        self.head = changes[-1].seq
        metrics = self.metrics
        metrics.changes.inc(len(changes))
        metrics.head.set(self.head)
        metrics.lag.set(max(0.0, time.time() - changes[-1].ts))
        shared: dict[frozenset[str], list[_OutFrame]] = {}
        first = changes[0].seq
        for client in list(self._clients.values()):  # _enqueue may drop a slow client
            if not client.live:
                continue
            try:
                cursor = client.cursor
                if self._authorize is None and not client.skip and cursor is not None and cursor < first:
                    # Clients of the same topics get the same frames, encoded once.
                    frames = shared.get(client.topics)
                    if frames is None:
                        frames = shared[client.topics] = self._batch_frames(self._events_for(client, changes))
                else:
                    frames = self._batch_frames(self._events_for(client, changes))
                client.cursor = self.head
                for frame in frames:
                    if not self._enqueue(client, frame):
                        break
            except Exception:
                log.exception("[RealtimeGateway] sending %d-%d to %s failed", first, self.head, client.sid)
                self._drop(client)

    def _batch_frames(self, events: list[Any]) -> list[_OutFrame]:
        """``events`` as batch frames of at most ``frame_bytes`` each (a bigger change alone), encoded."""
        if not events:
            return []
        frame = _OutFrame(BATCH, LogFrame(events=events), len(events))
        self._encode(frame)
        if frame.nbytes <= self.frame_bytes or len(events) == 1:
            return [frame]
        parts = min(len(events), -(-frame.nbytes // self.frame_bytes))
        step = -(-len(events) // parts)
        frames: list[_OutFrame] = []
        for start in range(0, len(events), step):
            frames.extend(self._batch_frames(events[start : start + step]))
        return frames

    def _events_for(self, client: _Client, changes: Sequence[Change]) -> list[Any]:
        """The ``[event, payload]`` pairs of ``changes`` this client may see and has not seen."""
        topics, skip, cursor = client.topics, client.skip, client.cursor or 0
        authorize, user, names, key_only = self._authorize, client.user, self._events, self._key_only_old
        events: list[Any] = []
        for change in changes:
            if change.seq <= cursor or change.topic not in topics:
                continue
            if skip and change.seq in skip:
                continue
            if authorize is not None:
                visible = _visible_change(authorize, user, change, self.topics[change.topic].primary_key)
                if visible is None:
                    continue
                change = visible
            payload = change.to_payload()
            if key_only and change.old is not None and change.topic in key_only:
                key = key_only[change.topic]
                payload["old"] = {key: change.old.get(key)}
            events.append([names[change.topic], payload])
        if skip and cursor >= max(skip):
            client.skip = frozenset()
        return events

    def _enqueue(self, client: _Client, frame: _OutFrame) -> bool:
        """Queue a frame for a client; drop the client (and return False) if it is too far behind."""
        self._encode(frame)  # eagerly: once per shared frame, and its size is known
        if (
            client.queued + frame.size > self.client_queue_limit
            or client.queued_bytes + frame.nbytes > self.client_queue_bytes
        ):
            log.warning(
                "[RealtimeGateway] %s fell %d changes (%d bytes) behind; dropping it",
                client.sid,
                client.queued,
                client.queued_bytes,
            )
            self.metrics.dropped.inc()
            self._drop(client)
            return False
        client.queue.append(frame)
        client.queued += frame.size
        client.queued_bytes += frame.nbytes
        self._queued_total += frame.nbytes
        client.ready.set()
        return True

    def _deliver_to_room(self, event: str, data: Any, room: str, skip_sid: Any) -> bool:
        """Queue an emit to a topic room (a client broadcast) for each of this node's clients in it."""
        if not room.startswith(_ROOM_PREFIX):
            return False
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        frame = _OutFrame(event, data)  # shared: encoded once for every receiver
        receivers = 0
        for sid, _ in list(self.sio.manager.get_participants("/", room)):
            client = self._clients.get(sid)
            if client is not None and sid not in skip:
                receivers += self._enqueue(client, frame)
        if receivers:
            self.metrics.broadcasts.inc(receivers)
        return True

    def _drop(self, client: _Client) -> None:
        """Forget a client and cut its connection now (its socket may not drain); it resumes later."""
        self._forget(client.sid)
        transport = client.transport
        if transport is not None:
            transport.abort()
        task = asyncio.ensure_future(self.sio.disconnect(client.sid))
        task.add_done_callback(_log_failure)

    def _encode(self, frame: _OutFrame) -> list[Any]:
        """The frame's engine.io packets, encoded once (shared frames are shared by many clients)."""
        packets = frame.packets
        if packets is None:
            encoded = self.sio.packet_class(
                socketio.packet.EVENT, namespace="/", data=[frame.name, frame.data]
            ).encode()
            parts = encoded if isinstance(encoded, list) else [encoded]
            packets = frame.packets = [engineio.packet.Packet(engineio.packet.MESSAGE, p) for p in parts]
            frame.nbytes = sum(len(p) for p in parts)
            frame.data = None  # the encoded form is all that is needed now
        return packets

    def _socket_backlog(self, eio_sid: str) -> int:
        """Packets python-socketio holds for this client, not yet written to its socket."""
        try:
            return int(self.sio.eio.sockets[eio_sid].queue.qsize())
        except (KeyError, AttributeError):
            return 0

    async def _write(self, client: _Client) -> None:
        queue, sent = client.queue, self.metrics.sent
        try:
            while True:
                await client.ready.wait()
                client.ready.clear()
                while queue:
                    frame = queue.popleft()
                    await self._send(client, frame)
                    client.queued -= frame.size
                    client.queued_bytes -= frame.nbytes
                    self._queued_total -= frame.nbytes
                    sent.inc(frame.size)
                self.metrics.queued_bytes.set(self._queued_total)
        except _Stalled as exc:
            self._drop_stalled(client, exc)

    def _drop_stalled(self, client: _Client, exc: _Stalled) -> None:
        log.warning("[RealtimeGateway] %s: %s; dropping it", client.sid, exc)
        self.metrics.stalled.inc()
        self._drop(client)

    async def _send(self, client: _Client, frame: _OutFrame) -> None:
        """Send one frame to one client, straight to its socket (never through Redis).

        Raises:
            _Stalled: The client did not take what it was sent before within ``client_send_timeout``.
        """
        eio_sid = self.sio.manager.eio_sid_from_sid(client.sid, "/")
        if eio_sid is None:
            return
        packets = self._encode(frame)
        # python-socketio's per-socket queue is unbounded: hand it little (one big frame),
        # so a client that stops reading backs up in its own queue, where the limits apply.
        backlog = 1 if frame.nbytes > _BIG_FRAME else _SOCKET_BACKLOG
        if self._socket_backlog(eio_sid) > backlog:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.client_send_timeout
            pause = 0.002
            while self._socket_backlog(eio_sid) > backlog:
                if loop.time() > deadline:
                    raise _Stalled(f"took no frame for {self.client_send_timeout:g} s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
        for packet in packets:
            await self.sio.eio.send_packet(eio_sid, packet)

    async def _emit(self, client: _Client, name: str, data: Any) -> None:
        await self._send(client, _OutFrame(name, data))

    # -- housekeeping ------------------------------------------------------------

    async def _trim(self) -> None:
        retention = self.retention
        while True:
            await asyncio.sleep(retention.interval)
            try:
                removed = await self.log.trim(max_age=retention.max_age, max_rows=retention.max_rows)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("[RealtimeGateway] trimming the change log failed: %s", exc)
                continue
            if removed:
                log.info("[RealtimeGateway] trimmed %d changes from the log", removed)

    def _health_report(self) -> tuple[int, dict[str, Any]]:
        """What ``/healthz`` answers: its HTTP status (200 or 503) and body."""
        redis_ok = self.fanout is None or self.fanout.healthy
        tasks_ok = self._opened and all(not t.done() for t in self._tasks)
        healthy = self.log.healthy and redis_ok and tasks_ok
        body = {
            "status": "ok" if healthy else "unhealthy",
            "log": "up" if self.log.healthy else "down",
            "redis": "none" if self.fanout is None else ("up" if redis_ok else "down"),
            "clients": len(self._clients),
            "head": self.head,
        }
        return (200 if healthy else 503), body

    def _metrics_report(self) -> tuple[bytes, str]:
        """What ``/metrics`` answers: the Prometheus text and its content type."""
        self.metrics.healthy.set(1 if self.log.healthy else 0)
        return generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST

    async def _healthz(self, request: web.Request) -> web.Response:
        status, body = self._health_report()
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics_report()
        return web.Response(body=body, headers={"Content-Type": content_type})


_ROOM_PREFIX = "topic:"


def _room(topic: str) -> str:
    return f"{_ROOM_PREFIX}{topic}"


def _visible_change(authorize: RowFilter, user: User, change: Change, primary_key: str) -> Change | None:
    """Rewrite a change as this user sees it: hidden rows vanish, revealed rows appear."""
    topic = change.topic
    after = change.record is not None and authorize(user, topic, change.record)
    if change.op is Op.INSERT:
        return change if after else None
    before = change.old is not None and authorize(user, topic, change.old)
    if change.op is Op.DELETE:
        return change if before else None
    if after and before:
        return change
    if after:
        return attrs.evolve(change, op=Op.INSERT, old=None)
    if before or change.old is None:
        # Hidden now: the client must drop it (harmless if it never had it).
        old = change.old or {primary_key: (change.record or {}).get(primary_key)}
        return attrs.evolve(change, op=Op.DELETE, record=None, old=old)
    return None


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("[RealtimeGateway] background task failed", exc_info=task.exception())
