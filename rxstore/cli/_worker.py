"""One worker process of ``rxstore serve --workers N`` (see :mod:`._workers`).

Started as ``python -m rxstore.cli._worker`` by the supervisor, which writes
one JSON line to its stdin: the ``serve`` options, the worker's index, the
shared port and the metrics folder. The worker serves a gateway on the port
(``SO_REUSEPORT``), says ``{"url": ...}`` on stdout once it serves, writes its
metrics to the folder every second, and stops on SIGTERM/SIGINT or when its
stdin closes (the supervisor is gone). Worker 0 alone trims the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rxstore.gateway.server import RealtimeGateway

__all__ = ["WorkerGateway", "merge_metrics", "run_worker"]

METRICS_INTERVAL = 1.0
"""Seconds between two writes of a worker's metrics to the shared folder."""


def merge_metrics(texts: list[tuple[str | None, str]]) -> str:
    r"""Prometheus texts of several processes as one: each sample labelled ``worker="i"`` (``None``: as is).

    Families keep their first ``# HELP``/``# TYPE`` lines and gather the samples of every process.

    Example:
        >>> one = "# HELP x X.\n# TYPE x gauge\nx 1.0\n"
        >>> print(merge_metrics([("0", one), ("1", one.replace("1.0", "2.0"))]), end="")
        # HELP x X.
        # TYPE x gauge
        x{worker="0"} 1.0
        x{worker="1"} 2.0
    """
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split(" ", 3)[2]
                head = heads.setdefault(family, [])
                if len(head) < 2 and line not in head:
                    head.append(line)
                samples.setdefault(family, [])
            elif line and not line.startswith("#"):
                samples.setdefault(family, []).append(_labelled(line, worker))
    return "".join(
        "".join(f"{line}\n" for line in [*heads.get(family, []), *lines]) for family, lines in samples.items()
    )


def _labelled(sample: str, worker: str | None) -> str:
    if worker is None:
        return sample
    label = f'worker="{worker}"'
    name, brace, rest = sample.partition("{")
    if brace:
        return f"{name}{{{label},{rest}" if not rest.startswith("}") else f"{name}{{{label}{rest}"
    name, space, value = sample.partition(" ")
    return f"{name}{{{label}}}{space}{value}"


class WorkerGateway(RealtimeGateway):
    """A worker's gateway: ``/metrics`` shows every worker's metrics and the supervisor's.

    ``/healthz`` answers for the worker that takes the request, and says which (``worker``, ``pid``).
    """

    index: int = 0
    metrics_dir: Path | None = None

    def own_metrics(self) -> str:
        """This worker's own Prometheus text."""
        return super().metrics_report()[0].decode()

    def health_report(self) -> tuple[int, dict[str, Any]]:
        status, body = super().health_report()
        return status, {**body, "worker": self.index, "pid": os.getpid()}  # which worker answered

    def metrics_report(self) -> tuple[bytes, str]:
        own, content_type = super().metrics_report()
        texts: list[tuple[str | None, str]] = []
        folder = self.metrics_dir
        if folder is not None:
            for path in sorted(folder.glob("*.prom")):
                worker = path.stem.removeprefix("worker-") if path.stem.startswith("worker-") else None
                if worker != str(self.index):
                    with contextlib.suppress(OSError):  # a worker that just exited
                        texts.append((worker, path.read_text()))
        texts.insert(0, (str(self.index), own.decode()))
        return merge_metrics(texts).encode(), content_type


async def _write_metrics(gateway: WorkerGateway, folder: Path) -> None:
    path = folder / f"worker-{gateway.index}.prom"
    partial = path.with_suffix(".tmp")
    while True:
        partial.write_text(gateway.own_metrics())
        partial.replace(path)
        await asyncio.sleep(METRICS_INTERVAL)


async def _stdin_closed() -> None:
    """Return when stdin reaches its end (the supervisor closed it, or died)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def run_worker(config: dict[str, Any]) -> int:
    """Serve as worker ``config["index"]`` until stopped; 0 when stopped."""
    from rxstore.cli._running import stop_signal
    from rxstore.cli._serve import make_gateway, open_log, served_topics

    args = argparse.Namespace(**config["args"])
    index = int(config["index"])
    log = await open_log(args.db, capture=args.capture, slot_warning_bytes=args.slot_warning_bytes)
    gateway = make_gateway(args, log, served_topics(args), trims=index == 0, factory=WorkerGateway)
    gateway.index = index
    gateway.metrics_dir = Path(config["metrics_dir"])
    await gateway.start(args.host, int(config["port"]), reuse_port=True)
    stop = stop_signal()
    tasks = [
        asyncio.create_task(_write_metrics(gateway, gateway.metrics_dir)),
        asyncio.create_task(_stdin_closed()),
        asyncio.create_task(stop.wait()),
    ]
    print(json.dumps({"url": gateway.url, "pid": os.getpid()}), flush=True)
    try:
        await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await gateway.stop()
        (gateway.metrics_dir / f"worker-{index}.prom").unlink(missing_ok=True)
    return 0


def main() -> int:
    """Read the supervisor's JSON line from stdin and serve."""
    config = json.loads(sys.stdin.buffer.readline())
    from rxstore.cli._parser import log_level

    logging.basicConfig(
        level=log_level(config["args"]),
        format=f"%(asctime)s worker {config['index']} %(name)s %(message)s",
    )
    from rxstore.cli._checks import run_command

    try:
        return run_command(lambda: asyncio.run(run_worker(config)), debug=False)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
