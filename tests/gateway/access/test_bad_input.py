"""rxstore.gateway.access.bad_input: refusals counted by reason, reported once per client and rate-limited."""

from __future__ import annotations

import logging
import time
import types

import pytest
from prometheus_client import CollectorRegistry, Counter

from rxstore.gateway.access import bad_input
from rxstore.gateway.access.bad_input import BadInputLog, WireGuard


def counter(name: str, *labels: str) -> Counter:
    return Counter(name, name, list(labels), registry=CollectorRegistry())


def test_each_client_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    report = BadInputLog(per_minute=10, suppressed=counter("suppressed"))
    with caplog.at_level(logging.WARNING, "rxstore.gateway"):
        assert report.warn("10.0.0.1:5000", "not a Socket.IO packet")
        assert not report.warn("10.0.0.1:5000", "again")
    assert [r.getMessage() for r in caplog.records] == [
        "[RealtimeGateway] bad client 10.0.0.1:5000: not a Socket.IO packet; closed"
    ]


def test_lines_over_the_rate_are_counted_and_the_next_line_says_how_many(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.monotonic() + 1.0]  # a second after the log starts (its clock's default reads the real one)
    monkeypatch.setattr(bad_input, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    suppressed = counter("suppressed")
    report = BadInputLog(per_minute=2, suppressed=suppressed)
    with caplog.at_level(logging.WARNING, "rxstore.gateway"):
        written = [report.warn(f"10.0.0.{i}:5000", "bad") for i in range(5)]
        now[0] += 30.0  # half a minute: one more line
        assert report.warn("10.0.0.9:5000", "bad")
    assert written == [True, True, False, False, False]
    assert suppressed._value.get() == 3
    assert caplog.records[-1].getMessage().endswith("closed (3 more bad clients not logged)")


def test_a_refusal_is_counted_by_reason_and_its_client_reported_once() -> None:
    bad_frames = counter("bad", "reason")
    report = BadInputLog(per_minute=10, suppressed=counter("suppressed"))
    guard = WireGuard(
        max_frame_bytes=1024,
        handshake_timeout=None,
        bad_frames=bad_frames,
        handshake_timeouts=counter("timeouts"),
        report=report,
    )
    guard.refused("10.0.0.1:5000", "binary", "a binary frame")
    guard.refused("10.0.0.1:5000", "malformed", "not a packet")
    assert bad_frames.labels("binary")._value.get() == 1
    assert bad_frames.labels("malformed")._value.get() == 1
    assert not report.warn("10.0.0.1:5000", "reported already")
