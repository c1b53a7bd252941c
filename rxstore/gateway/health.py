"""What the gateway's ``/healthz`` and ``/metrics`` answer (served by :mod:`~rxstore.gateway.mount`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rxstore.gateway.delivery.fanout import RedisFanout
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.metrics import Metrics

__all__ = ["health_report", "metrics_report"]


def health_report(
    log: ChangeLog,
    fanout: RedisFanout | None,
    running: bool,
    clients: int,
    head: int,
    writes: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """What ``/healthz`` answers: its HTTP status (200 or 503) and body.

    Args:
        log: The change log.
        fanout: The Redis fan-out, if any.
        running: The gateway is open and its tasks (tailing, trimming, Redis) run.
        clients: Connected clients.
        head: The last seq broadcast.
        writes: Why the database refuses the gateway's writes, and since when
            (:meth:`~rxstore.gateway.log.write_faults.WriteFaults.status`); ``None`` while it takes them.

    Returns:
        200 while it runs, the log's database is up and Redis (if any) answers; else 503.
        A warning (the WAL capture's slot retains too much WAL, the database refusing the
        gateway's writes) is in ``warnings`` and keeps 200.
    """
    redis_ok = fanout is None or fanout.healthy
    healthy = log.healthy and redis_ok and running
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unhealthy",
        "log": "up" if log.healthy else "down",
        "redis": "none" if fanout is None else ("up" if redis_ok else "down"),
        "clients": clients,
        "head": head,
    }
    warnings = []
    capture = getattr(log, "capture_status", None)
    if capture is not None:  # PostgreSQL: triggers, or the WAL capture (leader / standby, lag, lost slots)
        body["capture"] = capture
        if capture.get("warning"):
            warnings.append(capture["warning"])
    body["writes"] = "ok" if writes is None else writes
    if writes is not None:  # reads and broadcasts go on; mutations are refused, to be resent
        warnings.append(f"the database takes no writes for {writes['failing_for_s']:g} s: {writes['error']}")
    if warnings:
        body["warnings"] = warnings
    return (200 if healthy else 503), body


def metrics_report(metrics: Metrics, log: ChangeLog) -> tuple[bytes, str]:
    """What ``/metrics`` answers: the Prometheus text and its content type."""
    metrics.healthy.set(1 if log.healthy else 0)
    capture = getattr(log, "capture_status", None) or {}
    if capture.get("lag_bytes") is not None:
        metrics.capture_lag_bytes.set(capture["lag_bytes"])
    if capture.get("lag_seconds") is not None:
        metrics.capture_lag_seconds.set(capture["lag_seconds"])
    metrics.capture_slots_lost.set(capture.get("slots_lost", 0))
    if capture.get("retained_bytes") is not None:
        metrics.capture_retained_bytes.set(capture["retained_bytes"])
    metrics.capture_slot_warning.set(1 if capture.get("warning") else 0)
    metrics.capture_spooled_parts.set(capture.get("spooled_parts", 0))
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
