"""A token bucket: at most ``rate`` events per second on average, ``burst`` at once."""

from __future__ import annotations

import attrs

__all__ = ["TokenBucket"]


@attrs.define
class TokenBucket:
    """Counts one connection's presence updates against a rate and a burst.

    Example:
        >>> bucket = TokenBucket(rate=1.0, burst=2, tokens=2.0, at=0.0)
        >>> [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0), bucket.take(1.0)]
        [True, True, False, True]
    """

    rate: float
    burst: int
    tokens: float
    at: float
    """When ``tokens`` was counted (``time.monotonic()``)."""

    def take(self, now: float) -> bool:
        """Take one token at ``now``; ``False`` (and nothing taken) when there is none."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
