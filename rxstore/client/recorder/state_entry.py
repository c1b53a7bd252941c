"""One state of a recording: :class:`StateEntry`."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["StateEntry"]


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
