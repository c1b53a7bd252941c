"""Marble testing for stores and whole root stores, in virtual time.

Typed helpers over reactivex's ``TestScheduler`` plus a virtual link, so a
:class:`~rxstore.client.root.RootStore` with its stores runs without a socket or an
event loop, connect / disconnect / reconnect included.

The marble alphabet (one character = one tick = ``timespan`` virtual seconds):

====================  ==========================================================
``-``                 one tick passes, nothing happens
``a`` (any other)     a value at this tick: ``values["a"]``, or the character itself
``(ab)``              ``a`` and ``b`` at the same tick, in that order; the
                      whole group takes one tick
``|``                 completion
``#``                 error (the ``error`` argument)
space                 ignored (takes no time); use it to align diagrams
====================  ==========================================================

The ``link`` diagram of :meth:`MarbleTest.root` uses fixed letters:
``c`` the gateway accepts the connection (replaying the changes the root
missed, then going live), ``x`` the connection drops, ``r`` the gateway refuses
the connection (``invalid_token``). Without a ``link`` diagram the root is
connected at tick 0.

Example:
    >>> import attrs
    >>> from rxstore import DomainStore
    >>> @attrs.frozen
    ... class Count:
    ...     n: int = 0
    >>> class Counter(DomainStore[Count]):
    ...     accepts = ("tick",)
    ...     initial = Count()
    ...     def reduce(self, state, event):
    ...         return Count(state.n + 1)
    >>> with marbles() as m:
    ...     counter = Counter()
    ...     root = m.root([counter], server="-t-t", values={"t": message_frame("tick")})
    ...     states = m.record(counter.state)
    ...     m.run()
    >>> states == m.expected("ab-c", {"a": Count(0), "b": Count(1), "c": Count(2)})
    True
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from reactivex import Observable
from reactivex.notification import OnCompleted, OnError, OnNext
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from rxstore.client.root import RootStore
from rxstore.client.subscriptions import SUBSCRIBE, UNSUBSCRIBE, run_now
from rxstore.client.transport import FrameHandler, LostHandler
from rxstore.protocol.errors import ConnectionRefused, NotConnected, TransportError
from rxstore.protocol.events import BATCH, LIVE, RESET
from rxstore.stores.domain import RealtimeStore
from rxstore.testing.frames import (
    Frame,
    batch_frame,
    change,
    change_frame,
    message,
    message_frame,
    snapshot,
    snapshot_frame,
)
from rxstore.testing.virtual_gateway import VirtualGateway, Write, write

__all__ = [
    "Frame",
    "MarbleTest",
    "VirtualGateway",
    "VirtualLink",
    "Write",
    "batch_frame",
    "change",
    "change_frame",
    "marbles",
    "message",
    "message_frame",
    "on_next",
    "snapshot",
    "snapshot_frame",
    "write",
]

_LINK_UP: Final = "c"
_LINK_DOWN: Final = "x"
_LINK_REFUSED: Final = "r"


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


class MarbleTest:
    """Marble helpers over one ``TestScheduler`` (use via :func:`marbles`).

    All diagrams start at tick 0; :meth:`record` subscribes immediately, so a
    ``BehaviorSubject`` state shows its current value at tick 0.
    """

    def __init__(self, timespan: int = 1) -> None:
        self.timespan = timespan
        self.scheduler = TestScheduler()
        self.gateway: VirtualGateway | None = None
        """The tables of the last :meth:`root` built with ``tables=``."""

    def parse(
        self, diagram: str, values: Mapping[str, Any] | None = None, *, error: Exception | None = None
    ) -> list[Recorded[Any]]:
        """Return the notifications ``diagram`` describes, with virtual times.

        Raises:
            ValueError: The diagram is malformed (an unclosed or nested group, or
                anything but ``-`` after ``|`` or ``#``: a stream emits nothing once ended).
        """
        lookup = values or {}
        records: list[Recorded[Any]] = []
        tick = 0
        group_tick: int | None = None
        ended: str | None = None
        for char in diagram:
            if char == " ":
                continue
            if ended is not None and char not in "-()":
                error_text = f"{char!r} after {ended!r} in marble diagram {diagram!r}: the stream has ended"
                raise ValueError(error_text)
            at = (tick if group_tick is None else group_tick) * self.timespan
            if char == "(":
                if group_tick is not None:
                    raise ValueError(f"nested group in marble diagram {diagram!r}")
                group_tick = tick
                continue
            elif char == ")":
                if group_tick is None:
                    raise ValueError(f"')' without '(' in marble diagram {diagram!r}")
                group_tick = None
                tick += 1
                continue
            elif char == "|":
                records.append(Recorded(at, OnCompleted()))
                ended = char
            elif char == "#":
                records.append(Recorded(at, OnError(error or Exception("error"))))
                ended = char
            elif char != "-":
                records.append(Recorded(at, OnNext(lookup.get(char, char))))
            if group_tick is None:
                tick += 1
        if group_tick is not None:
            raise ValueError(f"unclosed group in marble diagram {diagram!r}")
        return records

    def hot(
        self, diagram: str, values: Mapping[str, Any] | None = None, *, error: Exception | None = None
    ) -> Observable[Any]:
        """Return a hot observable emitting ``diagram`` from tick 0."""
        return self.scheduler.create_hot_observable(self.parse(diagram, values, error=error))

    def cold(
        self, diagram: str, values: Mapping[str, Any] | None = None, *, error: Exception | None = None
    ) -> Observable[Any]:
        """Return a cold observable emitting ``diagram`` from each subscription."""
        return self.scheduler.create_cold_observable(self.parse(diagram, values, error=error))

    def expected(
        self, diagram: str, values: Mapping[str, Any] | None = None, *, error: Exception | None = None
    ) -> list[Recorded[Any]]:
        """Return the notifications ``diagram`` describes, to compare with :meth:`record`."""
        return self.parse(diagram, values, error=error)

    def record(self, observable: Observable[Any]) -> list[Recorded[Any]]:
        """Subscribe now and return the list the notifications are recorded into."""
        observer = self.scheduler.create_observer()
        observable.subscribe(observer, scheduler=self.scheduler)
        messages: list[Recorded[Any]] = observer.messages
        return messages

    def at(self, tick: int, action: Callable[[], Any]) -> None:
        """Run ``action`` at virtual time ``tick`` (in ticks)."""
        self.scheduler.schedule_absolute(tick * self.timespan, lambda _s, _st: action())

    def call(self, tick: int, make: Callable[[], Coroutine[Any, Any, Any]]) -> list[Any]:
        """At ``tick``, run the coroutine ``make()`` (``store.where(...)``, ``root.add(...)``), virtually.

        Returns the list its result (or the exception it raised) is appended to.
        It must not wait for anything but the virtual link, which answers at once.
        """
        results: list[Any] = []

        def action() -> None:
            try:
                results.append(run_now(make()))
            except Exception as exc:
                results.append(exc)

        self.at(tick, action)
        return results

    def run(self) -> None:
        """Run the virtual clock until nothing is scheduled."""
        self.scheduler.start()

    def root(
        self,
        stores: Sequence[RealtimeStore],
        *,
        server: str = "",
        values: Mapping[str, Frame | Write] | None = None,
        link: str | None = None,
        topics: Sequence[str] = (),
        tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        key: str = "id",
    ) -> RootStore:
        """Return a root store wired to a :class:`VirtualLink` and play the diagrams.

        Args:
            stores: The stores, as given to :class:`~rxstore.client.root.RootStore`.
            server: When the gateway sends which frame (``values`` maps letters to frames).
            values: Letter -> :class:`Frame` (see :func:`change_frame` and friends).
            link: The connection diagram (``c`` up, ``x`` drop, ``r`` refused);
                connected at tick 0 when omitted.
            topics: Extra topics.
            tables: Rows of a :class:`VirtualGateway` (``m.gateway``) that serves the
                subscriptions; ``values`` may then also be :func:`write` s to its tables.
            key: The tables' primary key.
        """
        virtual = VirtualLink()
        if tables is not None:
            virtual.gateway = self.gateway = VirtualGateway(virtual, tables, key=key)
        root = RootStore("virtual://gateway", stores=stores, transport=virtual, topics=topics)
        virtual.root = root
        root.setup_domain_event_handlers()
        if link is None:
            self.at(0, virtual.accept)
        else:
            actions: dict[str, Callable[[], None]] = {
                _LINK_UP: virtual.accept,
                _LINK_DOWN: virtual.drop,
                _LINK_REFUSED: virtual.refuse,
            }
            for recorded in self.parse(link):
                notification = recorded.value
                if isinstance(notification, OnNext):
                    symbol = str(notification.value)
                else:
                    symbol = "|" if isinstance(notification, OnCompleted) else "#"
                if symbol not in actions:
                    raise ValueError(f"unknown link symbol {symbol!r}: use c (up), x (drop), r (refused)")
                self.scheduler.schedule_absolute(recorded.time, _run(actions[symbol]))
        for recorded in self.parse(server, values):
            if not isinstance(recorded.value, OnNext):
                raise ValueError(f"server diagram {server!r}: a gateway sends frames, it never ends (| or #)")
            frame = recorded.value.value
            if isinstance(frame, Write) and virtual.gateway is not None:
                self.scheduler.schedule_absolute(recorded.time, _run(_write(virtual.gateway, frame)))
                continue
            if not isinstance(frame, Frame):
                error = f"server diagram values must be Frame objects, got {frame!r} (writes need tables=)"
                raise TypeError(error)
            self.scheduler.schedule_absolute(recorded.time, _run(_send(virtual, frame)))
        self.link = virtual
        return root


def _send(link: VirtualLink, frame: Frame) -> Callable[[], None]:
    return lambda: link.send(frame)


def _write(gateway: VirtualGateway, change: Write) -> Callable[[], int]:
    return lambda: gateway.write(change)


def _run(action: Callable[[], Any]) -> Callable[[Any, Any], None]:
    def scheduled(_scheduler: Any, _state: Any) -> None:
        action()

    return scheduled


@contextmanager
def marbles(timespan: int = 1) -> Iterator[MarbleTest]:
    """Return a :class:`MarbleTest` with a fresh ``TestScheduler``.

    Args:
        timespan: Virtual time units per marble character.
    """
    yield MarbleTest(timespan)


def on_next(tick: int, value: Any) -> Recorded[Any]:
    """Return a recorded ``on_next`` at ``tick`` (for hand-written expectations)."""
    return ReactiveTest.on_next(tick, value)
