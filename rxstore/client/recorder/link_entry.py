"""The link going up or down in a recording: :class:`LinkEntry`."""

from __future__ import annotations

import attrs

__all__ = ["LinkEntry"]


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
