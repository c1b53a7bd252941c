"""rxstore.gateway.access.engineio_seam: what each of its functions does with python-engineio 4.15.1.

The names they touch are pinned in tests/gateway/test_library_pins.py; the
gateway's own behaviour through them in access/test_guard.py and
delivery/test_wire.py.
"""

from __future__ import annotations

import sys
from typing import Any

import engineio
import engineio.async_drivers.aiohttp
import engineio.async_socket
import engineio.packet

from rxstore.gateway.access.engineio_seam import (
    bad_post_session,
    close_after_queued,
    packets_queued,
    packets_waiting,
    replace_websocket_driver,
    websocket_driver,
    websocket_response,
)


def server_with_socket(sid: str = "eio-1") -> tuple[Any, Any]:
    eio = engineio.AsyncServer(async_mode="aiohttp")
    socket = engineio.async_socket.AsyncSocket(eio, sid)
    eio.sockets[sid] = socket
    return eio, socket


async def test_a_replaced_websocket_driver_is_that_servers_alone() -> None:
    """The wrapper gets the server's driver; other servers and the driver module keep theirs."""
    eio, other = engineio.AsyncServer(async_mode="aiohttp"), engineio.AsyncServer(async_mode="aiohttp")
    library = engineio.async_drivers.aiohttp.WebSocket
    wrapped: list[type[Any]] = []

    def wrap(base: type[Any]) -> type[Any]:
        wrapped.append(base)
        return type("Wrapped", (base,), {})

    driver = replace_websocket_driver(eio, wrap)
    assert wrapped == [library] and issubclass(driver, library)
    assert websocket_driver(eio) is driver
    assert websocket_driver(other) is library
    assert websocket_driver(engineio.AsyncServer(async_mode="aiohttp")) is library


async def test_a_second_replacement_wraps_the_first() -> None:
    """The guard's driver, then the direct path's tracking around it: both stay in the chain."""
    eio = engineio.AsyncServer(async_mode="aiohttp")
    first = replace_websocket_driver(eio, lambda base: type("First", (base,), {}))
    second = replace_websocket_driver(eio, lambda base: type("Second", (base,), {}))
    assert second.__mro__[1] is first and websocket_driver(eio) is second


async def test_a_driver_has_no_websocket_response_before_it_is_called() -> None:
    driver = engineio.async_drivers.aiohttp.WebSocket(None, None)
    assert websocket_response(driver) is None


async def test_a_packet_taken_by_the_writer_stays_waiting_until_it_is_done() -> None:
    """packets_waiting counts what is queued and what the writer holds; packets_queued only the first."""
    eio, socket = server_with_socket()
    assert packets_waiting(socket) == 0 and packets_queued(eio, "eio-1") == 0
    await eio.send_packet("eio-1", engineio.packet.Packet(engineio.packet.MESSAGE, "2[]"))
    assert packets_waiting(socket) == 1 and packets_queued(eio, "eio-1") == 1
    socket.queue.get_nowait()  # what python-engineio's writer does before it sends
    assert packets_waiting(socket) == 1 and packets_queued(eio, "eio-1") == 0
    socket.queue.task_done()  # ... and after
    assert packets_waiting(socket) == 0


async def test_a_gone_session_has_nothing_queued() -> None:
    eio = engineio.AsyncServer(async_mode="aiohttp")
    assert packets_queued(eio, "gone") == 0


async def test_closing_after_the_queue_queues_close_then_the_writers_end_and_forgets_the_session() -> None:
    """The disconnect handler runs once; what was queued goes first, then CLOSE, then None."""
    eio, socket = server_with_socket()
    disconnected: list[tuple[str, Any]] = []

    async def on_disconnect(sid: str, reason: Any) -> None:
        disconnected.append((sid, reason))

    eio.on("disconnect", on_disconnect)
    await eio.send_packet("eio-1", engineio.packet.Packet(engineio.packet.MESSAGE, "2[]"))
    await close_after_queued(eio, "eio-1")
    assert disconnected == [("eio-1", eio.reason.SERVER_DISCONNECT)]
    queued = [socket.queue.get_nowait() for _ in range(socket.queue.qsize())]
    assert [p.packet_type if p is not None else None for p in queued] == [
        engineio.packet.MESSAGE,
        engineio.packet.CLOSE,
        None,
    ]
    assert "eio-1" not in eio.sockets and socket.closed
    await close_after_queued(eio, "eio-1")  # gone: nothing happens
    assert len(disconnected) == 1


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, length: int) -> bytes:
        return self.data[:length]


async def raised_by_post(body: bytes) -> Any:
    """The traceback of what python-engineio's long-polling POST raises for ``body``."""
    _, socket = server_with_socket("eio-post")
    try:
        await socket.handle_post_request({"CONTENT_LENGTH": str(len(body)), "wsgi.input": Body(body)})
    except Exception:
        return sys.exc_info()[2]
    raise AssertionError("the body was decoded")


async def test_a_long_polling_body_that_is_no_payload_names_its_session() -> None:
    """Not an Engine.IO payload, or not UTF-8: the traceback names the session that sent it."""
    assert bad_post_session(await raised_by_post(b"garbage")) == "eio-post"
    assert bad_post_session(await raised_by_post(b"\xff\xfe")) == "eio-post"


async def test_an_error_not_raised_by_decoding_a_post_body_names_no_session() -> None:
    try:
        raise RuntimeError("a bug of the gateway's own")
    except RuntimeError:
        assert bad_post_session(sys.exc_info()[2]) is None
    assert bad_post_session(None) is None
