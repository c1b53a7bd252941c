"""A recorded notification that prints as a marble test's author wrote it: a value at a tick."""

from __future__ import annotations

from typing import Any, TypeVar

from reactivex.notification import Notification, OnCompleted, OnError, OnNext
from reactivex.testing.recorded import Recorded

__all__ = ["Marble"]

T = TypeVar("T")


class Marble(Recorded[T]):
    """A notification at a virtual time, as ``m.record()`` and ``m.expected()`` return them.

    It equals reactivex's ``Recorded`` of the same time and notification, and
    prints as the test wrote it, so a failed comparison reads
    ``OnNext(1)@1 != OnNext(1)@2``, not ``OnNext(1.0)@1.0 != OnNext(1.0)@2``: the
    time in ticks (an integer when it is one), the value's ``repr``.

    Args:
        time: The virtual time.
        value: The notification.
        timespan: Virtual time per tick (the time is shown divided by it).

    Example:
        >>> Marble(2.0, OnNext(1)), Marble(3, OnNext("a"), timespan=2), Marble(4, OnCompleted())
        (OnNext(1)@2, OnNext('a')@1.5, OnCompleted()@4)
    """

    def __init__(self, time: float, value: Notification[T], timespan: float = 1) -> None:
        super().__init__(time, value)  # type: ignore[arg-type]  # reactivex types it int; its clock is a float
        self.timespan = timespan

    def __str__(self) -> str:
        return f"{_notification(self.value)}@{_ticks(self.time / self.timespan)}"


def _notification(notification: Any) -> str:
    if isinstance(notification, OnNext):
        return f"OnNext({notification.value!r})"
    if isinstance(notification, OnError):
        return f"OnError({notification.exception!r})"
    if isinstance(notification, OnCompleted):
        return "OnCompleted()"
    return str(notification)


def _ticks(ticks: float) -> str:
    """``2`` for 2.0, ``1.5`` for 1.5."""
    return str(int(ticks)) if float(ticks).is_integer() else f"{ticks:g}"
