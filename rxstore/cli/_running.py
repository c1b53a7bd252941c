"""What a running server says and heeds, one process or many: its lines, the stop signal, listen errors.

``rxstore serve`` (:mod:`._serve`), its supervisor of ``--workers`` (:mod:`._workers`),
each worker (:mod:`._worker`) and ``rxstore demo`` share these.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import socket
from typing import Any

from rxstore.cli._checks import CommandError, redact, served_tables

__all__ = [
    "capture_line",
    "check_can_listen",
    "listen_problem",
    "serving_line",
    "stop_signal",
    "wait_for_stop",
]


def stop_signal() -> asyncio.Event:
    """An event set on SIGINT or SIGTERM (handled from now on: install it before saying you run)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_for_stop(duration: float | None, stop: asyncio.Event | None = None) -> None:
    """Return on SIGINT or SIGTERM (``stop``), or after ``duration`` seconds (``None``: never)."""
    if stop is None:
        stop = stop_signal()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)


def listen_problem(exc: OSError) -> str:
    """Say in words why a server could not listen, and what to do."""
    if exc.errno == errno.EADDRINUSE:
        return "the address is in use (another server listens there): pick another --port, or 0 (free)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges): pick another --port"
    return " ".join(str(exc.strerror or exc).split())


def check_can_listen(host: str, port: int) -> None:
    """Refuse, before anything is opened, an address that cannot be listened on (port 0 always can).

    Raises:
        CommandError: The port is in use, or not allowed; the message says what to pick.
    """
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {listen_problem(exc)}") from exc


def serving_line(args: argparse.Namespace, url: str, workers: int = 1) -> str:
    """The line ``rxstore serve`` prints once it serves."""
    tables = ", ".join(served_tables(args.tables, demo_schema=args.demo_schema))
    processes = f" with {workers} workers" if workers > 1 else ""
    return f"serving {tables} from {redact(args.db)} on {url}{processes} (Ctrl-C to stop)"


def capture_line(log: Any) -> str:
    """How the log captures changes, and why (the second line ``rxstore serve`` prints)."""
    capture = getattr(log, "capture", None)
    if capture is None:
        return "capture: triggers (SQLite has no log to read changes from)"
    name = "the WAL (logical decoding)" if capture == "wal" else "triggers"
    return f"capture: {name}: {log.capture_reason}"
