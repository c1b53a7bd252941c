"""The one exception hierarchy of rxstore.

Every error rxstore raises or reports derives from :class:`RxStoreError`, and
also from the builtin it most resembles, so ``except ValueError`` keeps
working for code that does not know rxstore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rxstore.events import Event


class RxStoreError(Exception):
    """Base class of every rxstore error."""


class ProtocolError(RxStoreError, ValueError):
    """A frame or envelope does not follow the wire protocol (docs/protocol.md).

    Attributes:
        event: Name of the socket event that carried the bad payload.
        payload: The payload as received (kept for debugging).
    """

    def __init__(self, message: str, *, event: str | None = None, payload: Any = None) -> None:
        super().__init__(message)
        self.event = event
        self.payload = payload


class ValidationError(RxStoreError, ValueError):
    """A record does not match the store's ``record_type``.

    Attributes:
        problems: One line per bad field, e.g. ``"expected int @ $.count"``.
    """

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class StoreError(RxStoreError, RuntimeError):
    """A store could not apply an event; its state stayed as it was.

    The original exception is the ``__cause__``.

    Attributes:
        store: Name of the store.
        event: The event that failed.
    """

    def __init__(self, store: str, event: Event, cause: BaseException) -> None:
        super().__init__(f"{store} could not apply {event.name!r} (seq={event.seq}): {cause}")
        self.store = store
        self.event = event
        self.__cause__ = cause


class ConnectionRefused(RxStoreError, ConnectionError):
    """The gateway refused the connection.

    Attributes:
        reason: Machine-readable reason: ``invalid_token``, ``token_expired``,
            ``forbidden_topic`` or ``refused`` when the server gave none.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"connection refused: {reason}")
        self.reason = reason


class TransportError(RxStoreError, ConnectionError):
    """The transport failed (unreachable server, dropped socket, ...); retried."""


class NotConnected(RxStoreError, ConnectionError):
    """An operation needs a live connection and there is none."""


class OutboxFull(RxStoreError, BufferError):
    """The offline outbox is full; the message was not queued.

    Raise the outbox size, or wait for the connection to come back.
    """


class CallTimeout(RxStoreError, TimeoutError):
    """An acknowledged call got no acknowledgement in time."""


class CallRejected(RxStoreError, RuntimeError):
    """The gateway answered a call with an error.

    Attributes:
        code: Machine-readable error code from the gateway.
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code


class AuthError(RxStoreError, PermissionError):
    """A token or a subscription was refused by the gateway.

    Attributes:
        reason: ``invalid_token``, ``token_expired`` or ``forbidden_topic``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
