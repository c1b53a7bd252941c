"""Scale-out: client-originated broadcasts across gateway nodes through Redis.

Change events never go through Redis: every node tails the same change log
itself. Redis carries only what is not in the log (presence, typing, ...),
through python-socketio's ``AsyncRedisManager``. A known failure of such
setups is a node whose Redis listener died silently and that no longer hears
the others. Here each node sends a heartbeat through the manager and watches
its own listener hear it: when it stops hearing, ``/healthz`` says so and the
listener is restarted.

The listener's private steps in python-socketio 5.18.1 are reached through
:mod:`~rxstore.gateway.access.socketio_seam` (its
:class:`~rxstore.gateway.access.socketio_seam.RedisListenerHooks` and
:func:`~rxstore.gateway.access.socketio_seam.start_listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from rxstore.gateway.access.socketio_seam import RedisListenerHooks, start_listener
from rxstore.gateway.delivery.queued_manager import QueuedManager

__all__ = ["HEARTBEAT_ROOM", "RedisFanout"]

log = logging.getLogger("rxstore.gateway")

HEARTBEAT_ROOM = "rxstore:heartbeat"
"""A room nobody joins: heartbeats emitted to it travel through Redis and do nothing else."""


class _WatchedRedisManager(RedisListenerHooks, QueuedManager):
    """An ``AsyncRedisManager`` that records when its listener last heard anything.

    What it hears for a room goes to the gateway's delivery
    (:class:`~rxstore.gateway.delivery.queued_manager.QueuedManager`).

    Its listener also retries a lost Redis every ``max_retry`` seconds at most:
    python-socketio's own doubles its pause up to 60 s, so after a long outage a
    node could stay deaf for a minute after Redis was back.
    """

    last_heard: float = 0.0
    max_retry: float = 2.0

    def heard(self, message: Any) -> None:
        """Record when the listener last heard its channel."""
        self.last_heard = time.monotonic()

    async def redis_messages(self) -> AsyncIterator[Any]:
        """The subscription's messages, retrying a lost Redis after a pause of ``max_retry`` s at most."""
        pause = 0.25
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self.connect_redis()
                    await self.pubsub.subscribe(self.channel)
                    subscribed = True
                    pause = 0.25
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:
                log.warning(
                    "[RealtimeGateway] cannot receive from Redis (%s); retrying in %.2g s", exc, pause
                )
                subscribed = False
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.max_retry)


class RedisFanout:
    """The Redis client manager of one gateway node, with a liveness watchdog.

    Args:
        url: ``redis://host:port/db`` (or ``unix://...``).
        channel: The pub/sub channel shared by the nodes.
        heartbeat: Seconds between heartbeats; unhealthy after three missed.
    """

    def __init__(self, url: str, *, channel: str = "rxstore", heartbeat: float = 0.5) -> None:
        self.url = url
        self.heartbeat = heartbeat
        # Bounded socket operations: a Redis that hangs must not hang publishes or shutdown.
        options = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0, "health_check_interval": 5}
        self.manager: Any = _WatchedRedisManager(url, channel=channel, redis_options=options)
        self.restarts = 0
        self._started = time.monotonic()

    @property
    def healthy(self) -> bool:
        """True while this node's listener hears the heartbeats."""
        heard = self.manager.last_heard or self._started
        return time.monotonic() - heard < 3 * self.heartbeat + 0.5

    async def watch(self, sio: Any) -> None:
        """Send heartbeats forever; restart the listener when it died or went deaf."""
        was_healthy = True
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await sio.emit("rxstore:heartbeat", None, room=HEARTBEAT_ROOM)
            except Exception as exc:  # publish failed: Redis is down
                log.debug("[RealtimeGateway] Redis heartbeat publish failed: %s", exc)
            healthy = self.healthy
            if healthy != was_healthy:
                log.warning("[RealtimeGateway] Redis fan-out %s", "recovered" if healthy else "is deaf")
                was_healthy = healthy
            thread = getattr(self.manager, "thread", None)
            if thread is not None and thread.done():
                log.warning("[RealtimeGateway] Redis listener stopped; restarting it")
                self.restarts += 1
                start_listener(self.manager)

    async def close(self) -> None:
        """Stop the listener and close the Redis connections."""
        thread = getattr(self.manager, "thread", None)
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(thread, 2.0)
        redis = getattr(self.manager, "redis", None)
        if redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(redis.aclose(), 2.0)
