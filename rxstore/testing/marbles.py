"""Marble tests of stores and whole root stores, in virtual time (:func:`marbles`)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from reactivex import Observable
from reactivex.notification import OnCompleted, OnError, OnNext
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from rxstore.client.root import RootStore
from rxstore.client.subscriptions import run_now
from rxstore.stores.domain import RealtimeStore
from rxstore.testing.frames import (
    Frame,
)
from rxstore.testing.link import VirtualLink
from rxstore.testing.virtual_gateway import VirtualGateway, Write

__all__ = ["MarbleTest", "marbles", "on_next"]

_LINK_UP: Final = "c"
_LINK_DOWN: Final = "x"
_LINK_REFUSED: Final = "r"


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
