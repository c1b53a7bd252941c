"""Ending a task for sure: cancelled again until it ends.

Python 3.11's ``asyncio.wait_for`` (python-socketio's connect and calls, and the
transport's timeouts use it) loses a cancellation that arrives as its awaitable
finishes: a task cancelled once may go on running, and whoever awaits it would
wait forever.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

__all__ = ["RECANCEL", "cancel_and_wait"]

RECANCEL: Final = 0.1
"""Seconds between two cancellations of a task that has not ended yet."""


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` every :data:`RECANCEL` seconds until it ends; its outcome is left in it.

    The caller's own cancellation is not swallowed: it interrupts the wait.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=RECANCEL)
