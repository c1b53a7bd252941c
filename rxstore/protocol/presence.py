"""Presence on the wire: its events, a member, and the checks of a channel and its metadata.

A client joins a presence channel with ``rxstore:presence_join {"channel", "meta"}``, replaces
its metadata with ``rxstore:presence_update`` and leaves with ``rxstore:presence_leave``. The
gateway sends each channel's frames under the event ``rxstore:presence:<channel>``: first the
whole member list (``{"type": "state", ...}``), then what changes (``{"type": "diff", ...}``)::

    join a ──────► state [ann/c1]
    bob joins      diff  joins [bob/c7]
    bob updates    diff  updates [bob/c7]
    bob drops      diff  leaves [bob/c7]

docs/protocol.md, "Presence", is the specification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from rxstore.protocol.errors import ProtocolError

__all__ = [
    "MAX_CHANNEL",
    "PRESENCE_JOIN",
    "PRESENCE_LEAVE",
    "PRESENCE_PREFIX",
    "PRESENCE_UPDATE",
    "Member",
    "check_channel",
    "encode_meta",
    "member_of",
    "presence_event",
]

PRESENCE_JOIN: Final = "rxstore:presence_join"
"""Client -> gateway: ``{"channel", "meta"}``; acknowledged with ``{"ok", "conn", "members"}``."""
PRESENCE_UPDATE: Final = "rxstore:presence_update"
"""Client -> gateway: ``{"channel", "meta"}``, the connection's new metadata in a joined channel."""
PRESENCE_LEAVE: Final = "rxstore:presence_leave"
"""Client -> gateway: ``{"channel"}``."""
PRESENCE_PREFIX: Final = "rxstore:presence:"
"""Gateway -> client: a channel's frames come under ``PRESENCE_PREFIX + channel``."""
MAX_CHANNEL: Final = 200
"""Longest channel name, in characters."""


def presence_event(channel: str) -> str:
    """The event name a channel's presence frames come under.

    Example:
        >>> presence_event("room:1")
        'rxstore:presence:room:1'
    """
    return PRESENCE_PREFIX + channel


@attrs.frozen
class Member:
    """One connection in a presence channel: its user (from its token), its connection, its metadata.

    Attributes:
        user: The user's id, from the token the connection was made with (never from ``meta``).
        conn: The connection's id, given by the gateway; one user's two tabs are two of them.
        meta: The metadata the connection set (any JSON value).

    Example:
        >>> member_of({"user": "ann", "conn": "c1", "meta": {"typing": True}}).key
        ('ann', 'c1')
    """

    user: str
    conn: str
    meta: Any = None

    @property
    def key(self) -> tuple[str, str]:
        """``(user, conn)``: what identifies a member in a channel."""
        return (self.user, self.conn)

    def to_wire(self) -> dict[str, Any]:
        """The member as the protocol sends it."""
        return {"user": self.user, "conn": self.conn, "meta": self.meta}


def member_of(data: Any) -> Member:
    """A member from its wire form ``{"user", "conn", "meta"}``.

    Raises:
        ProtocolError: ``data`` is not such an object.
    """
    if not isinstance(data, Mapping):
        raise ProtocolError(f"a presence member is an object, got {type(data).__name__}", payload=data)
    user, conn = data.get("user"), data.get("conn")
    if type(user) is not str or type(conn) is not str:
        raise ProtocolError("a presence member needs 'user' and 'conn' strings", payload=data)
    return Member(user, conn, data.get("meta"))


def check_channel(channel: Any) -> str:
    """``channel`` if it is a channel name: a string of 1-:data:`MAX_CHANNEL` characters.

    Raises:
        ProtocolError: It is not.
    """
    if type(channel) is not str or not 0 < len(channel) <= MAX_CHANNEL:
        raise ProtocolError(f"'channel' must be a string of 1-{MAX_CHANNEL} characters", payload=channel)
    return channel


def encode_meta(meta: Any, max_bytes: int) -> bytes:
    """``meta`` as compact JSON, checked: JSON values only, at most ``max_bytes`` bytes encoded.

    Raises:
        ProtocolError: It is not JSON (NaN or an infinity, a value of another type), or its
            encoding is longer than ``max_bytes``.

    Example:
        >>> encode_meta({"status": "away"}, 64)
        b'{"status":"away"}'
    """
    try:
        text = json.dumps(meta, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"'meta' is not JSON: {exc}", payload=meta) from exc
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) > max_bytes:
        raise ProtocolError(f"'meta' is {len(encoded)} bytes of JSON, over the limit of {max_bytes}")
    return encoded
