"""What ``rxstore top`` read of one node at one moment: its health, metrics and counter rates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["NodeSample"]


@attrs.frozen
class NodeSample:
    """One read of a node's ``/healthz`` and ``/metrics``.

    Attributes:
        url: The node (its base URL).
        at: When it was read (``time.monotonic()``).
        status: ``ok`` (healthy), ``unhealthy`` (``/healthz`` answered 503: the log's database
            or Redis is down) or ``down`` (it did not answer, or not as a gateway does).
        error: Why it is down, on one line (``None`` when up).
        health: The ``/healthz`` body (clients, head, log, redis, capture).
        values: Each ``rxstore_*`` metric, summed over its labels (a counter under its name
            without ``_total``).
        rates: Each counter's increase per second since the previous read (none on the first
            read, after a down one, or when it went back: the node restarted).

    Example:
        >>> sample = NodeSample("http://gw:8080", 0.0, "ok", values={"rxstore_connected_clients": 3.0})
        >>> sample.up, sample.value("rxstore_connected_clients"), sample.rate("rxstore_events_sent")
        (True, 3.0, None)
    """

    url: str
    at: float
    status: str
    error: str | None = None
    health: Mapping[str, Any] = attrs.field(factory=dict)
    values: Mapping[str, float] = attrs.field(factory=dict)
    rates: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def up(self) -> bool:
        """Whether the node answered (healthy or not)."""
        return self.status != "down"

    def value(self, name: str) -> float | None:
        """The metric ``name`` (``None`` when the node does not have it)."""
        return self.values.get(name)

    def rate(self, name: str) -> float | None:
        """The counter ``name``'s increase per second (``None`` before two reads)."""
        return self.rates.get(name)
