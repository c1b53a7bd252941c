"""Domain stores: a fold of events into a ``BehaviorSubject`` state.

A store declares which events it ``accepts`` and how it ``reduce``-s one into
its state. The :class:`~rxstore.root.RootStore` routes each event by name to
the stores that accept it and hands a store all of its events of one incoming
frame together, so a batch of 100 changes costs one state notification.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import DisposableBase
from reactivex.internal import DisposedException
from reactivex.subject import BehaviorSubject, Subject

from rxstore.errors import RxStoreError, StoreError
from rxstore.events import Event

__all__ = ["DomainStore", "RealtimeStore"]

S = TypeVar("S")
T = TypeVar("T")


class StateSubject(BehaviorSubject[T]):
    """A ``BehaviorSubject`` whose ``on_next`` takes its lock once instead of twice.

    A store emits once per incoming frame, so this is on the per-event path;
    the behaviour is ``BehaviorSubject``'s: raises once disposed, ignores values
    after completion, sets ``value`` and notifies a snapshot of the observers.
    """

    def on_next(self, value: T) -> None:
        """Set ``value`` and notify every observer subscribed now."""
        if self.is_disposed:
            raise DisposedException()
        if self.is_stopped:
            return
        with self.lock:
            self.value = value
            observers = self.observers.copy()
        for observer in observers:
            observer.on_next(value)


@runtime_checkable
class RealtimeStore(Protocol):
    """Anything that wants the root's events: the seed's ``RealtimeStore`` interface.

    The seed registered handlers on the socket; here a store subscribes to the
    root's hot event stream and returns the subscription.

    Example:
        >>> from reactivex import operators as ops
        >>> class Printer:
        ...     def setup_realtime_handlers(self, events):
        ...         return events.pipe(ops.filter(lambda e: e.name == "ping")).subscribe(print)
        >>> isinstance(Printer(), RealtimeStore)
        True
    """

    def setup_realtime_handlers(self, events: Observable[Event]) -> DisposableBase:
        """Subscribe to ``events``; return what disposes the subscription."""
        ...


class DomainStore(Generic[S]):
    """A fold of the events named in ``accepts`` into a state of type ``S``.

    Subclasses set ``accepts`` and ``initial`` and implement :meth:`reduce`;
    optionally :meth:`accept` narrows the events further. A reducer that raises
    leaves the state as it was, the error goes to :attr:`errors` (and the
    root's ``errors``), and later events are applied as usual.

    Example:
        >>> import attrs
        >>> @attrs.frozen
        ... class Likes:
        ...     count: int = 0
        >>> class LikeStore(DomainStore[Likes]):
        ...     accepts = ("post_liked",)
        ...     initial = Likes()
        ...     def reduce(self, state, event):
        ...         return attrs.evolve(state, count=state.count + 1)
        >>> likes = LikeStore()
        >>> likes.apply([Event("post_liked"), Event("post_liked")])
        >>> likes.value
        Likes(count=2)
    """

    accepts: ClassVar[tuple[str, ...]] = ()
    """Names of the events this store folds; the root routes by these."""
    initial: S
    """The state before any event."""

    def __init__(self, *, name: str | None = None, initial: S | None = None) -> None:
        """Create the store.

        Args:
            name: Name in logs and errors; defaults to the class name.
            initial: Overrides the class's ``initial`` state.
        """
        self.name = name or type(self).__name__
        start = initial if initial is not None else self._initial_state()
        self._state: BehaviorSubject[S] = StateSubject(start)
        self._errors: Subject[RxStoreError] = Subject()
        self.log = logging.getLogger(f"rxstore.store.{self.name}")

    def _initial_state(self) -> S:
        try:
            return self.initial
        except AttributeError:
            raise TypeError(
                f"{type(self).__name__} has no initial state: set the class attribute "
                "`initial` or pass initial=... to the constructor"
            ) from None

    # -- what subclasses write -------------------------------------------------

    def accept(self, event: Event) -> bool:
        """Return whether to fold ``event``; called only for names in ``accepts``."""
        return True

    def reduce(self, state: S, event: Event) -> S:
        """Return the state after ``event``. Must not mutate ``state``."""
        raise NotImplementedError(f"{type(self).__name__} must implement reduce(state, event)")

    # -- reading the state -----------------------------------------------------

    @property
    def state(self) -> Observable[S]:
        """The state as a hot observable; a new subscriber gets the current state first."""
        return self._state

    @property
    def value(self) -> S:
        """The current state, synchronously."""
        return self._state.value

    @property
    def errors(self) -> Observable[RxStoreError]:
        """Errors of this store (also forwarded to the root's ``errors``)."""
        return self._errors

    def select(
        self, selector: Callable[[S], T], *, equals: Callable[[T, T], bool] | None = None
    ) -> Observable[T]:
        """Project the state and emit only when the projection changes.

        Args:
            selector: Maps the whole state to the part a view needs.
            equals: Comparer of two projections; ``==`` by default.

        Example:
            ``posts.select(lambda s: s.get("p1"))`` emits the post each time it
            changes and not when other posts change.
        """
        return self._state.pipe(
            ops.map(selector),
            ops.distinct_until_changed(comparer=equals) if equals else ops.distinct_until_changed(),
        )

    # -- applying events -------------------------------------------------------

    def apply(self, events: Sequence[Event]) -> None:
        """Fold ``events`` (all accepted by this store) into the state; notify once.

        Events that fail are reported to :attr:`errors` and skipped; the others
        are applied. Nothing is emitted when the state did not change.
        """
        before = self._state.value
        after = self.reduce_batch(before, events)
        if after is not before:
            self._state.on_next(after)

    def reduce_batch(self, state: S, events: Sequence[Event]) -> S:
        """Fold a batch; the default calls :meth:`reduce` per event, isolating failures.

        Override to apply a whole batch in one step (``TableStore`` does).
        """
        accept = self.accept
        reduce = self.reduce
        for event in events:
            try:
                if accept(event):
                    state = reduce(state, event)
            except Exception as exc:
                self.report(event, exc)
        return state

    def report(self, event: Event, exc: Exception) -> None:
        """Send a failure of ``event`` to :attr:`errors`, wrapped as a :class:`StoreError`."""
        error = exc if isinstance(exc, StoreError) else StoreError(self.name, event, exc)
        self.log.warning("[%s] %s", self.name, error)
        self._errors.on_next(error)

    def setup_realtime_handlers(self, events: Observable[Event]) -> DisposableBase:
        """Fold the accepted events of a plain event stream (the seed's interface).

        The :class:`~rxstore.root.RootStore` does not use this for domain stores:
        it routes by name, which costs the same with 1 or 100 stores. Use it to
        drive a store from any observable of events, e.g. in a marble test.

        Marble:
            events: ``-a-x-b-|``  (``x`` is not accepted)
            state:  ``s-a---b--`` (``s`` is the initial state)
        """
        names = frozenset(self.accepts)

        def accepted(event: Event) -> bool:
            return event.name in names

        return events.pipe(ops.filter(accepted)).subscribe(
            on_next=lambda event: self.apply((event,)),
            on_error=lambda exc: self.log.error("event stream failed: %s", exc),
        )

    def reset(self) -> None:
        """Return to the initial state (emits it)."""
        self._state.on_next(self._initial_state())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} accepts={self.accepts!r}>"
