"""A virtual link: a :class:`~rxstore.client.transport.Transport` a test drives, with a gateway's resume."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from reactivex import Observable
from reactivex.subject import Subject

from rxstore.client.root import RootStore
from rxstore.client.subscriptions import SUBSCRIBE, UNSUBSCRIBE
from rxstore.client.transport import FrameHandler, LostHandler
from rxstore.protocol.errors import ConnectionRefused, NotConnected, RxStoreError, TransportError
from rxstore.protocol.events import BATCH, LIVE, MORE, RESET
from rxstore.protocol.presence import PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE_UPDATE
from rxstore.testing.frames import (
    Frame,
    batch_frame,
)
from rxstore.testing.virtual_gateway import VirtualGateway
from rxstore.testing.virtual_presence import VirtualPresence

__all__ = ["VirtualLink"]

URL = "virtual://gateway"


class VirtualLink:
    """A :class:`~rxstore.client.transport.Transport` driven by a test, with a gateway's resume.

    The root's connection loop calls :meth:`connect`; the test says how the
    gateway answers: :meth:`accept` (the default), :meth:`refuse`,
    :meth:`unreachable`, or :meth:`hold` (an attempt waits for one of the
    others), and drops the link with :meth:`drop`. A test may also drive a root
    without its connection loop (nothing ever called :meth:`connect`):
    :meth:`accept` and :meth:`refuse` then bring it up or refuse it themselves,
    synchronously, without an event loop.

    Change frames sent while the link is down are kept; when the link comes
    back, the ones after the root's cursor are replayed as one batch, then
    ``rxstore:live`` is sent, as the real gateway does. Plain messages sent
    while down are lost, as socket.io broadcasts are. A root that comes back
    with a cursor of another :attr:`epoch` (set it to simulate a restored
    database) gets ``rxstore:reset`` (``epoch_changed``) and every change again.
    With a :attr:`gateway` (live queries), that serves the root's subscriptions instead.

    Attributes:
        sent: What the root emitted, as frames, in order.
        up: Whether the link is connected.
        epoch: The virtual change log's epoch, sent in ``rxstore:live``.
        gateway: The tables serving subscriptions, or ``None`` (frames as the test sends them).
        presence: The presence channels serving the root's joins, updates and leaves.

    Example:
        >>> link = VirtualLink()
        >>> root = RootStore("virtual://gateway", transport=link)
        >>> link.root = root
        >>> link.accept()  # the root's loop does not run: the link brings it up
        >>> root.connection_state.status.value, link.up
        ('connected', True)
    """

    def __init__(self) -> None:
        self.sent: list[Frame] = []
        self.up = False
        self.epoch = "virtual"
        self.root: RootStore | None = None
        self.gateway: VirtualGateway | None = None
        self.presence = VirtualPresence(self)
        self.answers_at_once = True
        """Its calls never wait: the root subscribes pending stores now, not in a task (virtual time)."""
        self._log: list[Frame] = []
        self._on_frame: FrameHandler | None = None
        self._on_lost: LostHandler | None = None
        self._attempts: Subject[Mapping[str, Any]] = Subject()
        self._failure: Callable[[str], RxStoreError] | None = None
        self._holding = False
        self._waiting: asyncio.Future[None] | None = None
        self._by_loop = False
        """Whether a connection loop called :meth:`connect` (else the test drives the root by hand)."""
        self._held: list[Frame] | None = None
        """Frames the gateway sent while a connection's first frames wait: they follow them, as they would."""

    def bind(self, on_frame: FrameHandler, on_lost: LostHandler) -> None:
        """Set the root's callbacks."""
        self._on_frame = on_frame
        self._on_lost = on_lost

    @property
    def attempts(self) -> Observable[Mapping[str, Any]]:
        """The auth payload of each connection attempt, when the root makes it (hot)."""
        return self._attempts

    # -- how the gateway answers, driven by the test ----------------------------

    def accept(self) -> None:
        """The gateway accepts connections: a waiting attempt now, the next ones at once.

        A root whose connection loop does not run is brought up now: the changes it
        missed are replayed, then ``rxstore:live``.
        """
        self._answer(None, holding=False)
        if self.root is not None and not self._by_loop:
            self._connect_by_hand(self.root)

    def refuse(
        self, reason: str = "invalid_token", message: str | None = None, *, retry_after: float | None = None
    ) -> None:
        """The gateway refuses connections with ``reason`` (and ``retry_after`` seconds to wait).

        A root driven by hand is marked refused now.
        """

        def refusal(url: str) -> ConnectionRefused:
            return ConnectionRefused(reason, message, retry_after=retry_after)

        self._answer(refusal, holding=False)
        if self.root is not None and not self._by_loop:
            self.up = False
            self.root.link_refused(refusal(URL), URL)

    def unreachable(self) -> None:
        """Connection attempts fail as if the gateway could not be reached (a ``TransportError``)."""

        def failure(url: str) -> TransportError:
            return TransportError(f"cannot connect to {url}: unreachable (VirtualLink)")

        self._answer(failure, holding=False)

    def hold(self) -> None:
        """Connection attempts wait, unanswered, for :meth:`accept`, :meth:`refuse` or :meth:`unreachable`."""
        self._answer(None, holding=True)

    def drop(self, reason: str = "transport close") -> None:
        """The connection drops (the root's loop tries again; see :meth:`hold`)."""
        if self.up:
            self.up = False
            if self._on_lost is not None:
                self._on_lost(reason)

    def send(self, frame: Frame) -> None:
        """The gateway sends ``frame`` (kept for replay if it is a change)."""
        if frame.seq is not None or frame.name == BATCH:
            self._log.append(frame)
        if self._held is not None:  # a connection's snapshots or replay go first (answered subscribes too)
            self._held.append(frame)
        elif self.up and self._on_frame is not None:
            self._on_frame(frame.name, frame.data)

    def _answer(self, failure: Callable[[str], RxStoreError] | None, *, holding: bool) -> None:
        """Set how attempts are answered (``failure`` makes the error); answer the waiting one."""
        self._failure, self._holding = failure, holding
        waiting = self._waiting
        if not holding and waiting is not None:
            self._waiting = None
            if not waiting.done():
                waiting.set_result(None)

    # -- the Transport protocol (used by RootStore) ----------------------------

    async def connect(self, url: str, auth: Mapping[str, Any]) -> None:
        """Answer a connection attempt as the test said: accept, refuse, fail, or wait to be told."""
        self._by_loop = True
        self._attempts.on_next(dict(auth))
        loop = asyncio.get_running_loop()
        while self._holding:
            self._waiting = loop.create_future()
            await self._waiting
        if self._failure is not None:
            raise self._failure(url)
        loop.call_soon(self._open(auth))  # once the root has marked the link up

    async def disconnect(self) -> None:
        """Close without an ``on_lost`` call."""
        self.up = False

    async def emit(self, event: str, data: Any) -> None:
        """Record the frame in :attr:`sent`."""
        if not self.up:
            raise NotConnected(f"cannot emit {event!r}: link is down")
        self.sent.append(Frame(event, data))

    async def call(self, event: str, data: Any, *, timeout: float) -> Any:
        """Record the frame in :attr:`sent`; acknowledge (the :attr:`gateway`'s ack, or ``{"ok": True}``)."""
        await self.emit(event, data)
        if self.gateway is not None and event in (SUBSCRIBE, UNSUBSCRIBE, MORE):
            return self.gateway.call(event, data)
        if event in (PRESENCE_JOIN, PRESENCE_UPDATE, PRESENCE_LEAVE):
            return self.presence.call(event, data)
        return {"ok": True}

    # -- the gateway's side of a connection -------------------------------------

    def _connect_by_hand(self, root: RootStore) -> None:
        """Bring up a root whose connection loop does not run, as its loop would."""
        root.router.link_up()  # the session begins, as the connection loop begins it
        deliver = self._open(root.auth_payload(None))  # the stores it offers are followed at once
        root.link_up(URL)
        deliver()

    def _open(self, auth: Mapping[str, Any]) -> Callable[[], None]:
        """Accept a connection with ``auth``: the link is up; returns what the gateway sends first."""
        reset = auth.get("cursor") is not None and auth.get("epoch") not in (None, self.epoch)
        self.up = True
        self.presence.connect()  # the last connection's memberships end with it
        if self.gateway is not None:
            frames = self.gateway.connect(auth, reset=reset)  # its snapshots or replay, computed now
            self._held = []
            return lambda: self._deliver(frames)
        return lambda: self._replay(auth, reset)

    def _replay(self, auth: Mapping[str, Any], reset: bool) -> None:
        """Send ``rxstore:reset`` if the epoch changed, the changes after the cursor, ``rxstore:live``."""
        cursor = auth.get("cursor")
        frames = []
        if reset:
            frames.append(
                Frame(RESET, {"reason": "epoch_changed", "cursor": cursor, "horizon": 0, "epoch": self.epoch})
            )
            cursor = None
        missed = [f for f in self._changes() if (f.seq or 0) > (-1 if cursor is None else cursor)]
        if missed:
            frames.append(batch_frame(missed))
        self._deliver(frames)

    def _deliver(self, frames: list[Frame]) -> None:
        held, self._held = self._held or [], None
        on_frame = self._on_frame
        if not self.up or on_frame is None:
            return
        for frame in frames:
            on_frame(frame.name, frame.data)
        on_frame(LIVE, {"seq": None if self.root is None else self.root.cursor, "epoch": self.epoch})
        for frame in held:  # sent since the connection opened (the pending stores' snapshots)
            on_frame(frame.name, frame.data)

    def _changes(self) -> Iterator[Frame]:
        for frame in self._log:
            if frame.name == BATCH:
                for name, data in frame.data["events"]:
                    inner = Frame(name, data)
                    if inner.seq is not None:
                        yield inner
            else:
                yield frame
