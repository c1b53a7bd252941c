"""Bad input at the wire: the limits it breaks and the rate-limited report of who sent it.

:class:`WireGuard` holds the limits the gateway's guard applies
(:mod:`rxstore.gateway.access.guard`, :mod:`rxstore.gateway.access.guarded_websockets`)
and counts each refusal; :class:`BadInputLog` writes at most one warning line
per client, and at most so many a minute in all.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import attrs
from prometheus_client import Counter

__all__ = ["BadInputLog", "WireGuard"]

log = logging.getLogger("rxstore.gateway")


@attrs.define(eq=False)
class BadInputLog:
    """Warnings about bad clients: at most one line per client, at most ``per_minute`` lines in all.

    Lines held back are counted (``rxstore_bad_input_log_suppressed``) and the
    next line says how many there were.

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> logged = BadInputLog(per_minute=1, suppressed=Counter("s", "s", registry=CollectorRegistry()))
        >>> logged.warn("10.0.0.1:5000", "not a Socket.IO packet"), logged.warn("10.0.0.2:5000", "x")
        (True, False)
        >>> logged.warn("10.0.0.1:5000", "again")
        False
    """

    per_minute: int
    suppressed: Counter
    _seen: OrderedDict[str, None] = attrs.field(factory=OrderedDict, init=False)
    _tokens: float = attrs.field(init=False)
    _last: float = attrs.field(factory=time.monotonic, init=False)
    _held: int = attrs.field(default=0, init=False)

    @_tokens.default
    def _full(self) -> float:
        return float(self.per_minute)

    def warn(self, client: str, message: str) -> bool:
        """Log ``message`` about ``client`` unless it was reported before or the rate is spent."""
        if client in self._seen:
            return False
        self._seen[client] = None
        if len(self._seen) > 10_000:  # remember the latest clients only: bounded
            self._seen.popitem(last=False)
        now = time.monotonic()
        rate = self.per_minute / 60.0
        self._tokens = min(float(self.per_minute), self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < 1.0:
            self._held += 1
            self.suppressed.inc()
            return False
        self._tokens -= 1.0
        held, self._held = self._held, 0
        suffix = f" ({held} more bad clients not logged)" if held else ""
        log.warning("[RealtimeGateway] bad client %s: %s; closed%s", client, message, suffix)
        return True


@attrs.define(eq=False)
class WireGuard:
    """The gateway's limits at the wire, and what counts and reports their breaches.

    Attributes:
        max_frame_bytes: Largest frame whose payload is decoded.
        handshake_timeout: Seconds an Engine.IO connection may stay without
            joining the namespace (``None``: forever).
        bad_frames: Counter of refused frames, by reason.
        handshake_timeouts: Counter of connections closed for not joining.
        report: The rate-limited warning log.
    """

    max_frame_bytes: int
    handshake_timeout: float | None
    bad_frames: Counter
    handshake_timeouts: Counter
    report: BadInputLog

    def refused(self, client: str, reason: str, message: str) -> None:
        """Count a refused frame and report its client (at most once, rate-limited)."""
        self.bad_frames.labels(reason).inc()
        self.report.warn(client, message)
