"""The bounds of presence, each with a default (docs/presence.md, "Bounds and limits")."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["PresenceLimits"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value > 0:
        raise ValueError(f"PresenceLimits.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class PresenceLimits:
    """How much presence one gateway node takes, and how fast it notices a dead node.

    Attributes:
        max_members: Most members of one channel (counted on the node that takes the join,
            every node's members included); one more join is refused with ``too_many_members``.
        max_meta_bytes: Longest metadata of one member, as compact JSON (UTF-8 bytes);
            longer is refused with ``meta_too_large``.
        updates_per_second: Joins and updates one connection may send per second, on
            average; more are refused with ``too_many_updates`` (a leave never is).
        burst: How many of them it may send at once.
        max_channels: Most channels one connection is in at once; one more is refused with
            ``too_many_channels``.
        heartbeat: Seconds between two heartbeats of a node to the others (with Redis).
        lease: Seconds after its last message at which a node is taken for dead by the others:
            its members leave there. A node killed with SIGKILL is gone from every other node
            within ``lease + heartbeat / 2`` seconds (docs/presence.md, "Across nodes").
    """

    max_members: int = attrs.field(default=10_000, validator=_positive)
    max_meta_bytes: int = attrs.field(default=2048, validator=_positive)
    updates_per_second: float = attrs.field(default=20.0, validator=_positive)
    burst: int = attrs.field(default=20, validator=_positive)
    max_channels: int = attrs.field(default=32, validator=_positive)
    heartbeat: float = attrs.field(default=1.0, validator=_positive)
    lease: float = attrs.field(default=5.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.lease < 2 * self.heartbeat:
            raise ValueError(
                f"PresenceLimits.lease ({self.lease:g} s) must be at least twice the heartbeat "
                f"({self.heartbeat:g} s): one late heartbeat must not take a live node for dead"
            )

    @property
    def node_gone_within(self) -> float:
        """Seconds within which a dead node's members are gone from the others (``lease + heartbeat / 2``)."""
        return self.lease + self.heartbeat / 2
