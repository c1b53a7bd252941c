"""A mutation accepted into the outbox: its id, when it is on disk, and its result."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import attrs

__all__ = ["PendingMutation"]


@attrs.frozen(eq=False)
class PendingMutation:
    """A mutation the outbox accepted (``root.submit(...)``, or one recovered from disk at start).

    Attributes:
        id: The mutation id: the gateway applies it once per user, however often it is sent.
        name: The mutation's name.
        args: Its arguments.
        stored: Done once it is on disk (with ``persist=``; at once without): after a
            ``kill -9`` from then on, the next start sends it again. Raises
            :class:`~rxstore.protocol.errors.PersistError` if it could not be written.
        result: The gateway handler's result; raises ``CallRejected`` or ``CallTimeout``
            (its optimistic rows then rolled back). ``await mutation`` is ``await mutation.result``.

    Example:
        ``m = root.submit("save_post", {"id": "p1"}); await m.stored; print(await m)``
    """

    id: str
    name: str
    args: Any
    stored: asyncio.Future[None]
    result: asyncio.Future[Any]

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result.__await__()
