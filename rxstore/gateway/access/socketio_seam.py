"""The one place rxstore reaches under python-socketio's public API.

Every private name of python-socketio that the gateway needs is touched here
and nowhere else, each commented with the version it was written against
(python-socketio 5.18.1, with python-engineio 4.15.1). The rest of the
gateway subclasses these bases, which turn the private steps it changes into
public hooks, and calls these functions:

* :class:`EngineIOHooks`: a server whose Engine.IO connect, message and
  disconnect handlers (``AsyncServer._handle_eio_connect`` /
  ``_handle_eio_message`` / ``_handle_eio_disconnect``) call
  :meth:`~EngineIOHooks.handle_engineio_connect`,
  :meth:`~EngineIOHooks.handle_engineio_message` and
  :meth:`~EngineIOHooks.handle_engineio_disconnect`;
* :class:`RedisListenerHooks`: a Redis client manager whose listener
  (``AsyncRedisManager._listen``, ``_redis_listen_with_retries``,
  ``_redis_connect``) calls :meth:`~RedisListenerHooks.heard` and reads
  :meth:`~RedisListenerHooks.redis_messages`;
* :func:`start_listener`: (re)starting such a manager's listener
  (``AsyncPubSubManager._thread``), and :func:`initialize_manager`: starting
  it before the first connection would (``AsyncServer.manager_initialized``);
* :func:`packet_dict`: a packet as its msgpack serializer packs it
  (``Packet._to_dict``).

``tests/gateway/test_library_pins.py`` fails when one of these names changes;
``tests/gateway/access/test_socketio_seam.py`` when what they do changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import socketio

__all__ = ["EngineIOHooks", "RedisListenerHooks", "initialize_manager", "packet_dict", "start_listener"]


class EngineIOHooks(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server, calling public hooks for each Engine.IO connection, message, disconnection.

    A subclass overrides the hooks and calls ``super()`` for python-socketio's
    own handling (which each hook does by default).
    """

    # python-socketio 5.18.1: BaseServer.__init__ registers these three with its engine.io server
    # (self.eio.on("connect" / "message" / "disconnect", ...)), bound to the instance.

    async def _handle_eio_connect(self, eio_sid: str, environ: Any) -> Any:
        return await self.handle_engineio_connect(eio_sid, environ)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        await self.handle_engineio_message(eio_sid, data)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        await self.handle_engineio_disconnect(eio_sid, reason)

    async def handle_engineio_connect(self, eio_sid: str, environ: Any) -> Any:
        """An Engine.IO connection opened: python-socketio keeps its ``environ`` (and starts its manager)."""
        return await super()._handle_eio_connect(eio_sid, environ)

    async def handle_engineio_message(self, eio_sid: str, data: Any) -> None:
        """An Engine.IO message arrived: python-socketio decodes it (its ``packet_class``) and handles it."""
        await super()._handle_eio_message(eio_sid, data)

    async def handle_engineio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        """An Engine.IO connection closed: python-socketio disconnects it from every namespace."""
        await super()._handle_eio_disconnect(eio_sid, reason)


class RedisListenerHooks(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis client manager, its listener's steps behind public hooks.

    Its listener task calls :meth:`heard` for each message of its channel and
    reads the Redis subscription from :meth:`redis_messages`, which
    :meth:`connect_redis` (re)connects.
    """

    # python-socketio 5.18.1: the listener task runs _thread(), which iterates _listen(), which
    # keeps the messages of self.channel from _redis_listen_with_retries().

    async def _listen(self) -> AsyncIterator[Any]:
        async for message in super()._listen():
            self.heard(message)
            yield message

    def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        return self.redis_messages()

    def heard(self, message: Any) -> None:
        """The listener received ``message`` on its channel (before it is handled); does nothing here."""

    def redis_messages(self) -> AsyncIterator[Any]:
        """Every message of the Redis subscription, (re)connecting and subscribing as needed.

        python-socketio's own by default: it retries a lost Redis after a pause
        that doubles up to 60 s.
        """
        messages: AsyncIterator[Any] = super()._redis_listen_with_retries()
        return messages

    def connect_redis(self) -> None:
        """(Re)connect: new ``redis`` and ``pubsub`` clients from the manager's url and options."""
        # python-socketio 5.18.1: _redis_connect() sets self.redis, self.pubsub and self.connected.
        self._redis_connect()


def initialize_manager(server: Any) -> None:
    """Initialize the client manager of ``server`` (a python-socketio server) now, unless it was.

    python-socketio does it on the first connection; a pub/sub manager starts
    its listener then, so a node with no client yet would hear no other node.
    """
    # python-socketio 5.18.1: _handle_eio_connect initializes the manager once, by manager_initialized.
    if not server.manager_initialized:
        server.manager_initialized = True
        server.manager.initialize()


def start_listener(manager: Any) -> asyncio.Future[None]:
    """Start the listener task of ``manager`` (a python-socketio pub/sub manager) again; that task.

    It replaces ``manager.thread``, which python-socketio set when the
    manager was initialized and which should be done (or cancelled) by now.
    """
    # python-socketio 5.18.1: AsyncPubSubManager.initialize() runs _thread() as self.thread.
    thread: asyncio.Future[None] = asyncio.ensure_future(manager._thread())
    manager.thread = thread
    return thread


def packet_dict(packet: Any) -> dict[str, Any]:
    """``packet`` (a python-socketio packet) as the dict its msgpack serializer packs."""
    # python-socketio 5.18.1: MsgPackPacket.encode() packs self._to_dict().
    fields: dict[str, Any] = packet._to_dict()
    return fields
