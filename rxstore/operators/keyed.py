"""The root's hot stream of events and its keyed views: O(1) routing by event name.

:class:`EventStream` is what ``root.events`` is: subscribing gives every event,
one at a time; :meth:`EventStream.named` gives a view of some names only, one
notification per incoming frame, through one shared dispatch table from event
name to the views that want it, so an event costs the same with one store or a
hundred. :func:`named` is the operator form, for any stream of events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.subject import Subject

from rxstore.protocol.errors import RxStoreError, StoreError
from rxstore.protocol.events import Event

__all__ = ["EventStream", "Frame", "KeyedView", "ReduceTimes", "named"]

Frame = Sequence[Event]
"""The events of one incoming frame that a keyed view wants, in order (never empty)."""


class ReduceTimes(Protocol):
    """Where stores sample the time their reduce takes (the root's metrics)."""

    def record_reduce(self, store: str, seconds: float, events: int) -> None:
        """Fold one timed delivery of ``events`` to ``store`` into its mean per-event time."""


class KeyedView(Observable[Frame]):
    """One keyed view: the frames (shares of frames) of a set of event names.

    A minimal multicast: the router calls :meth:`emit` on the loop thread, and
    each observer is isolated (one that raises is reported, the others still
    get the frame). Extends ``Observable`` through its ``_subscribe_core`` hook.
    """

    def __init__(self, names: frozenset[str], report: Callable[[RxStoreError], None]) -> None:
        super().__init__()
        self.names = names
        self.observers: tuple[Callable[[Frame], None], ...] = ()
        """The ``on_next`` of each subscriber."""
        self.report = report
        """Where a subscriber's failure goes (the root's ``errors``); ``safe_scan`` reports there too."""
        self._label = f"events_named({', '.join(sorted(names))})"

    def _subscribe_core(
        self, observer: abc.ObserverBase[Frame], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self.subscribe_direct(observer.on_next)

    def subscribe_direct(self, on_next: Callable[[Frame], None]) -> abc.DisposableBase:
        """Call ``on_next`` with each frame, with no ``AutoDetachObserver`` in between (one call less)."""
        self.observers = (*self.observers, on_next)

        def unsubscribe() -> None:
            self.observers = tuple(o for o in self.observers if o is not on_next)

        return Disposable(unsubscribe)

    def emit(self, frame: Frame) -> None:
        """Notify every observer of ``frame``; report what one of them raises."""
        for on_next in self.observers:
            try:
                on_next(frame)
            except Exception as exc:  # a subscriber of a pipeline store raised
                self.report(StoreError(self._label, frame[0], exc))


class EventStream(Observable[Event]):
    """The root's hot stream of events, with keyed views of it by name.

    Subscribing gives every event, one at a time, from now on (hot).
    :meth:`named` gives the frames of some names only, in O(1) per event.

    Attributes:
        metrics: The root's metrics (stores sample their reduce time into them).
    """

    def __init__(self, metrics: ReduceTimes, report: Callable[[RxStoreError], None]) -> None:
        super().__init__()
        self.metrics = metrics
        self.report = report
        """Where a keyed view's subscribers report failures (the root's ``errors``)."""
        self.subject: Subject[Event] = Subject()
        self.routes: dict[str, tuple[KeyedView, ...]] = {}
        """Event name -> the keyed views that want it: the one dispatch table."""
        self._views: dict[frozenset[str], KeyedView] = {}

    def _subscribe_core(
        self, observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self.subject.subscribe(observer, scheduler=scheduler)

    def named(self, *names: str) -> Observable[Frame]:
        """The frames of the events named ``names``: one notification per incoming frame.

        Views of the same names are one view. A RESET event reaches every view.

        Example:
            ``root.events.named("post_liked").pipe(safe_scan(count, 0))``
        """
        key = frozenset(names)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = KeyedView(key, self.report)
            for name in key:
                self.routes[name] = (*self.routes.get(name, ()), view)
        return view

    def views(self) -> tuple[KeyedView, ...]:
        """Every keyed view made so far."""
        return tuple(self._views.values())


def named(*names: str) -> Callable[[Observable[Event]], Observable[Frame]]:
    """Keep the events named ``names``, as frames.

    On the root's stream (``root.events``) this is its keyed view: O(1) per
    event whatever the number of stores, one frame per incoming frame (a batch
    of 100 changes is one notification). On any other stream of events, each
    event named ``names`` becomes a frame of its own.

    Marble:
        events: ``-a-x-b-|``  (``x`` has another name)
        frames: ``-A---B-|``  (``A`` is ``(a,)``)
    """
    wanted = frozenset(names)

    def view(source: Observable[Event]) -> Observable[Frame]:
        if isinstance(source, EventStream):
            return source.named(*names)

        def is_wanted(event: Event) -> bool:
            return event.name in wanted

        return source.pipe(ops.filter(is_wanted), ops.map(_one))

    return view


def _one(event: Event) -> Frame:
    return (event,)
