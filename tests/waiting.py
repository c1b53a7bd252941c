"""The one way tests wait for a condition: poll it with a deadline, never sleep a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

#: Called with no arguments (``...`` lets a lambda bind a loop variable as a default argument).
Predicate = Callable[..., "bool | Awaitable[bool]"]


async def wait_for(
    predicate: Predicate,
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.01,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> float:
    """Wait until ``predicate()`` holds; return the seconds waited.

    Args:
        predicate: Checked at once and then every ``interval`` seconds; it may be a coroutine
            function (its result is awaited), and it may raise to end the wait early (e.g. when the
            process being waited on died).
        timeout: Seconds before the wait fails.
        what: Names the condition in the failure message.
        interval: Seconds between checks.
        pause: How to let the rest of the program run between checks (``asyncio.sleep``, or e.g.
            a Textual pilot's ``pause``).

    Raises:
        AssertionError: ``predicate`` did not hold within ``timeout`` seconds.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await pause(interval)
