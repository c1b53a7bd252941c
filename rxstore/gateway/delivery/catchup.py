"""A live client that falls behind catches up from the change log, on the same connection.

When a live batch would put a client over its bounds (``client_queue_limit``
changes or ``client_queue_bytes`` bytes waiting for it), the tailer queues no
more for it: its cursor becomes the seq of the last change it was handed
(queued or written), and it leaves live delivery. A task of its own then waits
until the client has taken every frame queued for it, replays the log after
that cursor as for a resuming client (:meth:`~rxstore.gateway.delivery.sync.Sync.catch_up`:
a page at a time, each frame sent once the client took the ones before, the same
row filter and subscriptions) and puts it back live at the head, in the same
synchronous step that finds its cursor there: no change is missed or repeated::

    tailer     ──[1-200]──[201-400]──[401-600]──            (client's bound: 300)
    client     live: 1-200 queued │ 201-400 over: cursor 200 │ replay 201-600 │ live

The client sees a steady stream on its connection and no second ``rxstore:live``
(it never left, from its point of view), unless the log was trimmed past its
cursor meanwhile: then it gets ``rxstore:reset``, snapshots and ``rxstore:live``,
as a resuming client does. A client that takes nothing is still dropped after
``client_send_timeout`` (``rxstore_stalled_clients_dropped``).

Client broadcasts are not in the log, so they cannot be replayed: one that would
put a client over its bounds drops that client, as before catch-up
(``rxstore_slow_clients_dropped``): it resumes from its cursor, knowing from the
reconnect that it may have missed messages, and a client that never reads is freed
at once. With ``RealtimeGateway(behind="drop")`` every client over its bounds is
dropped so (the behaviour before catch-up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Literal, Protocol, TypeVar

from rxstore.gateway.delivery.queues import Client, Delivery, OutFrame
from rxstore.gateway.metrics import Metrics

__all__ = ["BEHIND", "Behind", "CatchUp", "Replay"]

log = logging.getLogger("rxstore.gateway")

Behind = Literal["catch_up", "drop"]
"""What happens to a live client over its bounds: it catches up from the log, or it is dropped."""
BEHIND: tuple[Behind, ...] = ("catch_up", "drop")

T = TypeVar("T")


class Replay(Protocol):
    """What catching up needs of the log's replay (:class:`~rxstore.gateway.delivery.sync.Sync` has it)."""

    async def guarded(self, client: Client, work: Awaitable[T]) -> T | None:
        """Await ``work`` for ``client``; on failure drop or disconnect the client and return ``None``."""

    async def catch_up(self, client: Client, *, announce: bool = True) -> None:
        """Replay the log after ``client``'s cursor and mark it live (``announce``: say ``rxstore:live``)."""


class CatchUp:
    """Moves live clients that fall behind out of live delivery, and back once they caught up.

    Args:
        delivery: The clients' queues (its :attr:`~rxstore.gateway.delivery.queues.Delivery.keep` is set).
        replay: Replays the log to a client and marks it live (the gateway's
            :class:`~rxstore.gateway.delivery.sync.Sync`, which makes this object).
        metrics: The gateway's metrics.
        behind: ``"catch_up"`` (default) or ``"drop"`` (a client over its bounds is dropped).

    Raises:
        ValueError: ``behind`` is neither.
    """

    def __init__(
        self, delivery: Delivery, replay: Replay, metrics: Metrics, *, behind: Behind = "catch_up"
    ) -> None:
        if behind not in BEHIND:
            raise ValueError(f"behind must be 'catch_up' or 'drop', got {behind!r}")
        self.delivery = delivery
        self.replay = replay
        self.metrics = metrics
        self.behind = behind
        self.active = 0
        """Clients catching up now (``rxstore_catching_up``)."""
        if behind == "catch_up":
            delivery.keep = self.keep

    def keep(self, client: Client, frame: OutFrame) -> bool:
        """Handle a frame over ``client``'s bounds without dropping the client; ``False``: drop it.

        A live batch starts the client's catch-up (the tailer sets its cursor);
        anything else (a client broadcast, the gateway's own control frames) drops
        it, as before.
        """
        if frame.last is None or not client.live or self.delivery.clients.get(client.sid) is not client:
            return False
        self.start(client)
        return True

    def refill(self, client: Client, windows: list[Any]) -> None:
        """Take ``client`` out of live delivery to read ``windows`` again (its cursor is set).

        A client already out of it (over its bounds in the same batch) reads them in
        the catch-up under way.
        """
        client.stale.extend(windows)
        if client.live:
            self.start(client)

    def start(self, client: Client) -> None:
        """Take ``client`` out of live delivery and start its catch-up task."""
        client.live = False
        self.metrics.catchups.inc()
        log.info(
            "[RealtimeGateway] %s fell %d changes (%d bytes) behind; it catches up from the log",
            client.sid,
            client.queued,
            client.queued_bytes,
        )
        self.active += 1
        self.metrics.catching_up.set(self.active)
        task = asyncio.create_task(self.run(client), name=f"rxstore-catch-up-{client.sid}")
        client.tasks.append(task)  # cancelled with the client's other tasks when it goes
        task.add_done_callback(lambda done: self._done(client, done))

    def _done(self, client: Client, task: asyncio.Future[None]) -> None:
        """A catch-up ended (live again, dropped, or cancelled, even before it ran)."""
        self.active -= 1
        self.metrics.catching_up.set(self.active)
        if task in client.tasks:
            client.tasks.remove(task)

    async def run(self, client: Client) -> None:
        """Wait for ``client``'s queue to drain, replay the log after its cursor, then mark it live."""
        async with client.lock:
            if client.live or self.delivery.clients.get(client.sid) is not client:
                return  # brought up to date meanwhile (a new subscription), or gone
            await self.replay.guarded(client, self._catch_up(client))

    async def _catch_up(self, client: Client) -> None:
        await self.delivery.drain(client)  # Stalled if it takes nothing for client_send_timeout
        await self.replay.catch_up(client, announce=False)
