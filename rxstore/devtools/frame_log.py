"""The last frames a root received, kept by the router's frame tap (bounded)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rxstore.devtools.frame_line import FrameLine
from rxstore.devtools.limits import FRAMES

__all__ = ["FrameLog"]


class FrameLog:
    """Keeps the last ``limit`` frames the router is told of; older ones are dropped.

    It is a :class:`~rxstore.client.router.FrameTap`: set it as ``root.router.recorder``
    and each frame is kept, as received, before it is handled. The router has one tap:
    while this one is set, ``root.record()`` refuses to start. A frame costs one append;
    its summary is made only when :meth:`lines` is read.

    Args:
        limit: Most frames kept (at least 1).

    Attributes:
        seen: Frames told since the start (those dropped included): the log's metric.

    Example:
        >>> log = FrameLog(limit=2)
        >>> for seq in (1, 2, 3):
        ...     log.frame("post_update", {"seq": seq, "op": "INSERT", "record": {"id": seq}})
        ...     _ = log.frame_done()
        >>> [line.summary for line in log.lines()], log.seen
        (['INSERT seq 3 {"id":3}', 'INSERT seq 2 {"id":2}'], 3)
    """

    def __init__(self, *, limit: int = FRAMES) -> None:
        if limit < 1:
            raise ValueError(f"FrameLog keeps at least 1 frame, got limit={limit}")
        self.limit = limit
        self.seen = 0
        self._frames: deque[tuple[float, Any, Any]] = deque(maxlen=limit)

    def frame(self, name: str, data: Any) -> None:
        """Keep a frame (the router's tap: called before the frame is handled)."""
        self.seen += 1
        self._frames.append((time.time(), name, data))

    def frame_done(self) -> bool:
        """The frame was handled: go on tapping."""
        return True

    def __len__(self) -> int:
        return len(self._frames)

    def lines(self) -> list[FrameLine]:
        """The frames kept, newest first, summarized."""
        return [FrameLine.of(at, name, data) for at, name, data in reversed(self._frames)]
