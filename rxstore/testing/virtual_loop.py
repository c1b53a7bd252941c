"""An asyncio event loop on a ``TestScheduler``'s clock: the root's real connection loop in virtual time.

:class:`VirtualLoop` is what lets a marble test run the code a root runs in
production, tasks, ``asyncio.sleep`` and timeouts included, on reactivex's
``TestScheduler``: a timer is a scheduled action, ``loop.time()`` is the
scheduler's clock (one unit per second), and the callbacks ready at an instant
run in one action at that instant. The reconnection backoff, ``max_attempts``,
token providers and a gateway's ``retry_after`` then take virtual seconds, no
real ones, and run the same every time.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, TypeVarTuple, Unpack

from reactivex.abc import DisposableBase
from reactivex.testing import TestScheduler

__all__ = ["VirtualLoop"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

log = logging.getLogger("asyncio")

_Ready = tuple[asyncio.Handle, Callable[..., object], tuple[Any, ...], contextvars.Context]


@contextmanager
def _running(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Make ``loop`` the thread's running loop (``asyncio.get_running_loop()``) for a while.

    asyncio offers no public way to mark a loop running without ``run_forever``;
    ``asyncio._get_running_loop`` / ``_set_running_loop`` are the hooks the event loops
    outside the standard library (uvloop) use, unchanged from Python 3.7 to 3.13.
    tests/testing/test_virtual_loop.py fails if they change.
    """
    previous = asyncio._get_running_loop()
    asyncio._set_running_loop(loop)
    try:
        yield
    finally:
        asyncio._set_running_loop(previous)


class VirtualLoop(asyncio.AbstractEventLoop):
    """An asyncio event loop whose time is a reactivex ``TestScheduler``'s (one unit = one second).

    Enough of an event loop for futures, tasks, ``asyncio.sleep``,
    ``asyncio.timeout`` / ``wait_for``, ``call_later`` and ``run_in_executor`` (the
    function runs at once, on the loop's thread, in no virtual time: a root's state
    file is read and written so): no sockets or subprocesses. Callbacks ready now
    run at the current virtual time, in one scheduler action (or at once with
    :meth:`run_ready`); a timer is an action at its time.
    :class:`~rxstore.testing.MarbleTest` has one (``m.loop``) that its roots run on.

    Args:
        scheduler: The scheduler whose clock is the loop's time.

    Example:
        >>> from reactivex.testing import TestScheduler
        >>> scheduler = TestScheduler()
        >>> loop = VirtualLoop(scheduler)
        >>> async def nap() -> float:
        ...     await asyncio.sleep(90)
        ...     return loop.time()
        >>> task = loop.create_task(nap())
        >>> _ = scheduler.start()
        >>> task.result()
        90.0
    """

    def __init__(self, scheduler: TestScheduler) -> None:
        self.scheduler = scheduler
        self._ready: deque[_Ready] = deque()
        self._drain: DisposableBase | None = None
        self._timers: dict[int, tuple[asyncio.TimerHandle, DisposableBase]] = {}
        self._running = False
        self._closed = False
        self._debug = False
        self._error_handler: Any = None

    # -- time and callbacks ----------------------------------------------------

    def time(self) -> float:
        """The scheduler's clock, in seconds."""
        return float(self.scheduler.clock)

    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """Run ``callback(*args)`` at the current virtual time, after the callbacks ready before it."""
        self._check_open()
        context = context or contextvars.copy_context()
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append((handle, callback, args, context))
        if self._drain is None and not self._running:
            self._drain = self.scheduler.schedule(lambda _s, _st: self.run_ready())
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """As :meth:`call_soon` (a virtual loop has one thread)."""
        return self.call_soon(callback, *args, context=context)

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """Run ``callback(*args)`` ``delay`` virtual seconds from now."""
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """Run ``callback(*args)`` at virtual time ``when`` (now, if that has passed)."""
        self._check_open()
        context = context or contextvars.copy_context()
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        key = id(handle)

        def fire(_scheduler: Any, _state: Any) -> None:
            self._timers.pop(key, None)
            if not handle.cancelled():
                self._ready.append((handle, callback, args, context))
                self.run_ready()

        action = self.scheduler.schedule_absolute(max(float(when), self.time()), fire)
        self._timers[key] = (handle, action)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """Called by ``TimerHandle.cancel()``: the timer's action is dropped."""
        _handle, action = self._timers.pop(id(handle), (handle, None))
        if action is not None:
            action.dispose()

    def run_ready(self) -> None:
        """Run the callbacks ready now, and those they make ready, at the current virtual time.

        Does nothing while it already runs (a callback calling it).
        """
        if self._running:
            return
        if self._drain is not None:
            self._drain.dispose()
            self._drain = None
        self._running = True
        try:
            with _running(self):
                while self._ready:
                    handle, callback, args, context = self._ready.popleft()
                    if not handle.cancelled():
                        self._run(handle, callback, args, context)
        finally:
            self._running = False

    def _run(
        self,
        handle: asyncio.Handle,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context,
    ) -> None:
        try:
            context.run(callback, *args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            message = f"Exception in callback {callback!r}"
            self.call_exception_handler({"message": message, "exception": exc, "handle": handle})

    # -- futures and tasks -----------------------------------------------------

    def create_future(self) -> asyncio.Future[Any]:
        """A future of this loop."""
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        """A task of this loop running ``coro``; its first step runs at the current virtual time."""
        self._check_open()
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def run_in_executor(
        self, executor: Any, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> asyncio.Future[T]:
        """Run ``func(*args)`` now, on this thread (not in ``executor``); return a done future of it.

        A virtual loop has one thread and its time stands still while code runs: the
        work a root hands a thread (its state file's reads and writes) takes no virtual time.
        """
        self._check_open()
        future: asyncio.Future[T] = self.create_future()
        try:
            future.set_result(func(*args))
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            future.set_exception(exc)
        return future

    # -- state -----------------------------------------------------------------

    def is_running(self) -> bool:
        """Whether callbacks are running now."""
        return self._running

    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Cancel the tasks still pending, let them finish at the current time, then refuse new work."""
        if self._closed:
            return
        for task in asyncio.all_tasks(self):
            task.cancel()
        self.run_ready()
        for _handle, action in self._timers.values():
            action.dispose()
        self._timers.clear()
        self._closed = True

    def get_debug(self) -> bool:
        """Whether asyncio's debug mode is on for this loop."""
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        """Turn asyncio's debug mode on or off."""
        self._debug = enabled

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the virtual loop is closed")

    # -- errors ----------------------------------------------------------------

    def get_exception_handler(self) -> Any:
        """The handler set with :meth:`set_exception_handler`, or ``None``."""
        return self._error_handler

    def set_exception_handler(self, handler: Any) -> None:
        """Call ``handler(loop, context)`` for errors nobody retrieves (``None``: log them)."""
        self._error_handler = handler

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Report an error nobody retrieved (a raising callback, a task's lost exception)."""
        if self._error_handler is not None:
            self._error_handler(self, context)
        else:
            self.default_exception_handler(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log the error to the ``asyncio`` logger, as asyncio's own loops do."""
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) if exception else None
        log.error("%s", context.get("message", "Unhandled error in a virtual loop"), exc_info=exc_info)
