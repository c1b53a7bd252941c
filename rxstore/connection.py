"""Connection states and the reconnection backoff policy."""

from __future__ import annotations

import enum
import random
import time

import attrs

__all__ = ["Backoff", "ConnectionState", "ConnectionStatus", "SyncState", "SyncStatus"]


class ConnectionStatus(enum.Enum):
    """Where the root store's link to the gateway is.

    Example:
        >>> [status.value for status in ConnectionStatus]
        ['idle', 'connecting', 'connected', 'reconnecting', 'disconnected']
        >>> ConnectionState(ConnectionStatus.CONNECTED).connected
        True
    """

    IDLE = "idle"
    """Not started (before ``setup_realtime``)."""
    CONNECTING = "connecting"
    """First connection attempt in progress."""
    CONNECTED = "connected"
    """Linked; events flow."""
    RECONNECTING = "reconnecting"
    """The link was lost or an attempt failed; retrying after ``delay``."""
    DISCONNECTED = "disconnected"
    """Given up or closed; ``reason`` says why."""


@attrs.frozen
class ConnectionState:
    """One state of ``root.connection``.

    Attributes:
        status: The state.
        reason: Why (``invalid_token``, ``token_expired``, ``forbidden_topic``,
            ``transport error``, ``closed``, ...), when there is one.
        attempt: The reconnection attempt number (1 for the first retry).
        delay: Seconds until the next attempt, while reconnecting.
        url: The gateway URL concerned.

    Example:
        >>> ConnectionState(ConnectionStatus.DISCONNECTED, reason="invalid_token").reason
        'invalid_token'
    """

    status: ConnectionStatus
    reason: str | None = None
    attempt: int = 0
    delay: float | None = None
    url: str | None = None

    @property
    def connected(self) -> bool:
        """True when events flow."""
        return self.status is ConnectionStatus.CONNECTED


@attrs.frozen(kw_only=True)
class Backoff:
    """Exponential backoff with jitter and a cap, for reconnection attempts.

    The delay before attempt ``n`` (1-based) is ``initial * factor**(n-1)``,
    capped at ``maximum``, of which the fraction ``jitter`` is randomized.

    Attributes:
        initial: Delay before the first retry, in seconds.
        factor: Growth per attempt.
        maximum: Cap on the delay.
        jitter: Fraction of the delay that is random (0 = none, 1 = full jitter).
        max_attempts: Give up after this many failed connection attempts in a
            row (unreachable gateway, a refusal that may pass, a token provider
            that raises); ``None`` = never. Giving up reports the last failure
            to ``root.errors``, sets the state to disconnected, and makes a
            waiting ``setup_realtime()`` raise it.
        stable_after: A link accepted and then lost within this many seconds,
            before a single frame arrived, counts as a failed attempt (a
            server that refuses by disconnecting in its connection handler,
            as NestJS's ``handleConnection`` does): the next attempt backs
            off, and ``max_attempts`` such links in a row give up with a
            ``ConnectionRefused`` (reason ``disconnected_at_once``) or a
            ``TransportError``. A link that received a frame, or lived
            longer, ends a run of failures.

    Example:
        >>> Backoff(initial=1.0, factor=2.0, maximum=5.0, jitter=0.0).delay(4)
        5.0
        >>> Backoff(max_attempts=3).gives_up(3), Backoff().gives_up(1000)
        (True, False)
    """

    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.5
    max_attempts: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    stable_after: float = attrs.field(default=5.0, validator=attrs.validators.ge(0.0))

    def gives_up(self, failures: int) -> bool:
        """Return whether ``failures`` failed attempts in a row are enough to stop."""
        return self.max_attempts is not None and failures >= self.max_attempts

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay in seconds before attempt number ``attempt`` (>= 1)."""
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        if not self.jitter:
            return base
        draw = (rng or random).random()
        return base * (1.0 - self.jitter) + base * self.jitter * draw


class SyncState(enum.Enum):
    """How fresh a table store's data is."""

    STALE = "stale"
    """Not connected: the data may be old (see ``SyncStatus.lag``)."""
    REPLAYING = "replaying"
    """Connected and catching up (snapshot or replay after the cursor)."""
    LIVE = "live"
    """Caught up; changes arrive as they are committed."""


@attrs.frozen
class SyncStatus:
    """The sync status of a table store, as ``store.status`` emits it.

    Attributes:
        state: Stale, replaying or live.
        cursor: Seq of the last change applied.
        since: Unix time the store entered this state.

    Example:
        >>> SyncStatus(SyncState.LIVE, cursor=12, since=0.0).lag
        0.0
    """

    state: SyncState
    cursor: int | None = None
    since: float = 0.0

    @property
    def lag(self) -> float:
        """Seconds the data may be behind: time since it went stale, 0 otherwise."""
        if self.state is SyncState.STALE and self.since:
            return max(0.0, time.time() - self.since)
        return 0.0
