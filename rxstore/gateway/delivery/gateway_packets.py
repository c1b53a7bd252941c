"""The packet classes the gateway's own frames are encoded with: its log frames skip the slow paths.

python-socketio's packet classes, subclassed: :class:`GatewayPacket` (JSON,
through orjson) does not scan a log frame for binary values, and the class
:func:`msgpack_packet_class` makes packs a log frame with ormsgpack. The
gateway's Socket.IO server (:mod:`rxstore.gateway.sio`) decodes what clients
send with subclasses of these (:mod:`rxstore.gateway.access.packets`).

They override python-socketio 5.18.1's public ``Packet.data_is_binary`` and
``MsgPackPacket.encode``, and read a packet's fields through
:func:`~rxstore.gateway.access.socketio_seam.packet_dict`;
``tests/gateway/test_library_pins.py`` fails when those change.
"""

from __future__ import annotations

from typing import Any

import socketio

from rxstore.gateway.access.socketio_seam import packet_dict
from rxstore.gateway.codec import GatewayJSON, LogFrame, pack_msgpack

__all__ = ["GatewayPacket", "msgpack_packet_class"]


class GatewayPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's JSON packet, minus the binary scan of the gateway's own frames.

    ``Packet.data_is_binary`` walks every value of every change looking for
    ``bytes``: ~40% of the gateway's CPU on 500-change batches (profiled with
    py-spy, see docs/benchmarks.md). Frames built from the log cannot hold bytes.
    Those frames are encoded by orjson (:class:`~rxstore.gateway.codec.GatewayJSON`).
    """

    json = GatewayJSON

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """False for a log frame without looking inside; python-socketio's scan otherwise."""
        if type(data) is list and len(data) == 2 and type(data[1]) is LogFrame:
            return False
        return bool(super().data_is_binary(data))


def msgpack_packet_class() -> type[Any]:
    """python-socketio's msgpack packet, packing the gateway's log frames with ormsgpack."""
    from socketio.msgpack_packet import MsgPackPacket

    class _GatewayMsgPackPacket(MsgPackPacket):  # type: ignore[misc]
        def encode(self) -> bytes:
            data = self.data
            if type(data) is list and len(data) == 2 and type(data[1]) is LogFrame:
                return pack_msgpack(packet_dict(self))
            return super().encode()  # type: ignore[no-any-return]

    return _GatewayMsgPackPacket
