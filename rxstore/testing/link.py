"""A virtual link: a :class:`~rxstore.client.transport.Transport` a test drives, with a gateway's resume."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from rxstore.client.root import RootStore
from rxstore.client.subscriptions import SUBSCRIBE, UNSUBSCRIBE
from rxstore.client.transport import FrameHandler, LostHandler
from rxstore.protocol.errors import ConnectionRefused, NotConnected, TransportError
from rxstore.protocol.events import BATCH, LIVE, RESET
from rxstore.testing.frames import (
    Frame,
    batch_frame,
)
from rxstore.testing.virtual_gateway import VirtualGateway

__all__ = ["VirtualLink"]


class VirtualLink:
    """A :class:`~rxstore.client.transport.Transport` driven by a test, with a gateway's resume.

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
        reachable: Whether :meth:`connect` succeeds (under a real event loop).
        epoch: The virtual change log's epoch, sent in ``rxstore:live``.
        gateway: The tables serving subscriptions, or ``None`` (frames as the test sends them).
    """

    def __init__(self) -> None:
        self.sent: list[Frame] = []
        self.up = False
        self.reachable = True
        self.epoch = "virtual"
        self.root: RootStore | None = None
        self.gateway: VirtualGateway | None = None
        self.answers_at_once = True
        """Its calls never wait: the root subscribes pending stores now, not in a task (virtual time)."""
        self._log: list[Frame] = []
        self._on_frame: FrameHandler | None = None
        self._on_lost: LostHandler | None = None

    def bind(self, on_frame: FrameHandler, on_lost: LostHandler) -> None:
        """Set the root's callbacks."""
        self._on_frame = on_frame
        self._on_lost = on_lost

    # -- driven by the test ----------------------------------------------------

    def send(self, frame: Frame) -> None:
        """The gateway sends ``frame`` (kept for replay if it is a change)."""
        if frame.seq is not None or frame.name == BATCH:
            self._log.append(frame)
        if self.up and self._on_frame is not None:
            self._on_frame(frame.name, frame.data)

    def accept(self) -> None:
        """The gateway accepts a connection: replay what the root missed, then go live."""
        root = self.root
        assert root is not None and self._on_frame is not None, "VirtualLink is not bound to a root"
        if self.gateway is not None:
            self._accept_subscriptions(root, self._on_frame)
            return
        self.up = True
        root.auth_payload(None)  # as a real connect does: the stores it offers are followed at once
        root.link_up("virtual://gateway")
        cursor = root.cursor
        if cursor is not None and root.epoch is not None and root.epoch != self.epoch:
            reset = {"reason": "epoch_changed", "cursor": cursor, "horizon": 0, "epoch": self.epoch}
            self._on_frame(RESET, reset)
            cursor = root.cursor
        missed = [f for f in self._changes() if (f.seq or 0) > (-1 if cursor is None else cursor)]
        if missed:
            self._on_frame(BATCH, batch_frame(missed).data)
        self._on_frame(LIVE, {"seq": root.cursor, "epoch": self.epoch})

    def _accept_subscriptions(self, root: RootStore, on_frame: FrameHandler) -> None:
        """Accept with a :attr:`gateway`: snapshots or replay of the auth payload's subscriptions, live."""
        assert self.gateway is not None
        auth = root.auth_payload(None)
        reset = auth["cursor"] is not None and root.epoch is not None and root.epoch != self.epoch
        frames = self.gateway.connect(auth, reset=reset)
        self.up = True
        root.link_up("virtual://gateway")  # subscribes the pending stores (their snapshots come first)
        for frame in frames:
            on_frame(frame.name, frame.data)
        on_frame(LIVE, {"seq": root.cursor, "epoch": self.epoch})

    def drop(self, reason: str = "transport close") -> None:
        """The connection drops."""
        if self.up:
            self.up = False
            if self._on_lost is not None:
                self._on_lost(reason)

    def refuse(self, reason: str = "invalid_token") -> None:
        """The gateway refuses a connection attempt."""
        self.up = False
        if self.root is not None:
            self.root.link_refused(ConnectionRefused(reason), "virtual://gateway")

    def _changes(self) -> Iterator[Frame]:
        for frame in self._log:
            if frame.name == BATCH:
                for name, data in frame.data["events"]:
                    inner = Frame(name, data)
                    if inner.seq is not None:
                        yield inner
            else:
                yield frame

    # -- the Transport protocol (used by RootStore) ----------------------------

    async def connect(self, url: str, auth: Mapping[str, Any]) -> None:
        """Accept at once, or fail as unreachable when :attr:`reachable` is false."""
        if not self.reachable:
            raise TransportError(f"{url} is unreachable (VirtualLink.reachable is False)")
        self.accept()

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
        if self.gateway is not None and event in (SUBSCRIBE, UNSUBSCRIBE):
            return self.gateway.call(event, data)
        return {"ok": True}
