"""The connect handshake and the sessions it opens: auth checks, token expiry, forgetting.

:func:`parse_auth` checks a client's ``auth`` payload (a pure function of it and
the gateway's hooks); :class:`Sessions` turns an accepted one into a live
:class:`~rxstore.gateway.delivery.queues.Client`, ends it when its token expires and
forgets it when it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import socketio

from rxstore.gateway.access.auth import TokenAuth, User
from rxstore.gateway.access.guard import BadPayload
from rxstore.gateway.api import TopicFilter
from rxstore.gateway.delivery.queues import Client, Delivery, Stalled, log_failure, room
from rxstore.gateway.delivery.sync import Sync
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.queries.visibility import Throttled
from rxstore.protocol.errors import AuthError
from rxstore.protocol.events import CLOSING
from rxstore.protocol.subsets import Subset, SubsetError, parse_subscription

if TYPE_CHECKING:
    from rxstore.gateway.live_queries import LiveQueries

__all__ = ["SHUTDOWN_GRACE", "ConnectRequest", "Refusal", "Sessions", "authorize_failed", "parse_auth"]

log = logging.getLogger("rxstore.gateway")

SHUTDOWN_GRACE = 2.0
"""Seconds a stopping gateway waits for a client's connection before cutting it."""


@attrs.frozen
class ConnectRequest:
    """An accepted ``auth`` payload: who connects, to what, and from where in the log."""

    user: User
    topics: frozenset[str]
    cursor: int | None
    epoch: str | None
    subscriptions: tuple[tuple[str, Subset, int | None], ...] = ()
    """``(id, subset, since)`` of each subscription besides ``topics``."""
    cursor_ts: float | None = None
    """The commit time of the change at ``cursor``, as the client was sent it (``None``: not sent)."""


@attrs.frozen
class Refusal:
    """A refused ``auth`` payload: the ``reason`` and ``message`` the client is refused with."""

    reason: str
    message: str


def parse_auth(
    auth: Any,
    *,
    verify: Callable[[Any], User],
    topics: Collection[str],
    may_subscribe: Callable[[User, str], bool],
    max_subscriptions: int = 64,
) -> ConnectRequest | Refusal:
    """Check a CONNECT's ``auth`` payload: the request it makes, or why it is refused.

    Args:
        auth: The payload as received (a :class:`~rxstore.gateway.access.guard.BadPayload`
            when the wire guard refused it).
        verify: Verifies ``auth["token"]``: the user, or :class:`~rxstore.protocol.errors.AuthError`.
        topics: The served topics, in order (the default subscription is theirs).
        may_subscribe: Whether a user may subscribe to a topic.
        max_subscriptions: Most ``subscriptions`` one payload may hold.

    Returns:
        The request, or the first refusal: ``bad_request`` (unreadable payload, bad
        ``topics``, ``cursor``, ``cursor_ts`` or ``epoch``), ``invalid_token`` (no mapping), the
        token's own reason, or ``forbidden_topic``.
    """
    if type(auth) is BadPayload:  # not JSON, too big, ...: see rxstore.gateway.access.guard
        return Refusal("bad_request", f"auth payload refused: {auth.message}")
    if not isinstance(auth, Mapping):
        return Refusal("invalid_token", "send auth={'token': '<jwt>', 'topics': [...], 'cursor': n}")
    try:
        user = verify(auth.get("token"))
    except AuthError as exc:
        return Refusal(exc.reason, str(exc))
    subscriptions = auth.get("subscriptions")
    if subscriptions is not None and type(subscriptions) is not list:
        return Refusal("bad_request", "'subscriptions' must be a list of subscription objects")
    requested = auth.get("topics")
    if requested is None:
        requested = [] if subscriptions else [t for t in topics if may_subscribe(user, t)]
    if not isinstance(requested, list) or not all(isinstance(t, str) for t in requested):
        return Refusal("bad_request", "'topics' must be a list of topic names")
    for topic in requested:
        if topic not in topics:
            return Refusal("forbidden_topic", f"no such topic {topic!r}")
        if not may_subscribe(user, topic):
            return Refusal("forbidden_topic", f"{user.id!r} may not subscribe to {topic!r}")
    cursor = auth.get("cursor")
    if cursor is not None and (type(cursor) is not int or cursor < 0):
        return Refusal("bad_request", "'cursor' must be a non-negative integer or null")
    epoch = auth.get("epoch")
    if epoch is not None and type(epoch) is not str:
        return Refusal("bad_request", "'epoch' must be the string of an rxstore:live frame, or null")
    cursor_ts = auth.get("cursor_ts")
    if cursor_ts is not None and type(cursor_ts) not in (int, float):
        return Refusal("bad_request", "'cursor_ts' must be the number 'ts' of the change at 'cursor' or null")
    parsed: list[tuple[str, Subset, int | None]] = []
    if subscriptions:
        if len(subscriptions) + len(requested) > max_subscriptions:
            return Refusal(
                "bad_request", f"at most {max_subscriptions} subscriptions (topics included) per connection"
            )
        try:
            parsed = [parse_subscription(item) for item in subscriptions]
        except SubsetError as exc:
            return Refusal("bad_request", str(exc))
        ids = [sub_id for sub_id, _, _ in parsed]
        if len(set(ids)) != len(ids):
            return Refusal("bad_request", "two subscriptions have the same id")
        for sub_id, subset, _ in parsed:
            if subset.topic not in topics:
                return Refusal("forbidden_topic", f"subscription {sub_id!r}: no such topic {subset.topic!r}")
            if not may_subscribe(user, subset.topic):
                return Refusal("forbidden_topic", f"{user.id!r} may not subscribe to {subset.topic!r}")
    ts = None if cursor_ts is None else float(cursor_ts)
    return ConnectRequest(user, frozenset(requested), cursor, epoch, tuple(parsed), cursor_ts=ts)


def authorize_failed(metrics: Metrics, warnings: Throttled) -> Callable[[User, str, Exception], None]:
    """What to do when ``authorize`` raised (the row is hidden): count it and warn (throttled)."""

    def failed(user: User, topic: str, exc: Exception) -> None:
        metrics.authorize_errors.inc()
        warnings.warning(
            "[RealtimeGateway] authorize raised for %r on a %r row (hidden from them): %r",
            user.id,
            topic,
            exc,
        )

    return failed


class Sessions:
    """The gateway's connected clients: opening, expiring and forgetting their sessions.

    Args:
        sio: The gateway's Socket.IO server.
        metrics: The gateway's metrics.
        clients: The live clients by sid (shared with the tailer and delivery).
        delivery: The clients' send queues.
        sync: Brings a new client up to date.
        auth: Verifies the clients' tokens.
        topics: The served topics.
        can_subscribe: The topic filter (``None``: every served topic).
        warnings: Throttles the warnings about hooks that raise.
        max_pending_syncs: Most clients being brought up to date at once; a connect
            beyond it is refused with ``unavailable`` and ``retry_after`` (``None``: no limit).
        shed_retry_after: The ``retry_after`` (seconds) such a refusal carries.
    """

    def __init__(
        self,
        sio: Any,
        metrics: Metrics,
        clients: dict[str, Client],
        *,
        delivery: Delivery,
        sync: Sync,
        auth: TokenAuth,
        topics: Collection[str],
        can_subscribe: TopicFilter | None,
        warnings: Throttled,
        max_pending_syncs: int | None = 1000,
        shed_retry_after: float = 1.0,
    ) -> None:
        if max_pending_syncs is not None and max_pending_syncs < 1:
            raise ValueError(f"max_pending_syncs must be >= 1 or None, got {max_pending_syncs}")
        if shed_retry_after <= 0:
            raise ValueError(f"shed_retry_after must be > 0 seconds, got {shed_retry_after}")
        self.max_pending_syncs = max_pending_syncs
        self.shed_retry_after = shed_retry_after
        self.sio = sio
        self.metrics = metrics
        self.clients = clients
        self.delivery = delivery
        self.sync = sync
        self.auth = auth
        self.topics = topics
        self.can_subscribe = can_subscribe
        self.warnings = warnings
        self.plain: dict[str, Client] = {}
        """The clients that follow whole tables only: the tailer's (set by the gateway)."""
        self.live_queries: LiveQueries
        """Set by the gateway (it needs these sessions' ``may_subscribe``)."""

    def refuse(
        self, reason: str, message: str, *, retry_after: float | None = None
    ) -> socketio.exceptions.ConnectionRefusedError:
        """Count and log a refused connection; the error to raise from the connect handler.

        ``retry_after`` (seconds) goes in the refusal's data when given.
        """
        self.metrics.refused.labels(reason).inc()
        log.info("[RealtimeGateway] refused a connection: %s (%s)", reason, message)
        data: dict[str, Any] = {"reason": reason, "message": message}
        if retry_after is not None:
            data["retry_after"] = retry_after
        return socketio.exceptions.ConnectionRefusedError(reason, data)

    def shed(self) -> socketio.exceptions.ConnectionRefusedError | None:
        """The refusal of a new connection while the gateway is overloaded, or ``None`` when it is not.

        Overloaded: ``max_pending_syncs`` clients are being brought up to date.
        """
        limit, pending = self.max_pending_syncs, self.sync.pending
        if limit is None or pending < limit:
            return None
        wait = self.shed_retry_after
        return self.refuse(
            "unavailable",
            f"overloaded: {pending} clients are being brought up to date (max_pending_syncs={limit}); "
            f"retry in {wait:g} s",
            retry_after=wait,
        )

    async def connect(self, sid: str, environ: Any, auth: Any) -> None:
        """Open the session of a CONNECT: sync, then live; its token's expiry timed.

        Raises:
            socketio.exceptions.ConnectionRefusedError: ``auth`` is refused (see :func:`parse_auth`),
                or the gateway is overloaded (``unavailable``, see :meth:`shed`).
        """
        refusal = self.shed()
        if refusal is not None:
            raise refusal
        self.sync.admit()  # counted from the request, before this coroutine first waits
        try:
            client = await self._open(sid, environ, auth)
            task = asyncio.create_task(self.sync.run(client), name=f"rxstore-sync-{sid}")
        except BaseException:
            self.sync.release()
            raise
        task.add_done_callback(lambda _: self.sync.release())  # also if cancelled before it starts
        client.tasks.append(task)
        client.tasks.append(asyncio.create_task(self.delivery.write(client), name=f"rxstore-write-{sid}"))
        user = client.user
        exp = user.claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            client.expires = float(exp) + self.auth.leeway
            loop = asyncio.get_running_loop()
            client.expiry = loop.call_later(max(0.0, client.expires - time.time()), self.expire, client)

    async def _open(self, sid: str, environ: Any, auth: Any) -> Client:
        """The client of an accepted ``auth``, registered and in its rooms (not synced yet)."""
        request = parse_auth(
            auth,
            verify=self.auth.verify,
            topics=self.topics,
            may_subscribe=self.may_subscribe,
            max_subscriptions=self.live_queries.max_subscriptions,
        )
        if isinstance(request, Refusal):
            raise self.refuse(request.reason, request.message)
        cursor, ts = request.cursor, request.cursor_ts
        client = Client(sid, request.user, request.topics, cursor, epoch=request.epoch, cursor_ts=ts)
        if request.subscriptions:
            await self._subscribe(client, request)
        http = environ.get("aiohttp.request") if isinstance(environ, Mapping) else None
        client.transport = getattr(http, "transport", None)
        self.clients[sid] = client
        if not client.subscriptions:
            self.plain[sid] = client
        for topic in client.topics:
            await self.sio.enter_room(sid, room(topic))
        self.metrics.clients.set(len(self.clients))
        return client

    async def _subscribe(self, client: Client, request: ConnectRequest) -> None:
        """Index a connecting client's subscriptions (with their ``since`` if it resumes)."""
        live_queries = self.live_queries
        subscriptions = []
        for sub_id, asked, since in request.subscriptions:
            try:
                subset = await live_queries.check(client.user, sub_id, asked)  # its claims filled in
            except SubsetError as exc:
                reason = "forbidden_topic" if exc.code == "forbidden_topic" else "bad_request"
                raise self.refuse(reason, str(exc)) from None
            resumes = client.cursor is not None
            subscriptions.append(live_queries.new(client, sub_id, subset, since if resumes else None))
        live_queries.index_client(client, subscriptions)

    def may_subscribe(self, user: User, topic: str) -> bool:
        """``can_subscribe(user, topic)``, failing closed: a hook that raises denies (and is counted)."""
        if self.can_subscribe is None:
            return True
        try:
            return bool(self.can_subscribe(user, topic))
        except Exception as exc:  # fail closed: a hook that raises denies
            self.metrics.authorize_errors.inc()
            self.warnings.warning(
                "[RealtimeGateway] can_subscribe raised for %r on %r (denied): %r", user.id, topic, exc
            )
            return False

    def expire(self, client: Client) -> None:
        """End a session whose token expired: nothing more is sent or accepted; it is told why."""
        if self.clients.get(client.sid) is not client:
            return
        self.metrics.expired.inc()
        log.info("[RealtimeGateway] %s (%s): token expired, session ended", client.sid, client.user.id)
        self.forget(client.sid)
        task = asyncio.ensure_future(
            self.close(client, "token_expired", "the token expired: reconnect with a fresh one")
        )
        task.add_done_callback(log_failure)

    async def close(self, client: Client, reason: str, message: str) -> None:
        """Tell a client why its session ends (``rxstore:closing``, 2 s at most), then disconnect it."""
        with contextlib.suppress(Stalled):
            await asyncio.wait_for(
                self.delivery.emit(client, CLOSING, {"reason": reason, "message": message}), 2.0
            )
        await self.sio.disconnect(client.sid)

    def forget(self, sid: str) -> None:
        """Drop a client: its tasks, expiry timer and queue; idempotent."""
        client = self.clients.pop(sid, None)
        self.plain.pop(sid, None)
        if client is None:
            return
        client.live = False
        client.gone = True  # work still under way for it (a subscribe, a broadcast) ends there
        for task in client.tasks:
            task.cancel()
        if client.expiry is not None:
            client.expiry.cancel()
        self.delivery.clear(client)
        self.live_queries.forget(client)
        self.metrics.clients.set(len(self.clients))

    async def disconnect_all(self) -> None:
        """Disconnect and forget every client, and let its close frame go (1 s at most)."""
        transports = [c.transport for c in self.clients.values() if c.transport is not None]

        async def disconnect(sid: str) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sio.disconnect(sid), SHUTDOWN_GRACE)
            self.forget(sid)

        # All at once: one by one, a thousand clients took seconds before the gateway could restart.
        await asyncio.gather(*(disconnect(sid) for sid in list(self.clients)))
        await self.sync.shared.stop()
        # Let the close frames go out before the HTTP server goes: some clients
        # (Node's ws) otherwise wait out a 30 s close timeout that aiohttp waits for.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while self.sio.eio.sockets and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for transport in transports:  # a client that stopped reading cannot take its close frame
            if not transport.is_closing():
                transport.abort()
