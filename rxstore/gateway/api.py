"""What a gateway's user writes against: topics, retention, mutation results and the hook types.

Nothing here imports python-socketio, so that an application's own modules
(its mutations, its schema) can import these without the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from rxstore.gateway.access.auth import User
from rxstore.gateway.log.contract import Statement
from rxstore.protocol.errors import RxStoreError
from rxstore.protocol.events import topic_event_name

__all__ = [
    "GatewayUsageError",
    "Handler",
    "MutationHandler",
    "Retention",
    "RowFilter",
    "Topic",
    "TopicFilter",
    "Writes",
]

RowFilter = Callable[[User, str, Mapping[str, Any]], bool]
"""``authorize(user, topic, row) -> bool``: may this user see this row?"""
TopicFilter = Callable[[User, str], bool]
"""``can_subscribe(user, topic) -> bool``: may this user subscribe to this topic?"""
Handler = Callable[[User, Any], Awaitable[Any]]
"""``async handler(user, data) -> ack`` for an event sent by clients."""


@attrs.frozen
class Writes:
    """What a mutation handler returns: statements to run in one transaction, and a result.

    Attributes:
        statements: ``(sql, params)`` pairs, run in order, atomically.
        result: Sent back to the client in the acknowledgement (JSON-able).
    """

    statements: Sequence[Statement]
    result: Any = None


MutationHandler = Callable[[User, Any], Awaitable["Writes | Sequence[Statement]"]]
"""``async handler(user, args) -> Writes | [(sql, params), ...]``; raise ValueError to reject
the payload, PermissionError (or AuthError) to forbid it."""


@attrs.frozen(kw_only=True)
class Topic:
    """A table served by the gateway.

    Attributes:
        name: Table (and topic, and room) name.
        event: Socket event name of its changes; ``post_update`` for ``posts``.
        primary_key: The row field that identifies a row.
        old: What UPDATE and DELETE envelopes carry as ``old``: ``"full"`` (the
            whole row before the change, for reducers that compare before and
            after) or ``"key"`` (only ``{primary_key: value}``, as PostgreSQL's
            default replica identity does: what a ``TableStore`` needs, and
            frames about 40% smaller for UPDATEs). ``authorize`` always sees
            the whole row.

    Example:
        >>> Topic(name="posts").event
        'post_update'
        >>> Topic(name="posts", old="key").old
        'key'
    """

    name: str
    event: str = attrs.field(default=attrs.Factory(lambda self: topic_event_name(self.name), takes_self=True))
    primary_key: str = "id"
    old: Literal["full", "key"] = attrs.field(default="full", validator=attrs.validators.in_(("full", "key")))


@attrs.frozen(kw_only=True)
class Retention:
    """How long the change log keeps changes; older cursors get reset + snapshot.

    Attributes:
        max_age: Seconds a change is kept (``None``: no age limit).
        max_rows: Most changes kept (``None``: no size limit).
        interval: Seconds between trims.
    """

    max_age: float | None = 7 * 24 * 3600.0
    max_rows: int | None = 1_000_000
    interval: float = 60.0


class GatewayUsageError(RxStoreError, RuntimeError):
    """The gateway was used in a way its mode or state does not allow; the message says what to do.

    Example:
        >>> from rxstore.gateway import RealtimeGateway, TokenAuth, open_change_log
        >>> gateway = RealtimeGateway(
        ...     open_change_log("sqlite:///app.db"), topics=["posts"], auth=TokenAuth(secret="s" * 32)
        ... )
        >>> try:
        ...     gateway.asgi_app()
        ... except GatewayUsageError as exc:
        ...     print(exc)
        asgi_app() needs RealtimeGateway(..., async_mode='asgi'); this gateway was built with ...
    """
