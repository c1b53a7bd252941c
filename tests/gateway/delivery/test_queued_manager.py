"""rxstore.gateway.delivery.queued_manager: QueuedManager hands room emits to the gateway's delivery.

Real python-socketio servers and clients (tests.gateway.delivery.sio_nodes); through Redis in
test_fanout.py, through whole gateways in test_fanout_scaleout.py.
"""

from __future__ import annotations

from rxstore.gateway.delivery.queued_manager import QueuedManager
from tests.gateway.delivery.sio_nodes import ROOM, Recorder, node
from tests.waiting import wait_for


async def test_a_room_emit_goes_to_the_delivery_when_it_takes_it_and_not_to_the_socket() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=True)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("typing", {"n": 1}, room=ROOM, skip_sid="nobody")
        manager.deliver = None
        await n.sio.emit("marker", 2, room=ROOM)  # sent after, on the same socket: arrives after
        await wait_for(lambda: ("marker", 2) in n.received, 5, "the marker")
    assert n.received == [("marker", 2)], "the delivered emit also went out on the socket"
    assert recorder.handed == [("typing", {"n": 1}, ROOM, "nobody")]


async def test_the_delivery_gets_event_data_room_and_skip_sid() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=True)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("typing", {"n": 1}, to=ROOM, skip_sid="s1")
    assert recorder.handed == [("typing", {"n": 1}, ROOM, "s1")]


async def test_a_room_emit_the_delivery_declines_goes_out_on_the_socket() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=False)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("typing", 1, room=ROOM)
        await wait_for(lambda: ("typing", 1) in n.received, 5, "the declined emit on the socket")
    assert len(recorder.handed) == 1


async def test_an_emit_with_a_callback_or_to_everyone_skips_the_delivery() -> None:
    manager = QueuedManager()
    recorder = Recorder(take=True)
    async with node(manager) as n:
        manager.deliver = recorder
        await n.sio.emit("everyone", 1)  # no room
        await n.sio.emit("with_ack", 2, room=ROOM, callback=lambda *args: None)
        await wait_for(lambda: len(n.received) == 2, 5, "both emits on the socket")
    assert recorder.handed == []
    assert sorted(n.received) == [("everyone", 1), ("with_ack", 2)]
