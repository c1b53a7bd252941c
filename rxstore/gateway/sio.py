"""The gateway's Socket.IO server, assembled: packets decoded by the gateway's rules, the wire guarded.

:mod:`~rxstore.gateway.access.packets` decodes what clients send,
:mod:`~rxstore.gateway.access.guard` watches the wire (frame sizes, handshakes,
binary frames), :mod:`~rxstore.gateway.delivery.gateway_packets` encodes what the gateway
sends; :func:`guarded_server` puts them together into the one
``socketio.AsyncServer`` a gateway runs.
"""

from __future__ import annotations

from typing import Any

from rxstore.gateway.access.bad_input import BadInputLog, WireGuard
from rxstore.gateway.access.guard import GuardedServer, json_packet_class
from rxstore.gateway.access.guard import msgpack_packet_class as guarded_msgpack_packet_class
from rxstore.gateway.access.guarded_websockets import websocket_limit
from rxstore.gateway.delivery.gateway_packets import GatewayPacket
from rxstore.gateway.delivery.gateway_packets import msgpack_packet_class as gateway_msgpack_packet_class
from rxstore.gateway.metrics import Metrics

__all__ = ["guarded_server"]


def guarded_server(
    metrics: Metrics,
    *,
    serializer: str,
    max_frame_bytes: int,
    handshake_timeout: float | None,
    bad_input_log_per_minute: int,
    async_mode: str,
    client_manager: Any,
    cors_allowed_origins: str | list[str],
    ping_interval: float = 25.0,
    ping_timeout: float = 20.0,
) -> GuardedServer:
    """The gateway's Socket.IO server: its packets decoded by the gateway's rules, its wire guarded.

    The arguments are the gateway's (see ``RealtimeGateway``); bad frames and
    handshake timeouts are counted in ``metrics``.
    """
    guard = WireGuard(
        max_frame_bytes=max_frame_bytes,
        handshake_timeout=handshake_timeout,
        bad_frames=metrics.bad_frames,
        handshake_timeouts=metrics.handshake_timeouts,
        report=BadInputLog(bad_input_log_per_minute, metrics.bad_input_log_suppressed),
    )
    packet_class = (
        guarded_msgpack_packet_class(gateway_msgpack_packet_class(), max_frame_bytes=max_frame_bytes)
        if serializer == "msgpack"
        else json_packet_class(GatewayPacket, max_frame_bytes=max_frame_bytes)
    )
    return GuardedServer(
        guard=guard,
        async_mode=async_mode,
        client_manager=client_manager,
        serializer=packet_class,
        max_http_buffer_size=websocket_limit(max_frame_bytes),
        cors_allowed_origins=cors_allowed_origins,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
