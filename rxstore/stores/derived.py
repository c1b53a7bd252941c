"""Derived state: a value computed from the states of other stores, once per change, for everyone.

``derived(posts, users, fn=...)`` is MobX's ``computed`` over stores: it
subscribes to its inputs once, calls ``fn`` with their current states when
one of them changes, and keeps the result in a ``BehaviorSubject`` that every
subscriber shares, so ``fn`` runs once per input change whatever the number
of subscribers (``reactivex.combine_latest`` subscribed per view, or a
``select`` per view, runs it once per change *and* subscriber). It emits
only when the result changes, and reads synchronously as ``.value``.

Glitches: without a scheduler, ``fn`` runs as soon as any input changes. One
incoming frame that changes two inputs (a batch of changes to two tables)
then computes twice, and the first result, one input new and the other not
yet, is emitted. With ``scheduler=`` (the loop's ``AsyncIOScheduler``, a
marble test's ``m.scheduler``) a change marks the value stale and one
computation runs after the current action: once per frame, no transient
value; ``.value`` computes at once if it is stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, Self, TypeVar, overload

from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import DisposableBase, SchedulerBase
from reactivex.disposable import CompositeDisposable
from reactivex.subject import Subject

from rxstore.protocol.errors import RxStoreError, StoreError
from rxstore.protocol.events import Event
from rxstore.stores.domain import StateSubject

__all__ = ["Derived", "Readable", "derived"]

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)

_UNSET: Any = object()
"""An input that has not given its state yet."""


class Readable(Protocol[T_co]):
    """What a derived store reads: a ``state`` that gives the current value on subscription.

    Every ``DomainStore`` and ``TableStore`` is one, and so is a :class:`Derived`
    (derived stores over derived stores), or a pipeline store whose ``state``
    is a ``BehaviorSubject``.
    """

    @property
    def state(self) -> Observable[T_co]:
        """The state: the current value first, then each new one."""
        ...


class Derived(DisposableBase, Generic[T]):
    """A value computed from the states of other stores: memoized, shared, distinct until changed.

    Make one with :func:`derived`. The inputs are subscribed once, at
    creation; ``fn`` is called once then, and once per input change (or,
    with a ``scheduler``, once per action that changed inputs), never per
    subscriber. ``fn`` must not mutate its arguments. A ``fn`` that raises
    keeps the last value and reports a :class:`~rxstore.protocol.errors.StoreError`
    to :attr:`errors`. :meth:`dispose` unsubscribes from the inputs and
    completes :attr:`state`.

    Marble:
        posts:   ``a--b--------``
        users:   ``x-----y--z--``  (``z`` changes nothing ``fn`` reads)
        derived: ``A--B--C-----``  (``fn`` ran 4 times, whatever the subscribers)

    Example:
        >>> from rxstore import DomainStore, Event
        >>> class Words(DomainStore[tuple[str, ...]]):
        ...     accepts = ("said",)
        ...     initial = ()
        ...     def reduce(self, state, event):
        ...         return (*state, event.data)
        >>> words = Words()
        >>> with derived(words, fn=lambda w: " ".join(w)) as line:
        ...     seen = []
        ...     _ = line.state.subscribe(seen.append)
        ...     words.apply([Event("said", "hello"), Event("said", "world")])
        >>> seen, line.value
        (['', 'hello world'], 'hello world')
    """

    def __init__(
        self,
        inputs: Sequence[Readable[Any]],
        fn: Callable[..., T],
        *,
        equals: Callable[[T, T], bool] | None = None,
        scheduler: SchedulerBase | None = None,
        name: str | None = None,
    ) -> None:
        """Subscribe to ``inputs`` and compute the first value (see :func:`derived`)."""
        if not inputs:
            raise ValueError("derived(...) needs at least one input store")
        self.name = name or getattr(fn, "__name__", None) or "derived"
        self.log = logging.getLogger(f"rxstore.derived.{self.name}")
        self._fn = fn
        self._equals = equals
        self._scheduler = scheduler
        self._args: list[Any] = [_UNSET] * len(inputs)
        self._stale = False
        self._flushing: DisposableBase | None = None
        """The flush scheduled on ``scheduler``, while one is pending."""
        self._errors: Subject[RxStoreError] = Subject()
        self._ready = False
        """Set once the first value is computed: the inputs' first states only fill ``_args``."""
        self._inputs = CompositeDisposable()
        for index, source in enumerate(inputs):
            self._inputs.add(source.state.subscribe(self._input(index)))
        try:
            if any(arg is _UNSET for arg in self._args):
                raise ValueError(
                    "each input's state must give its current value on subscription, as a store's does"
                )
            self._current: T = fn(*self._args)
        except Exception:
            self._inputs.dispose()
            raise
        self._state: StateSubject[T] = StateSubject(self._current)
        self._ready = True

    # -- reading ---------------------------------------------------------------

    @property
    def state(self) -> Observable[T]:
        """The value as a hot observable; a new subscriber gets the current value first."""
        return self._state

    @property
    def value(self) -> T:
        """The current value, synchronously (computed now if an input changed since)."""
        if self._stale:
            self._compute()
        return self._current

    @property
    def errors(self) -> Observable[RxStoreError]:
        """Failures of ``fn`` and of subscribers of :attr:`state`."""
        return self._errors

    def select(
        self, selector: Callable[[T], U], *, equals: Callable[[U, U], bool] | None = None
    ) -> Observable[U]:
        """Project the value and emit only when the projection changes (as ``DomainStore.select``)."""
        return self._state.pipe(
            ops.map(selector),
            ops.distinct_until_changed(comparer=equals) if equals else ops.distinct_until_changed(),
        )

    # -- computing -------------------------------------------------------------

    def _input(self, index: int) -> Callable[[Any], None]:
        """The subscriber of input ``index``: keeps its state, then recomputes (or marks stale)."""
        args = self._args

        def on_next(value: Any) -> None:
            args[index] = value
            if self._ready:
                self._changed()

        return on_next

    def _changed(self) -> None:
        if self._inputs.is_disposed:
            return
        self._stale = True
        scheduler = self._scheduler
        if scheduler is None:
            self._flush()
        elif self._flushing is None:
            self._flushing = scheduler.schedule(self._scheduled_flush)

    def _scheduled_flush(self, _scheduler: Any, _state: Any) -> None:
        self._flushing = None
        self._flush()

    def _flush(self) -> None:
        """Compute if stale, and publish the value if it is a new one."""
        if self._stale:
            self._compute()
        value = self._current
        if value is self._state.value or self._state.is_stopped:
            return
        try:
            self._state.push(value)
        except Exception as exc:  # a subscriber of the state raised
            self._report(exc)

    def _compute(self) -> None:
        self._stale = False
        try:
            value = self._fn(*self._args)
        except Exception as exc:
            self._report(exc)
            return
        current = self._current
        equals = self._equals
        if not (equals(current, value) if equals is not None else current == value):
            self._current = value

    def _report(self, exc: Exception) -> None:
        error = StoreError(self.name, Event(self.name), exc)
        self.log.warning("[%s] %s", self.name, error)
        self._errors.on_next(error)

    # -- ending ----------------------------------------------------------------

    def dispose(self) -> None:
        """Stop: unsubscribe from the inputs (``fn`` is not called again) and complete :attr:`state`."""
        self._inputs.dispose()
        self._stale = False
        if self._flushing is not None:
            self._flushing.dispose()
            self._flushing = None
        if not self._state.is_stopped:
            self._state.on_completed()

    def __enter__(self) -> Self:
        return self

    def __repr__(self) -> str:
        return f"<Derived {self.name!r} value={self._current!r}>"


@overload
def derived(
    a: Readable[A],
    /,
    *,
    fn: Callable[[A], T],
    equals: Callable[[T, T], bool] | None = None,
    scheduler: SchedulerBase | None = None,
    name: str | None = None,
) -> Derived[T]: ...


@overload
def derived(
    a: Readable[A],
    b: Readable[B],
    /,
    *,
    fn: Callable[[A, B], T],
    equals: Callable[[T, T], bool] | None = None,
    scheduler: SchedulerBase | None = None,
    name: str | None = None,
) -> Derived[T]: ...


@overload
def derived(
    a: Readable[A],
    b: Readable[B],
    c: Readable[C],
    /,
    *,
    fn: Callable[[A, B, C], T],
    equals: Callable[[T, T], bool] | None = None,
    scheduler: SchedulerBase | None = None,
    name: str | None = None,
) -> Derived[T]: ...


@overload
def derived(
    a: Readable[A],
    b: Readable[B],
    c: Readable[C],
    d: Readable[D],
    /,
    *,
    fn: Callable[[A, B, C, D], T],
    equals: Callable[[T, T], bool] | None = None,
    scheduler: SchedulerBase | None = None,
    name: str | None = None,
) -> Derived[T]: ...


def derived(
    *inputs: Readable[Any],
    fn: Callable[..., T],
    equals: Callable[[T, T], bool] | None = None,
    scheduler: SchedulerBase | None = None,
    name: str | None = None,
) -> Derived[T]:
    """A store whose value is ``fn`` of the states of ``inputs``: computed once per change, shared.

    Typed for one to four inputs (``fn`` takes their states, in order); for more, ``Derived([...], fn)``.

    Args:
        inputs: Stores (anything with a ``state`` that gives its current value
            on subscription: domain, table and derived stores).
        fn: Computes the value from the inputs' states; cheap and pure.
        equals: Comparer of two values; ``==`` by default. An equal value is
            not emitted, and the previous object is kept.
        scheduler: Where to compute after a change: ``None`` computes at once
            on each input change; a scheduler computes once per action that
            changed inputs (no transient value when a frame changes two).
        name: Name in logs and errors; defaults to ``fn``'s name.

    Example:
        >>> from rxstore import DomainStore, Event
        >>> class Count(DomainStore[int]):
        ...     accepts = ("tick",)
        ...     initial = 0
        ...     def reduce(self, state, event):
        ...         return state + 1
        >>> a, b = Count(), Count()
        >>> total = derived(a, b, fn=lambda x, y: x + y)
        >>> a.apply([Event("tick"), Event("tick")]); b.apply([Event("tick")])
        >>> total.value
        3
    """
    return Derived(inputs, fn, equals=equals, scheduler=scheduler, name=name)
