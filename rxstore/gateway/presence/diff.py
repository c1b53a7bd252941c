"""What one step changed in one channel: members that joined, updated their metadata, or left."""

from __future__ import annotations

from typing import Any

import attrs

from rxstore.protocol.presence import Member

__all__ = ["Diff"]


@attrs.frozen
class Diff:
    """The members a step added to a channel, changed, or took away.

    Example:
        >>> Diff(joins=(Member("ann", "c1"),)).to_wire("room")["joins"]
        [{'user': 'ann', 'conn': 'c1', 'meta': None}]
    """

    joins: tuple[Member, ...] = ()
    updates: tuple[Member, ...] = ()
    leaves: tuple[Member, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.joins or self.updates or self.leaves)

    def to_wire(self, channel: str) -> dict[str, Any]:
        """The ``{"type": "diff", ...}`` frame of this diff in ``channel`` (docs/protocol.md)."""
        return {
            "type": "diff",
            "channel": channel,
            "joins": [m.to_wire() for m in self.joins],
            "updates": [m.to_wire() for m in self.updates],
            "leaves": [{"user": m.user, "conn": m.conn} for m in self.leaves],
        }
