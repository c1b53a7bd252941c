"""Room emits handed to the gateway's own delivery: python-socketio's client manager, bounded.

python-socketio writes an emit straight into each client's unbounded socket
queue. :class:`QueuedManager` hands an emit to a room to the gateway's
delivery instead (:meth:`Delivery.deliver_to_room
<rxstore.gateway.delivery.queues.Delivery.deliver_to_room>`), so it goes
through the same bounded per-client queue as the changes. The Redis manager
of :mod:`rxstore.gateway.delivery.fanout` is one too: each node delivers what
any node published through it. It overrides python-socketio 5.18.1's public
``AsyncManager.emit``, keeping its parameters (pinned in
``tests/gateway/test_library_pins.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import socketio

__all__ = ["LocalDelivery", "QueuedManager"]


LocalDelivery = Callable[[str, Any, str, Any], bool]
"""``deliver(event, data, room, skip_sid) -> handled``: the gateway's own delivery to its clients."""


class QueuedManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's client manager, handing emits to a room to the gateway's client queues.

    python-socketio writes an emit straight into each client's unbounded
    socket queue, so a client that stops reading could make the gateway hold
    every broadcast for it. With :attr:`deliver` set (by the gateway), an emit
    to a room is handed to it instead and goes through the same bounded
    per-client queue as the changes; with Redis, this is where each node
    delivers what any node published.
    """

    deliver: LocalDelivery | None = None

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """Emit ``event``; a room emit goes to :attr:`deliver` when it takes it."""
        room = to or room
        deliver = self.deliver
        if (
            deliver is not None
            and callback is None
            and isinstance(room, str)
            and deliver(event, data, room, skip_sid)
        ):
            return
        await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)
