"""Getting frames to clients: per-client queues, encoding once, frame sizes and backpressure.

Every frame for a client (live batches, replays, snapshots, client
broadcasts) goes through that client's bounded queue or straight to its
socket through :meth:`Delivery.send`, which waits while python-engineio
still holds more than a few packets for it. A frame queued while nothing is
pending for a websocket client is written straight to its TCP transport
instead (the direct path, :mod:`rxstore.gateway.delivery.wire`). A live client that falls too far
behind catches up from the log on the same connection (:mod:`rxstore.gateway.delivery.catchup`);
one that takes no frame for ``client_send_timeout`` is dropped, and resumes from its cursor.

The frames are encoded with the server's packet class (for the gateway, one
of :mod:`rxstore.gateway.delivery.gateway_packets`). The python-socketio /
python-engineio names this relies on are public (``manager.eio_sid_from_sid``,
``manager.get_participants``, ``eio.send_packet``); what a socket's queue
holds is read through
:func:`~rxstore.gateway.access.engineio_seam.packets_queued`.
``tests/gateway/test_library_pins.py`` fails when one of them changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import engineio
import socketio

from rxstore.gateway.access.auth import User
from rxstore.gateway.access.engineio_seam import packets_queued
from rxstore.gateway.codec import LogFrame
from rxstore.gateway.delivery.gateway_packets import GatewayPacket
from rxstore.gateway.delivery.wire import DIRECT_BUFFER, Link, Links, websocket_bytes
from rxstore.gateway.metrics import Metrics
from rxstore.protocol.events import BATCH, SNAPSHOT
from rxstore.protocol.json_fast import orjson as _orjson

if TYPE_CHECKING:
    from rxstore.gateway.queries.subscriptions import Subscription

__all__ = ["Client", "Delivery", "OutFrame", "Stalled", "room"]

log = logging.getLogger("rxstore.gateway")

SOCKET_BACKLOG = 8
"""Most frames handed to python-socketio for one client before waiting for its socket."""
BIG_FRAME = 64 << 10
"""A frame this big waits until python-socketio holds at most one packet for its client."""
ROOM_PREFIX = "topic:"


def room(topic: str) -> str:
    """The Socket.IO room of a topic's subscribers."""
    return f"{ROOM_PREFIX}{topic}"


@attrs.define(eq=False)
class OutFrame:
    """A frame waiting in a client's send queue; shared by clients that get the same batch.

    Attributes:
        name: Socket event name.
        data: Payload (``None`` once encoded).
        size: Changes it carries (counted against ``client_queue_limit``).
        packets: Its engine.io packets, encoded once on first send and reused.
        nbytes: Their size, once encoded (counted against ``client_queue_bytes``).
        wire: Their websocket frames, built once on the first direct write.
        last: The seq of the last change it carries (a batch); ``None`` for other frames.
    """

    name: str
    data: Any
    size: int = 0
    packets: list[Any] | None = None
    nbytes: int = 0
    wire: bytes | None = None
    last: int | None = None


@attrs.define(eq=False)
class Client:
    """One connected client: who it is, where it is in the log, and what waits for it."""

    sid: str
    user: User
    topics: frozenset[str]
    cursor: int | None
    live: bool = False
    skip: frozenset[int] = frozenset()
    epoch: str | None = None
    """The log epoch of the client's cursor (from its auth); once it is synced, the log's."""
    cursor_ts: float | None = None
    """The commit time of the change at the cursor, from its auth (checked on resume)."""
    queue: deque[OutFrame] = attrs.field(factory=deque)
    queued: int = 0
    queued_bytes: int = 0
    transport: Any = None
    """The client's TCP transport, aborted when the client is dropped."""
    ready: asyncio.Event = attrs.field(factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)
    expires: float | None = None
    """Unix time at which the client's token expires (its ``exp`` plus the leeway)."""
    expiry: asyncio.TimerHandle | None = None
    subscriptions: dict[str, Subscription] = attrs.field(factory=dict)
    """Its subscriptions by id, once it has a subset (see :mod:`rxstore.gateway.queries.subscriptions`)."""
    by_topic: dict[str, tuple[Subscription, ...]] = attrs.field(factory=dict)
    """The same by topic (kept by the gateway's ``LiveQueries``)."""
    idle: asyncio.Event = attrs.field(factory=lambda: _set(asyncio.Event()))
    """Set while its send queue is empty and nothing is being written."""
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    """Held while it is brought up to date (first sync, a new subscription)."""
    sending: int = 0
    """Calls of :meth:`Delivery.send` in progress for it."""
    link: Link | bool | None = None
    """Its websocket for direct writes; ``False``: never (polling, compression); ``None``: not yet."""
    in_flight: int = 0
    """Its events being handled now (counted on receipt, see ``RealtimeGateway(max_in_flight=)``)."""
    reserved: dict[str, int] = attrs.field(factory=dict)
    """Subscription ids of its ``rxstore:subscribe`` requests in flight, each with how many."""
    stale: list[Subscription] = attrs.field(factory=list)
    """Its windows to read again before it goes on (see :mod:`rxstore.gateway.queries.windows`)."""
    gone: bool = False
    """Forgotten by the gateway (disconnected, dropped, expired): nothing is queued or filed for it."""


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


class Stalled(Exception):
    """A client took longer than ``client_send_timeout`` to accept a frame."""


class Delivery:
    """The clients' send queues and sockets.

    Args:
        sio: The gateway's Socket.IO server.
        metrics: The gateway's metrics.
        clients: The gateway's connected clients by sid (shared, not copied).
        forget: Forgets a client in the gateway (its tasks, its queue).
        frame_bytes: Target size of a frame.
        client_send_timeout: Seconds a client may take to accept one frame.
        client_queue_limit: Most changes waiting for one client.
        client_queue_bytes: Most encoded bytes waiting for one client (its queue and, once it
            has a websocket link, its TCP write buffer together).
        direct: Write shared frames straight to idle websocket clients
            (:mod:`~rxstore.gateway.delivery.wire`);
            ``False``: every frame through the clients' queues (the old path).
        direct_buffer: Most bytes in a client's TCP write buffer for a direct write; above it
            the frame goes through its queue, where ``client_send_timeout`` and the limits apply.
    """

    def __init__(
        self,
        sio: Any,
        metrics: Metrics,
        clients: dict[str, Client],
        forget: Callable[[str], None],
        *,
        frame_bytes: int,
        client_send_timeout: float,
        client_queue_limit: int,
        client_queue_bytes: int,
        direct: bool = True,
        direct_buffer: int = DIRECT_BUFFER,
    ) -> None:
        self.sio = sio
        self.metrics = metrics
        self.clients = clients
        self.forget = forget
        self.frame_bytes = frame_bytes
        self.client_send_timeout = client_send_timeout
        self.client_queue_limit = client_queue_limit
        self.client_queue_bytes = client_queue_bytes
        self.queued_total = 0
        """Encoded bytes waiting in every client's queue."""
        self.links = Links(sio.eio)
        self.direct = direct
        self.direct_buffer = direct_buffer
        self.direct_frames = self.direct_changes = 0
        """Direct writes not yet added to the metrics (see :meth:`count_direct`)."""
        self.text_rows = _orjson is not None and issubclass(sio.packet_class, GatewayPacket)
        """Whether snapshot rows may be given as JSON texts (:meth:`snapshot_text_frames`): JSON packets."""
        self.keep: Callable[[Client, OutFrame], bool] = lambda client, frame: False
        """Whether a frame over a client's bounds is handled without dropping it (set by :mod:`~.catchup`)."""

    def batch_frames(self, events: list[Any]) -> list[OutFrame]:
        """``events`` as batch frames of at most ``frame_bytes`` each (a bigger change alone), encoded."""
        if not events:
            return []
        frame = OutFrame(BATCH, LogFrame(events=events), len(events), last=events[-1][1]["seq"])
        self.encode(frame)
        if frame.nbytes <= self.frame_bytes or len(events) == 1:
            return [frame]
        parts = min(len(events), -(-frame.nbytes // self.frame_bytes))
        step = -(-len(events) // parts)
        frames: list[OutFrame] = []
        for start in range(0, len(events), step):
            frames.extend(self.batch_frames(events[start : start + step]))
        return frames

    def snapshot_frames(
        self,
        topic: str,
        event: str,
        seq: int,
        rows: list[dict[str, Any]],
        more: bool,
        ts: float | None = None,
    ) -> list[OutFrame]:
        """``rows`` as snapshot frames of at most ``frame_bytes`` (a bigger row alone), encoded.

        ``ts``: the commit time of the change at ``seq`` (sent as ``"ts"`` when known).
        """
        frame = OutFrame(SNAPSHOT, _snapshot_frame(topic, event, seq, rows, more, ts))
        self.encode(frame)
        if frame.nbytes <= self.frame_bytes or len(rows) <= 1:
            return [frame]
        half = len(rows) // 2
        return self.snapshot_frames(topic, event, seq, rows[:half], True, ts) + self.snapshot_frames(
            topic, event, seq, rows[half:], more, ts
        )

    def snapshot_text_frames(
        self, topic: str, event: str, seq: int, texts: list[str], more: bool, ts: float | None = None
    ) -> list[OutFrame]:
        """Rows given as JSON texts (:attr:`text_rows`) as snapshot frames of at most ``frame_bytes``.

        The texts go into the frame as they are (an ``orjson.Fragment``): never decoded
        and encoded again.
        """
        records = _orjson.Fragment("[" + ",".join(texts) + "]")
        frame = OutFrame(SNAPSHOT, _snapshot_frame(topic, event, seq, records, more, ts))
        self.encode(frame)
        if frame.nbytes <= self.frame_bytes or len(texts) <= 1:
            return [frame]
        half = len(texts) // 2
        first = self.snapshot_text_frames(topic, event, seq, texts[:half], True, ts)
        return first + self.snapshot_text_frames(topic, event, seq, texts[half:], more, ts)

    def enqueue(self, client: Client, frame: OutFrame) -> bool:
        """Queue a frame for a client; False if it is over the client's bounds (then see :attr:`keep`).

        While nothing else is pending for a websocket client (see :meth:`link`),
        the frame is written straight to its socket instead.
        """
        if client.gone:  # work that began before it left (a broadcast, a subscribe) ends here
            return True
        if frame.packets is None:
            self.encode(frame)  # eagerly: once per shared frame, and its size is known
        link = client.link
        if link is None:
            link = self.link(client)
        buffered = 0
        if isinstance(link, Link):
            transport = link.transport
            buffered = transport.get_write_buffer_size()  # counts against client_queue_bytes
            if (
                buffered <= self.direct_buffer
                and not client.queue
                and not client.sending
                and buffered + frame.nbytes <= self.client_queue_bytes
                and link.idle()
            ):
                transport.write(frame.wire or self.wire(frame))
                self.count_direct(frame.size)
                return True
        if (
            client.queued + frame.size > self.client_queue_limit
            or client.queued_bytes + buffered + frame.nbytes > self.client_queue_bytes
        ):
            if not self.keep(client, frame):
                log.warning(
                    "[RealtimeGateway] %s fell %d changes (%d bytes) behind; dropping it",
                    client.sid,
                    client.queued,
                    client.queued_bytes,
                )
                self.metrics.dropped.inc()
                self.drop(client)
            return False
        queue = client.queue
        if not queue:  # else idle is clear and the writer is woken already, or drains it now
            client.idle.clear()
            client.ready.set()
        queue.append(frame)
        client.queued += frame.size
        client.queued_bytes += frame.nbytes
        self.queued_total += frame.nbytes
        return True

    def clear(self, client: Client) -> None:
        """Empty a client's queue (a forgotten one's: see ``Client.gone``)."""
        client.queue.clear()
        client.idle.set()
        self.queued_total -= client.queued_bytes
        client.queued = client.queued_bytes = 0
        self.metrics.queued_bytes.set(self.queued_total)

    def deliver_to_room(self, event: str, data: Any, room: str, skip_sid: Any) -> bool:
        """Queue an emit to a topic room (a client broadcast) for each of this node's clients in it."""
        if not room.startswith(ROOM_PREFIX):
            return False
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        frame = OutFrame(event, data)  # shared: encoded once for every receiver
        receivers = 0
        for sid, _ in list(self.sio.manager.get_participants("/", room)):
            client = self.clients.get(sid)
            if client is not None and sid not in skip:
                receivers += self.enqueue(client, frame)
        if receivers:
            self.metrics.broadcasts.inc(receivers)
        return True

    def drop(self, client: Client) -> None:
        """Forget a client and cut its connection now (its socket may not drain); it resumes later."""
        self.forget(client.sid)
        transport = client.transport
        if transport is not None:
            transport.abort()
        task = asyncio.ensure_future(self.sio.disconnect(client.sid))
        task.add_done_callback(log_failure)

    def encode(self, frame: OutFrame) -> list[Any]:
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

    def wire(self, frame: OutFrame) -> bytes:
        """The frame's websocket bytes, built once (shared frames are shared by many clients)."""
        wire = frame.wire
        if wire is None:
            wire = frame.wire = websocket_bytes(self.encode(frame))
        return wire

    def count_direct(self, changes: int) -> None:
        """Count a direct write in the metrics, once per turn of the loop (one batch, many clients)."""
        if not self.direct_frames:
            asyncio.get_running_loop().call_soon(self.flush_direct)
        self.direct_frames += 1
        self.direct_changes += changes

    def flush_direct(self) -> None:
        """Add the direct writes counted so far to ``rxstore_events_sent`` and ``rxstore_direct_writes``."""
        self.metrics.sent.inc(self.direct_changes)
        self.metrics.direct_writes.inc(self.direct_frames)
        self.direct_frames = self.direct_changes = 0

    def link(self, client: Client) -> Link | bool | None:
        """The client's websocket for direct writes, kept once it has one (see :mod:`.wire`)."""
        if not self.direct:
            return None
        eio_sid = self.sio.manager.eio_sid_from_sid(client.sid, "/")
        link = self.links.link(eio_sid) if eio_sid is not None else None
        if link is not None:
            client.link = link
        return link

    def socket_backlog(self, eio_sid: str) -> int:
        """Packets python-socketio holds for this client, not yet written to its socket."""
        return packets_queued(self.sio.eio, eio_sid)

    async def write(self, client: Client) -> None:
        """Send the client's queue as it fills, for as long as the client is connected."""
        queue, sent = client.queue, self.metrics.sent
        try:
            while True:
                await client.ready.wait()
                client.ready.clear()
                while queue:
                    frame = queue.popleft()
                    await self.send(client, frame)
                    if client.gone:  # forgotten (its counts cleared) while this frame was written
                        return
                    client.queued -= frame.size
                    client.queued_bytes -= frame.nbytes
                    self.queued_total -= frame.nbytes
                    sent.inc(frame.size)
                self.metrics.queued_bytes.set(self.queued_total)
                if not queue:
                    client.idle.set()
        except Stalled as exc:
            self.drop_stalled(client, exc)

    async def drain(self, client: Client) -> bool:
        """Wait until every frame queued for ``client`` is written; ``True`` then.

        Raises:
            Stalled: The queue did not get shorter for ``client_send_timeout``.
        """
        while not client.idle.is_set():
            left = client.queued_bytes
            try:
                await asyncio.wait_for(client.idle.wait(), self.client_send_timeout)
            except TimeoutError:
                if client.queued_bytes >= left:
                    raise Stalled(f"took no frame for {self.client_send_timeout:g} s") from None
        return True

    def drop_stalled(self, client: Client, exc: Stalled) -> None:
        """Drop a client that took no frame for ``client_send_timeout``, and count it."""
        log.warning("[RealtimeGateway] %s: %s; dropping it", client.sid, exc)
        self.metrics.stalled.inc()
        self.drop(client)

    async def send(self, client: Client, frame: OutFrame) -> None:
        """Send one frame to one client, straight to its socket (never through Redis).

        Raises:
            Stalled: The client did not take what it was sent before within ``client_send_timeout``.
        """
        client.sending += 1  # no direct write may overtake this frame
        try:
            await self._send(client, frame)
        finally:
            client.sending -= 1

    async def _send(self, client: Client, frame: OutFrame) -> None:
        eio_sid = self.sio.manager.eio_sid_from_sid(client.sid, "/")
        if eio_sid is None:
            return
        packets = self.encode(frame)
        # python-socketio's per-socket queue is unbounded: hand it little (one big frame),
        # so a client that stops reading backs up in its own queue, where the limits apply.
        backlog = 1 if frame.nbytes > BIG_FRAME else SOCKET_BACKLOG
        if self.socket_backlog(eio_sid) > backlog:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.client_send_timeout
            pause = 0.002
            while self.socket_backlog(eio_sid) > backlog:
                if loop.time() > deadline:
                    raise Stalled(f"took no frame for {self.client_send_timeout:g} s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
        for packet in packets:
            await self.sio.eio.send_packet(eio_sid, packet)

    async def emit(self, client: Client, name: str, data: Any) -> None:
        """Send one event to one client, waiting for its socket as :meth:`send` does."""
        await self.send(client, OutFrame(name, data))


def log_failure(task: asyncio.Future[Any]) -> None:
    """Done-callback of a background task: log its exception, if any, at DEBUG."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("[RealtimeGateway] background task failed", exc_info=task.exception())


def _snapshot_frame(topic: str, event: str, seq: int, records: Any, more: bool, ts: float | None) -> LogFrame:
    """An ``rxstore:snapshot`` payload; ``ts`` (the change at ``seq``'s commit time) only when known."""
    if ts is None:
        return LogFrame(topic=topic, event=event, seq=seq, records=records, more=more)
    return LogFrame(topic=topic, event=event, seq=seq, ts=ts, records=records, more=more)
