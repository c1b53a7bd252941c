"""Marble tests of stores and whole root stores, in virtual time (:func:`marbles`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from reactivex import Observable
from reactivex.notification import Notification, OnCompleted, OnError, OnNext
from reactivex.testing import TestScheduler
from reactivex.testing.recorded import Recorded

from rxstore.client.connection import Backoff, Token
from rxstore.client.root import RootStore
from rxstore.persist.options import Persist
from rxstore.protocol.errors import ConnectionRefused, TransportError
from rxstore.stores.domain import RealtimeStore
from rxstore.testing.frames import (
    Frame,
)
from rxstore.testing.link import VirtualLink
from rxstore.testing.recorded import Marble
from rxstore.testing.virtual_gateway import VirtualGateway, Write
from rxstore.testing.virtual_loop import VirtualLoop
from rxstore.testing.virtual_presence import PresenceChange

__all__ = ["MarbleTest", "marbles", "on_next"]

_LINK_UP: Final = "c"
_LINK_DOWN: Final = "x"
_LINK_REFUSED: Final = "r"
_LINK_UNREACHABLE: Final = "u"


class MarbleTest:
    """Marble helpers over one ``TestScheduler`` (use via :func:`marbles`).

    All diagrams start at tick 0; :meth:`record` subscribes immediately, so a
    ``BehaviorSubject`` state shows its current value at tick 0. Roots run on
    :attr:`loop`, an asyncio event loop on the same virtual clock.
    """

    def __init__(self, timespan: int = 1) -> None:
        self.timespan = timespan
        self.scheduler = TestScheduler()
        # typeshed marks every method of AbstractEventLoop abstract; asyncio does not (sockets, ...).
        self.loop = VirtualLoop(self.scheduler)  # type: ignore[abstract]
        """The event loop of the roots and of :meth:`call`: its time is the scheduler's."""
        self.gateway: VirtualGateway | None = None
        """The tables of the last :meth:`root` built with ``tables=``."""
        self._link: VirtualLink | None = None

    @property
    def link(self) -> VirtualLink:
        """The link of the last :meth:`root` (``m.link.attempts``, ``m.link.sent``, ``m.link.epoch``).

        Raises:
            RuntimeError: No root was built yet.
        """
        if self._link is None:
            raise RuntimeError("m.link is the link of a root: build one with m.root(...) first")
        return self._link

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
            marble = _marble(at, self.timespan)
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
                records.append(marble(OnCompleted()))
                ended = char
            elif char == "#":
                records.append(marble(OnError(error or Exception("error"))))
                ended = char
            elif char != "-":
                records.append(marble(OnNext(lookup.get(char, char))))
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
        """Subscribe now and return the list the notifications are recorded into.

        They print as written in a diagram (``OnNext('a')@3``): see :class:`~rxstore.testing.recorded.Marble`.
        """
        messages: list[Recorded[Any]] = []
        scheduler, timespan = self.scheduler, self.timespan

        def note(notification: Notification[Any]) -> None:
            messages.append(Marble(scheduler.clock, notification, timespan))

        observable.subscribe(
            on_next=lambda value: note(OnNext(value)),
            on_error=lambda error: note(OnError(error)),
            on_completed=lambda: note(OnCompleted()),
            scheduler=scheduler,
        )
        return messages

    def at(self, tick: int, action: Callable[[], Any]) -> None:
        """Run ``action`` at virtual time ``tick`` (in ticks), and what it sets off on :attr:`loop`."""
        self.scheduler.schedule_absolute(tick * self.timespan, _run(action, self.loop))

    def call(self, tick: int, make: Callable[[], Coroutine[Any, Any, Any]]) -> list[Any]:
        """At ``tick``, run the coroutine ``make()`` (``store.where(...)``, ``root.add(...)``) on the loop.

        Returns the list its result (or the exception it raised) is appended to
        when it ends; it may wait, in virtual time (a call's timeout, a reconnect).
        """
        results: list[Any] = []

        def action() -> None:
            task = self.loop.create_task(make())
            task.add_done_callback(lambda done: results.append(_outcome(done)))

        self.at(tick, action)
        return results

    def run(self, until: int | None = None) -> None:
        """Run the virtual clock until nothing is scheduled, or up to tick ``until``.

        A root that retries for ever (an unreachable gateway, no ``max_attempts``)
        always has a next attempt scheduled: give it an ``until``.
        """
        if until is None:
            self.scheduler.start()
        else:
            self.scheduler.advance_to(until * self.timespan)

    def root(
        self,
        stores: Sequence[RealtimeStore],
        *,
        server: str = "",
        values: Mapping[str, Frame | Write | PresenceChange | ConnectionRefused | TransportError]
        | None = None,
        link: str | None = None,
        topics: Sequence[str] = (),
        tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        key: str = "id",
        token: Token = None,
        backoff: Backoff | None = None,
        claims: Mapping[str, Any] | None = None,
        persist: str | os.PathLike[str] | Persist | None = None,
        gateway: VirtualGateway | None = None,
    ) -> RootStore:
        """Return a root store wired to a :class:`VirtualLink`, started at tick 0, and play the diagrams.

        The root runs its real connection loop on :attr:`loop`: its attempts,
        backoff delays, ``max_attempts``, token provider calls and a gateway's
        ``retry_after`` all happen in virtual time (``m.link.attempts`` records
        each attempt's auth payload).

        Args:
            stores: The stores, as given to :class:`~rxstore.client.root.RootStore`.
            server: When the gateway sends which frame (``values`` maps letters to frames).
            values: Letter -> :class:`Frame` (see :func:`change_frame` and friends);
                for the link diagram, letter -> a ``ConnectionRefused`` to refuse
                attempts with (``ConnectionRefused("token_expired")``, or with a
                ``retry_after``) or a ``TransportError`` (unreachable).
            link: How the gateway answers connection attempts, from each letter on:
                ``c`` accepts (the waiting attempt, then every attempt), ``x`` drops
                the connection (attempts wait until the next letter), ``r`` refuses
                (``invalid_token``), ``u`` is unreachable; before the first letter
                attempts wait. Omitted: every attempt is accepted.
            topics: Extra topics.
            tables: Rows of a :class:`VirtualGateway` (``m.gateway``) that serves the
                subscriptions; ``values`` may then also be :func:`write` s to its tables.
                ``values`` may be other members' presence (:func:`presence_join`, ...) whatever the tables.
            key: The tables' primary key.
            token: The root's token: a string, or an async provider (called before each attempt).
            backoff: The root's reconnection delays (``jitter=0.0`` makes the times exact).
            claims: The token's claims the virtual gateway fills ``{"claim": name}`` values from.
            persist: The root's state file (``RootStore(persist=...)``): at tick 0 the stores
                are filled from it and the root connects with its cursor. Tear the root down
                (``m.call(tick, root.teardown_realtime)``) to write the file and close it.
            gateway: Serve through this :class:`VirtualGateway` (instead of ``tables``), say
                the ``m.gateway`` of an earlier test's root: its tables and log go on, so a
                root restarted from its state file gets the changes after its cursor.

        Raises:
            ValueError: Both ``tables`` and ``gateway`` were given.
        """
        virtual = VirtualLink()
        if gateway is not None:
            if tables is not None:
                raise ValueError("m.root(...): give tables= (a new virtual gateway) or gateway=, not both")
            gateway.link = virtual
            virtual.gateway = self.gateway = gateway
        elif tables is not None:
            virtual.gateway = self.gateway = VirtualGateway(virtual, tables, key=key, claims=claims)
        root = RootStore(
            "virtual://gateway",
            stores=stores,
            transport=virtual,
            topics=topics,
            token=token,
            backoff=backoff,
            persist=persist,
        )
        virtual.root, self._link = root, virtual
        root.setup_domain_event_handlers()
        lookup = values or {}
        actions = [] if link is None else self._link_actions(virtual, link, lookup)
        self.at(0, lambda: self.loop.create_task(root.setup_realtime(wait=False)))
        if link is not None:
            virtual.hold()  # until the diagram's first letter
        for time, action in actions:
            self.scheduler.schedule_absolute(time, _run(action, self.loop))
        for recorded in self.parse(server, lookup):
            if not isinstance(recorded.value, OnNext):
                raise ValueError(f"server diagram {server!r}: a gateway sends frames, it never ends (| or #)")
            frame = recorded.value.value
            if isinstance(frame, Write) and virtual.gateway is not None:
                self.scheduler.schedule_absolute(
                    recorded.time, _run(_write(virtual.gateway, frame), self.loop)
                )
                continue
            if isinstance(frame, PresenceChange):
                self.scheduler.schedule_absolute(recorded.time, _run(_presence(virtual, frame), self.loop))
                continue
            if not isinstance(frame, Frame):
                error = f"server diagram values must be Frame objects, got {frame!r} (writes need tables=)"
                raise TypeError(error)
            self.scheduler.schedule_absolute(recorded.time, _run(_send(virtual, frame), self.loop))
        return root

    def _link_actions(
        self, link: VirtualLink, diagram: str, values: Mapping[str, Any]
    ) -> list[tuple[float, Callable[[], None]]]:
        """The link diagram's actions, at their times.

        Raises:
            ValueError: A letter that is not a link symbol, nor mapped by ``values`` to a refusal.
        """
        actions: list[tuple[float, Callable[[], None]]] = []
        for recorded in self.parse(diagram):
            notification = recorded.value
            if isinstance(notification, OnNext):
                symbol = str(notification.value)
            else:
                symbol = "|" if isinstance(notification, OnCompleted) else "#"
            actions.append((recorded.time, _link_action(link, symbol, values.get(symbol))))
        return actions


def _link_action(link: VirtualLink, symbol: str, value: Any) -> Callable[[], None]:
    """What the link does for ``symbol`` of a link diagram (``value``: what ``values`` maps it to)."""
    if symbol == _LINK_UP:
        return link.accept
    if symbol == _LINK_DOWN:

        def drop() -> None:
            link.hold()  # the next attempts wait for the next letter
            link.drop()

        return drop
    if symbol == _LINK_REFUSED:
        return link.refuse
    if symbol == _LINK_UNREACHABLE or isinstance(value, TransportError):
        return link.unreachable
    if isinstance(value, ConnectionRefused):
        return lambda: link.refuse(value.reason, str(value), retry_after=value.retry_after)
    raise ValueError(
        f"unknown link symbol {symbol!r}: use c (up), x (drop), r (refused), u (unreachable), "
        "or a letter that values maps to a ConnectionRefused or a TransportError"
    )


def _send(link: VirtualLink, frame: Frame) -> Callable[[], None]:
    return lambda: link.send(frame)


def _presence(link: VirtualLink, change: PresenceChange) -> Callable[[], None]:
    return lambda: link.presence.change(change)


def _write(gateway: VirtualGateway, change: Write) -> Callable[[], int]:
    return lambda: gateway.write(change)


def _run(action: Callable[[], Any], loop: VirtualLoop) -> Callable[[Any, Any], None]:
    """A scheduled action: ``action()``, then the callbacks it made ready on ``loop``, at the same time."""

    def scheduled(_scheduler: Any, _state: Any) -> None:
        action()
        loop.run_ready()

    return scheduled


def _marble(time: float, timespan: int) -> Callable[[Notification[Any]], Marble[Any]]:
    return lambda notification: Marble(time, notification, timespan)


def _outcome(task: asyncio.Task[Any]) -> Any:
    """A finished task's result, or the exception it raised (cancelled: ``CancelledError``)."""
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception() or task.result()


@contextmanager
def marbles(timespan: int = 1) -> Iterator[MarbleTest]:
    """Return a :class:`MarbleTest` with a fresh ``TestScheduler``.

    On exit, the tasks still pending on its loop (a root's connection loop) are cancelled.

    Args:
        timespan: Virtual time units per marble character.
    """
    test = MarbleTest(timespan)
    try:
        yield test
    finally:
        test.loop.close()


def on_next(tick: int, value: Any) -> Recorded[Any]:
    """Return a recorded ``on_next`` at ``tick`` (for hand-written expectations)."""
    return Marble(tick, OnNext(value))
