"""``rxstore serve --workers N``: N gateway processes on one port, supervised.

The ``rxstore serve`` process prepares the database once (the demo schema,
the watched tables), reserves the port, and starts N worker processes
(:mod:`._worker`), each serving a gateway of its own on that port
(``SO_REUSEPORT``: the kernel spreads new connections over them; the
websocket transport needs no stickiness). Every worker tails the same change
log, so every change reaches the clients of every worker; client broadcasts
(``root.broadcast``) cross workers only through Redis (``--redis``). So one
process is the default, which serves every feature; with ``--redis``, one per
core; ``--workers N`` without ``--redis`` says at start what it costs.

A worker that dies is started again (its clients reconnect, to any worker,
and resume from their cursors); Ctrl-C or SIGTERM stops them all. Each
worker writes its metrics to a shared folder every second, and ``/metrics``
on any worker shows every worker's (label ``worker``) and the supervisor's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rxstore.cli._checks import CommandError
from rxstore.cli._running import check_can_listen, listen_problem, serving_line, stop_signal

__all__ = ["RESTART_DELAY_MAX", "Supervisor", "broadcast_caveat", "supervise", "worker_count"]

RESTART_DELAY_MAX = 10.0
"""Longest wait before starting a worker again (after repeated quick deaths)."""
READY_TIMEOUT = 60.0
"""Seconds a new worker may take to serve."""
STOP_TIMEOUT = 15.0
"""Seconds the workers get to stop after SIGTERM before they are killed."""


def reuse_port_supported() -> bool:
    """Whether N processes can share a listening port here (``SO_REUSEPORT`` spreading connections: Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def worker_count(args: argparse.Namespace) -> int:
    """The number of gateway processes ``args`` ask for (``--workers``).

    The default is one process, which serves every feature; with ``--redis``, which
    carries client broadcasts across processes, one per core (Linux).

    Raises:
        CommandError: More than one where the platform cannot share a port between them.
    """
    asked: int | None = args.workers
    if asked is None:
        return len(os.sched_getaffinity(0)) if args.redis and reuse_port_supported() else 1
    if asked > 1 and not reuse_port_supported():
        raise CommandError(f"--workers {asked} needs Linux (SO_REUSEPORT); run one per port, or --workers 1")
    return asked


def broadcast_caveat(args: argparse.Namespace, workers: int) -> str | None:
    """What ``--workers N`` without ``--redis`` costs, in one line (``None`` when it costs nothing)."""
    if workers == 1 or args.redis:
        return None
    return (
        f"--workers {workers} without --redis: a client broadcast (root.broadcast) reaches the clients "
        "of the sender's worker only, and a presence channel lists the members of one worker only; pass "
        "--redis URL to reach every client, or --workers 1 (changes reach every client either way)"
    )


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with ``SO_REUSEPORT``: the port, held for the workers.

    Raises:
        CommandError: The address cannot be bound (in use, not allowed).
    """
    check_can_listen(host, port)  # another server on it, even one allowing SO_REUSEPORT, must not share it
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {listen_problem(exc)}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {listen_problem(exc)}") from exc
    return sock


class Supervisor:
    """Starts, watches and stops the worker processes.

    Args:
        args: The ``serve`` options (sent to each worker).
        workers: How many.
        port: The port they share.
        metrics_dir: The folder they write their metrics to.
    """

    def __init__(self, args: argparse.Namespace, workers: int, port: int, metrics_dir: Path) -> None:
        self.args = args
        self.workers = workers
        self.port = port
        self.metrics_dir = metrics_dir
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self.stopping = False

    async def start_worker(self, index: int) -> str:
        """Start worker ``index`` and wait until it serves; its URL.

        Raises:
            CommandError: It exited or did not serve within ``READY_TIMEOUT``.
        """
        config = {
            "args": vars(self.args),
            "index": index,
            "port": self.port,
            "metrics_dir": str(self.metrics_dir),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rxstore.cli._worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the supervisor only: it stops the workers in order
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(config).encode() + b"\n")  # the secret goes by pipe, not argv
        await process.stdin.drain()
        self.processes[index] = process
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            status = await process.wait()
            raise CommandError(f"worker {index} did not start (exit status {status}); see its message above")
        self.write_metrics()
        return str(json.loads(line)["url"])

    async def watch(self, index: int) -> None:
        """Start worker ``index`` again whenever it exits, until stopping (quick deaths back off)."""
        delay = 0.5
        while True:
            process = self.processes[index]
            started = time.monotonic()
            status = await process.wait()
            if self.stopping:
                return
            self.restarts += 1
            how = f"signal {-status}" if status < 0 else f"status {status}"
            print(
                f"rxstore: worker {index} (pid {process.pid}) exited with {how}; starting it again",
                flush=True,
            )
            (self.metrics_dir / f"worker-{index}.prom").unlink(missing_ok=True)
            delay = 0.5 if time.monotonic() - started > 10 else min(delay * 2, RESTART_DELAY_MAX)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                await self.start_worker(index)
            except CommandError as exc:
                print(f"rxstore: {exc}", file=sys.stderr, flush=True)

    def write_metrics(self) -> None:
        """The supervisor's own metrics, for the workers' ``/metrics`` to show."""
        running = sum(1 for p in self.processes.values() if p.returncode is None)
        text = (
            "# HELP rxstore_workers Gateway worker processes running.\n# TYPE rxstore_workers gauge\n"
            f"rxstore_workers {running}\n"
            "# HELP rxstore_worker_restarts_total Workers started again after they exited.\n"
            "# TYPE rxstore_worker_restarts_total counter\n"
            f"rxstore_worker_restarts_total {self.restarts}\n"
        )
        path = self.metrics_dir / "supervisor.prom"
        partial = path.with_suffix(".tmp")
        partial.write_text(text)
        partial.replace(path)

    async def stop(self) -> None:
        """SIGTERM every worker (and close its stdin); kill those still running after ``STOP_TIMEOUT``."""
        self.stopping = True
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            if process.stdin is not None:
                process.stdin.close()
        waits = [asyncio.ensure_future(p.wait()) for p in self.processes.values()]
        if waits:
            _, late = await asyncio.wait(waits, timeout=STOP_TIMEOUT)
            for process in self.processes.values():
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if late:
                await asyncio.wait(late, timeout=5)


async def supervise(
    args: argparse.Namespace, workers: int, capture: str, *, serving: Callable[[], None] | None = None
) -> int:
    """Serve with ``workers`` processes until SIGINT/SIGTERM; 0 when stopped.

    Args:
        args: The ``serve`` options.
        workers: How many gateway processes.
        capture: The line that says how the log captures changes (see ``capture_line``).
        serving: Called once every worker serves (before the lines that say so).
    """
    reserved = reserve_port(args.host, args.port)
    port = reserved.getsockname()[1]
    metrics_dir = Path(tempfile.mkdtemp(prefix="rxstore-workers-"))
    supervisor = Supervisor(args, workers, port, metrics_dir)
    stop = stop_signal()
    watchers: list[asyncio.Task[None]] = []
    try:
        urls = await asyncio.gather(*(supervisor.start_worker(i) for i in range(workers)))
        watchers = [asyncio.create_task(supervisor.watch(i)) for i in range(workers)]
        if serving is not None:
            serving()
        print(f"rxstore: {serving_line(args, urls[0], workers)}", flush=True)
        print(f"rxstore: {capture}", flush=True)
        caveat = broadcast_caveat(args, workers)
        if caveat is not None:
            print(f"rxstore: {caveat}", file=sys.stderr, flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            supervisor.write_metrics()
    finally:
        await supervisor.stop()
        for watcher in watchers:
            watcher.cancel()
        reserved.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
