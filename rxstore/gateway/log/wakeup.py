"""Waking change-log tailers without losing a wake-up (shared by both backends)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

__all__ = ["WakeSignal"]


class WakeSignal:
    """Wakes tailers, without losing a wake-up that lands between read() and wait().

    :meth:`mark_read` remembers, per asyncio task, the version it read at; a
    later :meth:`wait` by that task returns at once if anything happened since.
    Loop thread only.
    """

    def __init__(self) -> None:
        self._version = 0
        self._event = asyncio.Event()
        self._seen: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()

    def mark_read(self) -> None:
        """Remember that the current task has read everything up to now."""
        task = asyncio.current_task()
        if task is not None:
            self._seen[task] = self._version

    def notify(self) -> None:
        """Wake every waiter: new changes may be readable."""
        self._version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return after the next :meth:`notify` (at once if one came since ``mark_read``), or ``timeout``."""
        task = asyncio.current_task()
        version = self._version
        if task is not None:
            seen = self._seen.get(task)
            self._seen[task] = version
            if seen is not None and seen != version:
                return
        if timeout <= 0:
            return
        event = self._event
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
