"""The one place rxstore reaches under python-engineio's public API.

Every private name of python-engineio (and of the ``asyncio.Queue`` it keeps
per socket) that the gateway needs is touched here and nowhere else, each in
one small function commented with the version it was written against
(python-engineio 4.15.1, with python-socketio 5.18.1). The rest of the
gateway calls these functions:

* :func:`websocket_driver` / :func:`replace_websocket_driver`: the websocket
  class one server builds for each client (``AsyncServer._async["websocket"]``),
  replaced for that server alone (the wire's guard, the direct path's tracking);
* :func:`websocket_response`: an aiohttp driver's ``WebSocketResponse``
  (``WebSocket._sock``);
* :func:`packets_waiting` and :func:`packets_queued`: what a socket's writer
  still has to hand to its websocket (``queue._unfinished_tasks``, ``queue``);
* :func:`close_after_queued`: closing a socket once its queue is written
  (``AsyncSocket.close`` then ``None`` in its ``queue``);
* :func:`bad_post_session`: the session whose long-polling body python-engineio
  could not decode, read off the traceback it logs.

``tests/gateway/test_library_pins.py`` fails when one of these names changes;
``tests/gateway/access/test_engineio_seam.py`` when what they do changes.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import engineio.async_socket
import engineio.packet
import engineio.payload

__all__ = [
    "bad_post_session",
    "close_after_queued",
    "packets_queued",
    "packets_waiting",
    "replace_websocket_driver",
    "websocket_driver",
    "websocket_response",
]


def websocket_driver(eio: Any) -> type[Any]:
    """The websocket class ``eio`` (a python-engineio ``AsyncServer``) builds for each client."""
    # python-engineio 4.15.1: AsyncSocket._upgrade_websocket builds self.server._async["websocket"].
    driver: type[Any] = eio._async["websocket"]
    return driver


def replace_websocket_driver(eio: Any, wrap: Callable[[type[Any]], type[Any]]) -> type[Any]:
    """Make ``eio`` build ``wrap(its websocket class)`` for each client from now on; that class.

    The table replaced is the server's own copy: other servers, and the
    driver module, keep theirs.
    """
    driver = wrap(websocket_driver(eio))
    # python-engineio 4.15.1: _async is the driver module's table, shared until a server replaces it.
    eio._async = {**eio._async, "websocket": driver}
    return driver


def websocket_response(ws: Any) -> Any:
    """The aiohttp ``WebSocketResponse`` of python-engineio's aiohttp websocket driver ``ws``.

    ``None`` until the driver is called (the websocket is being opened).
    """
    # python-engineio 4.15.1: engineio.async_drivers.aiohttp.WebSocket keeps it in _sock.
    return getattr(ws, "_sock", None)


def packets_waiting(socket: Any) -> int:
    """Packets of ``socket`` (a python-engineio ``AsyncSocket``) not yet handed to its websocket.

    A packet its writer task took off the queue stays counted until the
    writer is done with it, so 0 means nothing of it is in flight.
    """
    # python-engineio 4.15.1: the writer calls queue.task_done() after ws.send(); asyncio.Queue
    # (CPython 3.11+) counts what was put and not yet done in _unfinished_tasks.
    waiting: int = socket.queue._unfinished_tasks
    return waiting


def packets_queued(eio: Any, eio_sid: str) -> int:
    """Packets queued for the Engine.IO session ``eio_sid`` and not yet taken by its writer; 0 if gone."""
    # python-engineio 4.15.1: AsyncServer.sockets[sid].queue, an asyncio.Queue of Packets.
    try:
        return int(eio.sockets[eio_sid].queue.qsize())
    except (KeyError, AttributeError):
        return 0


async def close_after_queued(eio: Any, eio_sid: str) -> None:
    """Close the Engine.IO session ``eio_sid``: its disconnect handlers run, what is queued goes first.

    Its CLOSE packet is queued after what waits, then its websocket closes;
    the session is forgotten at once.
    """
    socket = eio.sockets.get(eio_sid)
    if socket is None:
        return
    # python-engineio 4.15.1: close() runs the disconnect handlers and queues a CLOSE packet;
    # None after it makes the websocket writer send the queue, then close the websocket.
    await socket.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
    socket.queue.put_nowait(None)
    eio.sockets.pop(eio_sid, None)


# python-engineio 4.15.1 decodes a long-polling body in AsyncSocket.handle_post_request,
# through Payload.decode and Packet.decode, and logs what they raise with its traceback.
_DECODERS = (engineio.packet.Packet.decode.__code__, engineio.payload.Payload.decode.__code__)
_POST = engineio.async_socket.AsyncSocket.handle_post_request.__code__


def bad_post_session(tb: TracebackType | None) -> str | None:
    """The Engine.IO session whose long-polling body raised this, if that is what raised it."""
    sid, innermost = None, None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code is _POST:
            sid = getattr(tb.tb_frame.f_locals.get("self"), "sid", None)
        elif sid is not None and code in _DECODERS:
            return str(sid)
        innermost = code
        tb = tb.tb_next
    return str(sid) if sid is not None and innermost is _POST else None  # e.g. a body that is not UTF-8
