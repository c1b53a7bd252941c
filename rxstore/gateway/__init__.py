"""The server half of rxstore: a change log in, authorized Socket.IO frames out.

Everything a gateway's user needs is importable from here; the modules under
``rxstore.gateway`` are its implementation (``log/``: the change log and its
backends, ``delivery/``: the live path and bringing clients up to date,
``queries/``: subscriptions and visibility, ``access/``: tokens and the wire's
guard). Importing it imports neither the client (``rxstore.client``,
``rxstore.stores``) nor ``reactivex``.

Example:
    ``from rxstore.gateway import RealtimeGateway, TokenAuth, open_change_log``, then
    ``gateway = RealtimeGateway(open_change_log("sqlite:///app.db"), topics=["posts"],
    auth=TokenAuth(secret=...))`` and ``await gateway.start(port=8080)``.
"""

from rxstore.gateway.access.auth import KeyConfigError, TokenAuth, User
from rxstore.gateway.access.guarded_websockets import websocket_limit
from rxstore.gateway.api import (
    GatewayUsageError,
    Handler,
    MutationHandler,
    Retention,
    RowFilter,
    Topic,
    TopicFilter,
    Writes,
)
from rxstore.gateway.demo import Post, create_demo_schema, dialect_of, register_demo_mutations, save_post
from rxstore.gateway.log.contract import ChangeLog, Statement
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.log.postgres.changelog import PostgresChangeLog
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.gateway.mount import ASGIApp, GatewayASGIApp, Receive, Scope, Send, Served
from rxstore.gateway.presence.channels import JoinFilter
from rxstore.gateway.presence.limits import PresenceLimits
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.errors import AuthError

__all__ = [
    "ASGIApp",
    "AuthError",
    "ChangeLog",
    "GatewayASGIApp",
    "GatewayUsageError",
    "Handler",
    "JoinFilter",
    "KeyConfigError",
    "MutationHandler",
    "Post",
    "PostgresChangeLog",
    "PresenceLimits",
    "RealtimeGateway",
    "Receive",
    "Retention",
    "RowFilter",
    "SQLiteChangeLog",
    "Scope",
    "Send",
    "Served",
    "Statement",
    "TokenAuth",
    "Topic",
    "TopicFilter",
    "User",
    "Writes",
    "create_demo_schema",
    "dialect_of",
    "open_change_log",
    "register_demo_mutations",
    "save_post",
    "websocket_limit",
]
