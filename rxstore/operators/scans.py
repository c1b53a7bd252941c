"""A filter and scans that isolate failures, over frames of events.

A reducer or predicate that raises never errors the pipeline: the frame's
other events still apply, and the failure goes to ``on_error`` as a
:class:`~rxstore.protocol.errors.StoreError` (by default, on a keyed view of a
root, to ``root.errors``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from reactivex import Observable, abc

from rxstore.operators.keyed import Frame
from rxstore.protocol.errors import RxStoreError, StoreError
from rxstore.protocol.events import Event

__all__ = ["ErrorHandler", "filter_events", "safe_scan", "safe_scan_frames", "subscribe_direct"]

S = TypeVar("S")
T = TypeVar("T")

ErrorHandler = Callable[[RxStoreError], None]
"""Takes the :class:`~rxstore.protocol.errors.StoreError` of an event that failed."""

log = logging.getLogger("rxstore.operators")


class _Stage(Observable[T]):
    """An operator's output that keeps where failures go (so a ``safe_scan`` after a filter finds it).

    :meth:`subscribe_direct` subscribes a plain function without reactivex's
    ``AutoDetachObserver`` in between: a store's pipeline costs one Python call
    less per stage and frame (everything runs on the loop thread).
    """

    def __init__(self, subscribe: Callable[..., abc.DisposableBase], report: ErrorHandler) -> None:
        super().__init__(subscribe)
        self.report = report

    def subscribe_direct(self, on_next: Callable[[T], None]) -> abc.DisposableBase:
        """Call ``on_next`` with each value; an error of the source is logged, its completion ignored."""
        return self._subscribe_core(cast(abc.ObserverBase[T], _Direct(on_next)))


class _Direct:
    """A bare observer: ``on_next`` is the function itself (no call in between)."""

    __slots__ = ("on_next",)

    def __init__(self, on_next: Callable[[Any], None]) -> None:
        self.on_next = on_next

    def on_error(self, error: Exception) -> None:
        _stream_failed(error)

    def on_completed(self) -> None:
        return None


def subscribe_direct(source: Observable[T], on_next: Callable[[T], None]) -> abc.DisposableBase:
    """Subscribe ``on_next`` to ``source``: directly to a keyed view or an rxstore operator's output.

    The same as ``source.subscribe(on_next)`` otherwise. Either way, an error
    of the source (a store's event stream never errors, a test's may) is
    logged at ERROR, and ends the subscription.
    """
    direct: Callable[[Callable[[T], None]], abc.DisposableBase] | None = getattr(
        source, "subscribe_direct", None
    )
    if direct is not None:
        return direct(on_next)
    return source.subscribe(on_next, _stream_failed)


def _stream_failed(error: Exception) -> None:
    log.error("event stream failed: %s", error)


def filter_events(
    predicate: Callable[[Event], bool], *, on_error: ErrorHandler | None = None, name: str | None = None
) -> Callable[[Observable[Frame]], Observable[Frame]]:
    """Keep the events of each frame that ``predicate`` accepts; drop a frame left empty.

    A predicate that raises drops that event and reports it (see the module);
    the pipeline goes on.
    """
    label = name or _name_of(predicate)

    def keep(source: Observable[Frame]) -> Observable[Frame]:
        report = _reporter(source, on_error)

        def subscribe(
            observer: abc.ObserverBase[Frame], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            emit = observer.on_next

            def on_next(frame: Frame) -> None:
                kept: list[Event] = []
                for event in frame:
                    try:
                        if predicate(event):
                            kept.append(event)
                    except Exception as exc:
                        report(StoreError(label, event, exc))
                if len(kept) == len(frame):
                    emit(frame)
                elif kept:
                    emit(kept)

            return _subscribe(source, on_next, observer, scheduler)

        return _Stage(subscribe, report)

    return keep


def safe_scan_frames(
    fold: Callable[[S, Frame], S],
    seed: S,
    *,
    on_error: ErrorHandler | None = None,
    name: str | None = None,
) -> Callable[[Observable[Frame]], Observable[S]]:
    """Scan frames with ``fold(state, frame)``; emit the state after a frame if it is a new object.

    A ``fold`` that raises leaves the state as it was and reports the
    failure with the frame's first event; the next frame folds as usual.
    Returning the same state object means "nothing changed": nothing is
    emitted. Each subscription starts from ``seed``.

    Marble:
        frames: ``-a-b-c-``  (folding ``b`` raises)
        states: ``-A---C-``
    """
    label = name or _name_of(fold)

    def scan(source: Observable[Frame]) -> Observable[S]:
        report = _reporter(source, on_error)

        def subscribe(
            observer: abc.ObserverBase[S], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            state = seed
            emit = observer.on_next

            def on_next(frame: Frame) -> None:
                nonlocal state
                try:
                    after = fold(state, frame)
                except Exception as exc:
                    report(StoreError(label, frame[0], exc))
                    return
                if after is not state:
                    state = after
                    emit(after)

            return _subscribe(source, on_next, observer, scheduler)

        return _Stage(subscribe, report)

    return scan


def safe_scan(
    reduce: Callable[[S, Event], S],
    seed: S,
    *,
    on_error: ErrorHandler | None = None,
    name: str | None = None,
) -> Callable[[Observable[Frame]], Observable[S]]:
    """Scan frames event by event with ``reduce(state, event)``, isolating each event.

    An event whose ``reduce`` raises is skipped and reported (see the
    module); the frame's other events apply. One emission per frame, and
    none when the state object did not change.

    Marble:
        frames: ``-a-(bx)-c-``  (reducing ``x`` raises)
        states: ``-A-B----C-``  (``B``: ``b`` applied, ``x`` skipped)
    """
    label = name or _name_of(reduce)

    def operator(source: Observable[Frame]) -> Observable[S]:
        report = _reporter(source, on_error)

        def fold(state: S, frame: Frame) -> S:
            for event in frame:
                try:
                    state = reduce(state, event)
                except Exception as exc:
                    report(StoreError(label, event, exc))
            return state

        return safe_scan_frames(fold, seed, on_error=report, name=label)(source)

    return operator


def _subscribe(
    source: Observable[Frame],
    on_next: Callable[[Frame], None],
    observer: abc.ObserverBase[T],
    scheduler: abc.SchedulerBase | None,
) -> abc.DisposableBase:
    """An operator's subscription to its source: direct to rxstore's own stages, else as reactivex does."""
    direct: Callable[[Callable[[Frame], None]], abc.DisposableBase] | None = getattr(
        source, "subscribe_direct", None
    )
    if direct is not None:
        return direct(on_next)
    return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)


def _reporter(source: Observable[Frame], on_error: ErrorHandler | None) -> ErrorHandler:
    """``on_error``, else the root's ``errors`` for a keyed view of a root, else a log warning."""
    if on_error is not None:
        return on_error
    report: ErrorHandler | None = getattr(source, "report", None)
    return report if report is not None else _log_error


def _log_error(error: RxStoreError) -> None:
    log.warning("%s", error)


def _name_of(function: Callable[..., object]) -> str:
    return str(getattr(function, "__qualname__", None) or repr(function))
