"""rxstore.gateway.access.guarded_websockets: frames refused before Engine.IO reads them.

Through a real gateway (aiohttp and ASGI) in access/test_guard.py and
test_mount.py; here the ASGI driver alone, fed events by hand.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import engineio.async_drivers.asgi
import pytest
from prometheus_client import CollectorRegistry, Counter

from rxstore.gateway.access.bad_input import BadInputLog, WireGuard
from rxstore.gateway.access.guarded_websockets import asgi_websocket_class, peer, websocket_limit


def test_the_websocket_limit_is_a_quarter_more_and_at_least_16_kib_more() -> None:
    assert websocket_limit(1 << 20) == (1 << 20) + (1 << 18)
    assert websocket_limit(4096) == 4096 + (16 << 10)


def test_a_peer_is_read_from_the_asgi_scope_or_the_aiohttp_transport() -> None:
    class Transport:
        def get_extra_info(self, name: str) -> Any:
            return ("10.0.0.2", 4000) if name == "peername" else None

    class Request:
        transport = Transport()
        remote = "10.0.0.3"

    assert peer({"asgi.scope": {"client": ["10.0.0.1", 5000]}}) == "10.0.0.1:5000"
    assert peer({"aiohttp.request": Request()}) == "10.0.0.2:4000"
    assert peer({}) == "unknown"


def guard(max_frame_bytes: int = 1024) -> tuple[WireGuard, Counter]:
    registry = CollectorRegistry()
    bad_frames = Counter("bad", "bad", ["reason"], registry=registry)
    return (
        WireGuard(
            max_frame_bytes=max_frame_bytes,
            handshake_timeout=None,
            bad_frames=bad_frames,
            handshake_timeouts=Counter("hs", "hs", registry=registry),
            report=BadInputLog(10, Counter("sup", "sup", registry=registry)),
        ),
        bad_frames,
    )


def asgi_driver(wire: WireGuard, events: list[dict[str, Any]], sent: list[Any]) -> Any:
    driver = asgi_websocket_class(wire, engineio.async_drivers.asgi.WebSocket)(None, None)

    async def receive() -> MutableMapping[str, Any]:
        return events.pop(0)

    async def send(event: MutableMapping[str, Any]) -> None:
        sent.append(event)

    driver.asgi_receive, driver.asgi_send = receive, send
    driver.environ = {"asgi.scope": {"client": ["10.0.0.1", 5000]}}
    return driver


async def test_an_engineio_packet_passes_and_anything_else_is_refused_as_malformed() -> None:
    wire, bad_frames = guard()
    sent: list[Any] = []
    driver = asgi_driver(wire, [{"type": "websocket.receive", "text": "4hello"}], sent)
    assert await driver.wait() == "4hello"
    driver = asgi_driver(wire, [{"type": "websocket.receive", "text": "hello"}], sent)
    with pytest.raises(OSError, match=r"not an Engine\.IO packet"):
        await driver.wait()
    assert bad_frames.labels("malformed")._value.get() == 1 and sent == []


async def test_a_frame_over_the_websocket_limit_is_refused_and_closes_with_1009() -> None:
    wire, bad_frames = guard()
    sent: list[Any] = []
    over = websocket_limit(1024) + 1
    driver = asgi_driver(wire, [{"type": "websocket.receive", "bytes": b"4" * over}], sent)
    with pytest.raises(OSError):
        await driver.wait()
    assert bad_frames.labels("oversize_closed")._value.get() == 1
    assert sent == [{"type": "websocket.close", "code": 1009}]


async def test_a_closed_websocket_ends_the_connection_uncounted() -> None:
    wire, bad_frames = guard()
    driver = asgi_driver(wire, [{"type": "websocket.disconnect", "code": 1000}], [])
    with pytest.raises(OSError):
        await driver.wait()
    assert [metric.samples for metric in bad_frames.collect()] == [[]]
