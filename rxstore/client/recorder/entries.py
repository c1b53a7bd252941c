"""What a recording holds, entry by entry: frames received, states published, the link."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["FrameEntry", "LinkEntry", "StateEntry", "StoreEntry"]


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


@attrs.frozen
class StateEntry:
    """One state a store published.

    Attributes:
        store: The store's name.
        time: Seconds since the recording began.
        after: The index of the frame that caused it; ``None`` for the state the store
            held when the recording began (``initial``), or one published outside any
            frame (an optimistic mutation, ``reset()``, ``restore()``).
        value: The state as :func:`~rxstore.client.recorder.plain.plain` made it.
        initial: Whether it is the state held when the recording began.
    """

    store: str
    time: float
    after: int | None
    value: Any
    initial: bool = False


@attrs.frozen
class LinkEntry:
    """The link came up (``up``) or went down (``lost``).

    Attributes:
        time: Seconds since the recording began.
        status: ``up`` or ``lost``.
        reason: Why it went down (``lost``), or the URL it came up to.
    """

    time: float
    status: str
    reason: str | None = None


@attrs.frozen
class StoreEntry:
    """One store whose states are recorded.

    Attributes:
        name: Its name (``store.name``).
        cls: Its class, as ``module:Qualname`` (the generated test imports it from there).
        event: Its subscription id, for a table store following one (``TableStore(event=...)``);
            ``None`` otherwise.
    """

    name: str
    cls: str
    event: str | None = None
