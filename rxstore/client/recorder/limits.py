"""How much a recording may hold: :class:`RecordLimits`."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["MAX_BYTES", "MAX_FRAMES", "MAX_SECONDS", "RecordLimits"]

MAX_FRAMES = 100_000
"""Most frames a recording keeps, by default."""
MAX_BYTES = 64 * 1024 * 1024
"""Most bytes a recording's file holds, by default (64 MiB)."""
MAX_SECONDS = 3600.0
"""Longest a recording goes on, by default (an hour)."""


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"RecordLimits.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RecordLimits:
    """The bounds of one recording: the first to be reached stops it.

    A recording that reaches one stops at once: it keeps what it holds, ends with the
    bound's name (``max_frames``, ``max_bytes``, ``max_seconds``) and logs one warning;
    it never grows past it.

    Attributes:
        max_frames: Frames received (a batch is one frame): 100,000 by default.
        max_bytes: Bytes of the recording as saved (frames and states, as JSON): 64 MiB.
        max_seconds: Seconds since the recording began, checked as frames and states
            arrive: 3,600 (an hour).

    Example:
        >>> RecordLimits(max_frames=1000).max_bytes
        67108864
    """

    max_frames: int = attrs.field(default=MAX_FRAMES, validator=_positive)
    max_bytes: int = attrs.field(default=MAX_BYTES, validator=_positive)
    max_seconds: float = attrs.field(default=MAX_SECONDS, validator=_positive)
