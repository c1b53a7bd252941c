"""One frame of a recording: :class:`FrameEntry`."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["FrameEntry"]


@attrs.frozen
class FrameEntry:
    """One frame the root received, as the transport delivered it.

    Attributes:
        index: Its number in the recording, from 0.
        time: Seconds since the recording began (monotonic clock).
        name: The socket event name (``post_update``, ``rxstore:batch``, ...).
        data: Its payload, as JSON values (a decoded batch as ``{"events": [[name, payload], ...]}``).
    """

    index: int
    time: float
    name: str
    data: Any
