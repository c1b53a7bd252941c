"""The one exception hierarchy of rxstore.

Every error rxstore raises or reports derives from :class:`RxStoreError`, and
also from the builtin it most resembles, so ``except ValueError`` keeps
working for code that does not know rxstore.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol


class RxStoreError(Exception):
    """Base class of every rxstore error.

    Example:
        >>> try:
        ...     raise OutboxFull("outbox holds 1000 messages")
        ... except RxStoreError as exc:
        ...     print(type(exc).__name__, isinstance(exc, BufferError))
        OutboxFull True
    """


class ProtocolError(RxStoreError, ValueError):
    """A frame or envelope does not follow the wire protocol (docs/protocol.md).

    Attributes:
        event: Name of the socket event that carried the bad payload.
        payload: The payload as received (kept for debugging).
        store: Name of the store that could not use the payload, when one
            store reports it for itself (a ``TableStore`` given a message
            that is not a change envelope); ``None`` when the root reports it.

    Example:
        >>> from rxstore.protocol.events import parse_change
        >>> try:
        ...     parse_change({"seq": 7}, event="post_update")
        ... except ProtocolError as exc:
        ...     print(exc.event, "-", exc)
        post_update - change envelope is missing 'topic'
    """

    def __init__(
        self, message: str, *, event: str | None = None, payload: Any = None, store: str | None = None
    ) -> None:
        super().__init__(message)
        self.event = event
        self.payload = payload
        self.store = store


class ValidationError(RxStoreError, ValueError):
    """A record does not match the store's ``record_type``.

    Attributes:
        problems: One line per bad field, e.g. ``"expected int @ $.count"``.

    Example:
        >>> import attrs
        >>> from rxstore.stores.table import structure_record
        >>> @attrs.frozen
        ... class Post:
        ...     id: str
        ...     likes: int = 0
        >>> try:
        ...     structure_record({"id": "p1", "likes": "many"}, Post)
        ... except ValidationError as exc:
        ...     print(exc.problems)
        ('invalid value for type, expected int @ $.likes',)
    """

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class FailedEvent(Protocol):
    """What a :class:`StoreError` knows of the event that failed (an :class:`~rxstore.Event`)."""

    @property
    def name(self) -> str:
        """The event's name."""

    @property
    def seq(self) -> int | None:
        """Its change's seq, if it is a change."""

    @property
    def data(self) -> Any:
        """Its payload."""


class StoreError(RxStoreError, RuntimeError):
    """A store could not apply an event; its state stayed as it was.

    The original exception is the ``__cause__``.

    Attributes:
        store: Name of the store.
        event: The event that failed.

    Example:
        >>> from rxstore.protocol.events import Event
        >>> error = StoreError("LikeStore", Event("post_liked"), KeyError("post"))
        >>> print(error)
        LikeStore could not apply 'post_liked' (seq=None): 'post'
        >>> error.store, type(error.__cause__).__name__
        ('LikeStore', 'KeyError')
    """

    def __init__(self, store: str, event: FailedEvent, cause: BaseException) -> None:
        super().__init__(f"{store} could not apply {event.name!r} (seq={event.seq}): {cause}")
        self.store = store
        self.event = event
        self.__cause__ = cause


class ConnectionRefused(RxStoreError, ConnectionError):
    """The gateway refused the connection.

    Attributes:
        reason: Machine-readable reason: ``invalid_token``, ``token_expired``,
            ``forbidden_topic``, ``bad_request``, ``unavailable``, the message
            of another server's refusal, or ``refused`` when the server gave none.
        retry_after: Seconds the gateway asked the client to wait before trying
            again (an overloaded gateway's ``unavailable``), or ``None``. The
            root store waits at least that long (plus jitter) before its next attempt.

    Example:
        ``await root.setup_realtime()`` raises it when the gateway refuses for
        good (``invalid_token``, ``forbidden_topic``, ``bad_request``), or
        after ``Backoff.max_attempts`` failed attempts in a row of any other
        refusal; ``root.errors`` reports every refusal, the retried ones too:

        >>> exc = ConnectionRefused("invalid_token")
        >>> exc.reason, str(exc), isinstance(exc, ConnectionError)
        ('invalid_token', 'connection refused: invalid_token', True)
    """

    def __init__(self, reason: str, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message or f"connection refused: {reason}")
        self.reason = reason
        self.retry_after = retry_after


class TokenProviderError(RxStoreError, RuntimeError):
    """The token provider failed: it raised (the ``__cause__``), or is not async.

    A provider that raises counts as a failed connection attempt: the root
    store reports it to ``root.errors``, backs off and calls it again, and
    gives up after ``Backoff.max_attempts`` failed attempts in a row. A
    provider that returns no awaitable (a plain ``def``) is a mistake that
    retrying cannot fix: ``setup_realtime()`` raises at once. Fix the
    provider, or pass the token string itself.

    Attributes:
        fatal: True when calling the provider again cannot help (it is not async).

    Example:
        >>> try:
        ...     try:
        ...         raise OSError("auth server down")
        ...     except OSError as cause:
        ...         raise TokenProviderError("the token provider raised OSError: auth server down") from cause
        ... except RxStoreError as exc:
        ...     print(type(exc.__cause__).__name__, isinstance(exc, RuntimeError))
        OSError True
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class TransportError(RxStoreError, ConnectionError):
    """The transport failed (unreachable server, dropped socket, ...); retried.

    The root store retries by itself; it reports a ``TransportError`` to
    ``root.errors`` (and raises it from ``setup_realtime``) only after
    ``Backoff.max_attempts`` failed attempts in a row.

    Example:
        >>> isinstance(TransportError("cannot connect to http://127.0.0.1:1"), ConnectionError)
        True
    """


class ConnectError(RxStoreError, ConnectionError):
    """The first connection did not succeed within ``RootStore(connect_timeout=...)``.

    Raised by a waiting ``setup_realtime()`` (and so by ``async with
    RootStore(...)``) when the gateway could not be reached, or kept refusing
    with a reason that may pass, for ``connect_timeout`` seconds (10 by
    default); the root store then stops trying. Check the URL and that the
    gateway runs; a long-lived service that should wait for its gateway
    passes ``connect_timeout=None`` (retry forever, per ``Backoff``). Once
    connected, lost connections are retried per ``Backoff`` and never raise this.

    Attributes:
        url: The gateway URL of the last attempt.
        attempts: How many attempts failed.
        timeout: The ``connect_timeout`` that ran out, in seconds.
        cause: The last attempt's error (a :class:`TransportError`,
            :class:`ConnectionRefused` or :class:`TokenProviderError`). It is
            also the ``__context__``, kept out of the printed traceback
            (``__suppress_context__``): a user reads this one error, a debugger
            still reaches the chain of library internals behind it.

    Example:
        >>> exc = ConnectError("http://127.0.0.1:9", attempts=5, timeout=10.0, cause="refused")
        >>> str(exc).split(";")[0]
        'cannot connect to http://127.0.0.1:9 within 10 s, 5 failed attempts (last: refused)'
        >>> exc.url, exc.attempts, isinstance(exc, ConnectionError)
        ('http://127.0.0.1:9', 5, True)
    """

    def __init__(self, url: str, *, attempts: int, timeout: float, cause: object) -> None:
        plural = "" if attempts == 1 else "s"
        last = str(cause).removeprefix(f"cannot connect to {url}: ")  # the URL is named once
        super().__init__(
            f"cannot connect to {url} within {timeout:g} s, {attempts} failed attempt{plural} "
            f"(last: {last}); is the gateway running at that URL? connect_timeout=None keeps retrying"
        )
        self.url = url
        self.attempts = attempts
        self.timeout = timeout
        self.cause = cause


class LiveTimeout(RxStoreError, TimeoutError):
    """A store (or every store of a root) did not become live in time.

    Raised by ``await store.live(timeout=...)`` and ``await root.live(timeout=...)``
    (and sent by the observables of ``when_live``). The message names each
    store that was not live, with its sync state and cursor, and for a root
    the connection's state and reason.

    Attributes:
        waiting: Store name -> the sync state it was in (``"stale"`` or
            ``"replaying"``) when the time ran out.
        connection: The root's connection status and reason (``root.live``
            only), e.g. ``"reconnecting (transport error)"``.

    Example:
        >>> exc = LiveTimeout(10.0, {"PostStore": "replaying (cursor 12)"}, connection="connected")
        >>> print(exc)
        not live after 10 s: PostStore replaying (cursor 12); connection connected
        >>> isinstance(exc, TimeoutError), exc.waiting
        (True, {'PostStore': 'replaying (cursor 12)'})
    """

    def __init__(self, timeout: float, waiting: dict[str, str], *, connection: str | None = None) -> None:
        stores = ", ".join(f"{name} {state}" for name, state in waiting.items()) or "no store waiting"
        where = f"; connection {connection}" if connection is not None else ""
        super().__init__(f"not live after {timeout:g} s: {stores}{where}")
        self.waiting = waiting
        self.connection = connection


class NotConnected(RxStoreError, ConnectionError):
    """An operation needs a live connection and there is none.

    Example:
        Calls still queued when the root store is torn down fail with it:
        ``await root.call("save_post", {...})`` raises ``NotConnected`` if
        ``teardown_realtime()`` runs before the call could be sent.

        >>> isinstance(NotConnected("the root store was torn down"), ConnectionError)
        True
    """


class OutboxFull(RxStoreError, BufferError):
    """The offline outbox is full; the message was not queued.

    Raise the outbox size, or wait for the connection to come back.

    Example:
        ``RootStore(url, outbox_limit=100)`` queues at most 100 messages while
        offline; the 101st ``root.call(...)`` raises ``OutboxFull`` at once.

        >>> isinstance(OutboxFull("outbox holds 100 messages"), BufferError)
        True
    """


class PersistError(RxStoreError, OSError):
    """The client's state file (``RootStore(persist=...)``) cannot be used as asked.

    Attributes:
        reason: ``locked`` (another process has the file open: raised),
            ``foreign`` (a SQLite file that is not an rxstore state file: the root
            runs without persistence), ``corrupt`` (set aside, a fresh file made),
            ``older_format`` (another version's file: its state dropped), ``changed``
            (another subset, key, set of stores, or rows a changed ``record_type`` no
            longer fits: a fresh snapshot), ``too_big`` (over ``max_bytes``: writing
            stops), ``write_delayed`` (a full disk, a lock, a read-only file: the
            write is tried again, every 0.5 s doubling to 30 s, until it goes through) or
            ``write_failed`` (any other I/O error, a row that is not JSON: writing
            stops). Only ``locked`` is raised; the others are reported
            on ``root.errors`` and logged once.
        path: The file.

    Example:
        >>> exc = PersistError("locked", "app-state.db is open in another process")
        >>> exc.reason, isinstance(exc, OSError)
        ('locked', True)
    """

    def __init__(self, reason: str, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class CallTimeout(RxStoreError, TimeoutError):
    """An acknowledged call got no acknowledgement in time.

    Example:
        ``await root.call("save_post", post, timeout=2.0)`` raises it when the
        gateway has not acknowledged within 2 s of the send.

        >>> isinstance(CallTimeout("no acknowledgement for 'save_post'"), TimeoutError)
        True
    """


class CallRejected(RxStoreError, RuntimeError):
    """The gateway answered a call with an error.

    Attributes:
        code: Machine-readable error code from the gateway.

    Example:
        >>> exc = CallRejected("forbidden", "mutation 'delete_post' rejected: forbidden")
        >>> exc.code
        'forbidden'
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code


class AuthError(RxStoreError, PermissionError):
    """A token or a subscription was refused by the gateway.

    Attributes:
        reason: ``invalid_token``, ``token_expired`` or ``forbidden_topic``.

    Example:
        >>> exc = AuthError("token_expired", "the token has expired: get a new one")
        >>> exc.reason, isinstance(exc, PermissionError)
        ('token_expired', True)
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RecordingError(RxStoreError, ValueError):
    """A recording (``root.record()``) cannot be read, or cannot be replayed as asked.

    Attributes:
        reason: ``not_a_recording`` (not JSON lines of a recording), ``version`` (a format
            this rxstore does not read), ``unreplayable`` (a state rxstore cannot compare by
            value), ``local_state`` (a state published outside any frame: an optimistic
            mutation, ``reset()``), ``no_store`` (a recorded store the replay was not given),
            ``not_importable`` (a store class defined in ``__main__`` or in a function).

    Example:
        >>> exc = RecordingError("version", "session.jsonl: recording format 9; this rxstore reads 1")
        >>> exc.reason, isinstance(exc, ValueError)
        ('version', True)
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ReplayMismatch(RxStoreError, AssertionError):
    """A replayed store published another state than the one recorded (or one more, or one less).

    Attributes:
        store: The store's name.
        state: The number of the state that differs (0: the state when the recording began).
        frame: The index of the frame that caused the recorded state, or ``None``.

    Example:
        >>> exc = ReplayMismatch("likes", 2, 5, "likes: state 2 (after frame 5) differs: ...")
        >>> exc.store, exc.state, isinstance(exc, AssertionError)
        ('likes', 2, True)
    """

    def __init__(self, store: str, state: int, frame: int | None, message: str) -> None:
        super().__init__(message)
        self.store = store
        self.state = state
        self.frame = frame


_SQLITE_STORAGE_FAULTS = (
    "database is locked",
    "database table is locked",
    "database or disk is full",
    "disk i/o error",
    "readonly database",
    "unable to open database",
)
"""sqlite3 messages of a file that cannot take a write now (the write itself may be fine)."""


def sqlite_storage_fault(exc: BaseException) -> str | None:
    """One line saying why a SQLite file takes no writes now, or ``None`` if ``exc`` is not that.

    A full disk, a lock another writer holds, a read-only file: a write to retry once the
    cause goes away, not one to refuse. Used by the gateway (its mutations) and by a client's
    state file.

    Example:
        >>> sqlite_storage_fault(sqlite3.OperationalError("database or disk is full"))
        'database or disk is full'
        >>> sqlite_storage_fault(sqlite3.IntegrityError("UNIQUE constraint failed: posts.id")) is None
        True
    """
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    text = str(exc)
    return text if any(fault in text.lower() for fault in _SQLITE_STORAGE_FAULTS) else None
