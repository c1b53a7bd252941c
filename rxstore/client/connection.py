"""Connection states, the reconnection backoff policy, and the connection loop's rules.

The loop itself is ``Connector._run`` (rxstore/client/connector.py); what it decides with
lives here: how a token is obtained, which failures are worth retrying, and
the error it stops with.
"""

from __future__ import annotations

import enum
import inspect
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from rxstore.protocol.errors import ConnectionRefused, RxStoreError, TokenProviderError, TransportError

__all__ = [
    "Backoff",
    "ConnectionState",
    "ConnectionStatus",
    "Retry",
    "Token",
    "TokenProvider",
]

TokenProvider = Callable[[], Awaitable[str]]
"""An async callable returning a fresh token; called before every connection attempt."""
Token = str | TokenProvider | None
E = TypeVar("E", bound=BaseException)

_FATAL_REFUSALS = frozenset({"invalid_token", "forbidden_topic", "bad_request"})
"""Refusals that a retry with the same token and topics cannot pass (``bad_request``:
the gateway says the client itself is wrong). Any other refusal is retried with
backoff, up to ``Backoff.max_attempts`` failed attempts in a row."""


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
    """One state of ``root.connection``, which emits one on each change of status.

    A run of failed attempts is one ``reconnecting`` state, whatever the
    number of attempts: each attempt, with the delay before the next, is on
    ``root.retries`` (a :class:`Retry`).

    Attributes:
        status: The state.
        reason: Why (``invalid_token``, ``token_expired``, ``forbidden_topic``,
            ``transport close``, ``closed``, ...), when there is one: for
            ``reconnecting``, what ended the link or failed the first attempt.
        url: The gateway URL concerned.

    Example:
        >>> ConnectionState(ConnectionStatus.DISCONNECTED, reason="invalid_token").reason
        'invalid_token'
    """

    status: ConnectionStatus
    reason: str | None = None
    url: str | None = None

    @property
    def connected(self) -> bool:
        """True when events flow."""
        return self.status is ConnectionStatus.CONNECTED


@attrs.frozen
class Retry:
    """A failed connection attempt that will be retried: one value of ``root.retries``.

    Attributes:
        attempt: Failed attempts in a row so far (1 for the first).
        delay: Seconds until the next attempt (the backoff's, or the gateway's ``retry_after``).
        reason: Why the attempt failed (a refusal's reason, or the transport's error).
        url: The gateway URL of the failed attempt.

    Example:
        >>> retry = Retry(attempt=2, delay=0.5, reason="transport close", url="http://gw")
        >>> f"attempt {retry.attempt} failed ({retry.reason}); next in {retry.delay} s"
        'attempt 2 failed (transport close); next in 0.5 s'
    """

    attempt: int
    delay: float
    reason: str
    url: str


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

    def after(self, retry_after: float, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay before retrying a gateway that asked to wait ``retry_after`` seconds.

        At least ``retry_after`` (and at least :meth:`delay`), plus up to ``jitter`` of
        it at random so that shed clients do not all return in the same instant; at
        most ``maximum``, unless ``retry_after`` itself is longer.

        Example:
            >>> Backoff(jitter=0.0).after(2.0, 1), Backoff(maximum=1.0, jitter=1.0).after(3.0, 1)
            (2.0, 3.0)
        """
        spread = retry_after * self.jitter * (rng or random).random()
        wanted = max(self.delay(attempt, rng), retry_after + spread)
        return max(retry_after, min(wanted, self.maximum))

    def pause(self, rng: random.Random | None = None) -> float:
        """Return the pause before reconnecting after a lost link: up to :meth:`delay` ``(1)``, at random.

        Clients of a node that restarts do not all come back in the same instant;
        without ``jitter`` there is no pause.

        Example:
            >>> Backoff(jitter=0.0).pause(), 0.0 <= Backoff().pause() <= 0.25
            (0.0, True)
        """
        if not self.jitter:
            return 0.0
        return self.delay(1, rng) * (rng or random).random()


# -- the connection loop's rules ------------------------------------------------


def checked_token(token: Token) -> Token:
    """Return ``token`` if it is a string, a callable or ``None``.

    Raises:
        TypeError: Anything else (a provider's *result* is checked when it is called).
    """
    if token is None or isinstance(token, str) or callable(token):
        return token
    raise TypeError(
        f"token must be a str, an async callable returning one, or None; got {type(token).__name__}"
    )


async def resolve_token(token: Token) -> str | None:
    """Return the token for the next attempt, calling the provider if there is one.

    Raises:
        TokenProviderError: The provider raised (the ``__cause__``), returned
            no string, or is not async (``fatal``: it is not called again).
    """
    if token is None or isinstance(token, str):
        return token
    try:
        pending = token()
        if not inspect.isawaitable(pending):
            raise TokenProviderError(
                f"the token provider {_name_of(token)} returned {type(pending).__name__}, not an "
                "awaitable: make it async (async def) or pass the token string itself",
                fatal=True,
            )
        value = await pending
    except TokenProviderError:
        raise
    except Exception as exc:
        raise TokenProviderError(f"the token provider raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, str):
        raise TokenProviderError(f"the token provider returned {type(value).__name__}, not a str")
    return value


def is_fatal(error: RxStoreError, *, renewable: bool) -> bool:
    """Return whether retrying cannot get past ``error`` (``renewable``: the token comes from a provider).

    Example:
        >>> is_fatal(ConnectionRefused("token_expired"), renewable=True)
        False
        >>> is_fatal(ConnectionRefused("invalid_token"), renewable=True)
        True
    """
    if isinstance(error, ConnectionRefused):
        return error.reason in _FATAL_REFUSALS or (error.reason == "token_expired" and not renewable)
    return isinstance(error, TokenProviderError) and error.fatal


def reason_of(error: RxStoreError) -> str:
    """The ``ConnectionState.reason`` for a failed attempt."""
    return error.reason if isinstance(error, ConnectionRefused) else str(error)


def dropped_at_once(url: str, reason: str, uptime: float) -> RxStoreError:
    """The failure of a link accepted, then lost ``uptime`` seconds later before any frame.

    Example:
        >>> dropped_at_once("http://gw", "server disconnect", 0.01).reason
        'disconnected_at_once'
        >>> str(dropped_at_once("http://gw", "transport close", 0.01))
        'the link to http://gw was lost 0.01 s after connecting, before any frame: transport close'
    """
    if reason == "server disconnect":  # python-socketio's word for the server ending it
        return ConnectionRefused(
            "disconnected_at_once",
            f"{url} accepted the connection and disconnected it {uptime:.2f} s later, before "
            "sending anything (a server refusing in handleConnection? refuse in the handshake)",
        )
    lost = f"the link to {url} was lost {uptime:.2f} s after connecting"
    return TransportError(f"{lost}, before any frame: {reason}")


def gave_up(error: RxStoreError, failures: int) -> RxStoreError:
    """The error that ends the loop after ``failures`` failed attempts, ``error`` the last.

    A token provider's own exception stays the ``__cause__`` (it is the caller's code);
    otherwise ``error`` is kept out of the printed traceback (see :func:`behind`).

    Example:
        >>> str(gave_up(ConnectionRefused("unavailable"), 3))
        'gave up after 3 failed attempts: connection refused: unavailable'
    """
    message = f"gave up after {failures} failed attempt{'' if failures == 1 else 's'}: {error}"
    if isinstance(error, TokenProviderError):
        final = TokenProviderError(message)
        final.__cause__ = error.__cause__
        return final
    if isinstance(error, ConnectionRefused):
        return behind(ConnectionRefused(error.reason, message, retry_after=error.retry_after), error)
    return behind(TransportError(message), error)


def behind(error: E, cause: BaseException) -> E:
    """Return ``error`` with ``cause`` behind it: reachable, but not printed with its traceback.

    ``cause`` becomes the ``__context__``, which ``__suppress_context__`` keeps out
    of a printed traceback (a ``__cause__`` is always printed): the user reads one
    error, not the chain of library internals behind it, and a debugger still
    finds them (``raise ... from None`` inside ``except`` does the same).

    Example:
        >>> error = behind(TransportError("cannot connect"), OSError("refused"))
        >>> error.__cause__, error.__context__, error.__suppress_context__
        (None, OSError('refused'), True)
    """
    error.__cause__ = None
    error.__context__ = cause
    error.__suppress_context__ = True
    return error


def _name_of(provider: Any) -> str:
    return str(getattr(provider, "__qualname__", None) or repr(provider))
