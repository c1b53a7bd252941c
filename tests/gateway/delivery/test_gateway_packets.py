"""rxstore.gateway.delivery.gateway_packets: the gateway's frames encode as python-socketio's do, faster."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
import socketio
import socketio.msgpack_packet

from rxstore.gateway.codec import LogFrame
from rxstore.gateway.delivery.gateway_packets import GatewayPacket, msgpack_packet_class

EVENTS = [["post_update", {"record": {"id": "p1", "likes": 3, "score": 0.5}, "seq": 7}]]


def test_a_log_frame_is_not_scanned_for_binary_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-socketio's scan runs for other data only."""
    scanned: list[Any] = []
    scan = socketio.packet.Packet.data_is_binary.__func__

    def recording(cls: type[Any], data: Any) -> bool:
        scanned.append(data)
        return bool(scan(cls, data))

    monkeypatch.setattr(socketio.packet.Packet, "data_is_binary", classmethod(recording))
    assert GatewayPacket.data_is_binary(["rxstore:batch", LogFrame(events=EVENTS)]) is False
    assert scanned == []
    assert GatewayPacket.data_is_binary(["typing", {"n": 1}]) is False
    assert scanned[0] == ["typing", {"n": 1}]  # then, recursively, each item


@pytest.mark.parametrize("data", [["rxstore:batch", LogFrame(events=EVENTS)], ["typing", {"n": 1}]])
def test_a_json_frame_decodes_to_what_python_socketios_packet_gives(data: list[Any]) -> None:
    ours = GatewayPacket(socketio.packet.EVENT, namespace="/", data=data).encode()
    theirs = socketio.packet.Packet(socketio.packet.EVENT, namespace="/", data=data).encode()
    assert ours[0] == theirs[0] == "2"
    assert json.loads(ours[1:]) == json.loads(theirs[1:])


@pytest.mark.parametrize("data", [["rxstore:batch", LogFrame(events=EVENTS)], ["typing", {"n": 1}]])
def test_a_msgpack_frame_decodes_to_what_python_socketios_packet_gives(data: list[Any]) -> None:
    packet_class = msgpack_packet_class()
    assert issubclass(packet_class, socketio.msgpack_packet.MsgPackPacket)
    ours = packet_class(socketio.packet.EVENT, namespace="/", data=data).encode()
    theirs = socketio.msgpack_packet.MsgPackPacket(socketio.packet.EVENT, namespace="/", data=data).encode()
    assert msgpack.unpackb(ours) == msgpack.unpackb(theirs) == {"type": 2, "data": data, "nsp": "/"}
