"""Fixtures of the fault suite: a resource collector, dedicated servers, the results recorder.

Each scenario's one-line summary is printed when it is recorded, written to
``<pytest tmp dir>/fault-results.json``, repeated in pytest's terminal summary
(visible with or without ``-s``), and, when ``RXSTORE_FAULT_RESULTS`` is set,
merged into ``tests/faults/results.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import FaultClient, GatewayProcess, Recorder
from tests.faults.proxy import TcpProxy
from tests.services import PostgresServer, RedisServer, require_or_skip

_RECORDER: Recorder | None = None


@pytest.fixture(scope="session")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Recorder:
    """Where scenarios record their summary line and counts."""
    global _RECORDER
    if _RECORDER is None:
        mirror = Path(__file__).with_name("results.json") if os.environ.get("RXSTORE_FAULT_RESULTS") else None
        _RECORDER = Recorder(tmp_path_factory.getbasetemp() / "fault-results.json", mirror)
    return _RECORDER


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _RECORDER is None or not _RECORDER.lines:
        return
    terminalreporter.section("fault suite: lost / duplicated / out-of-order per scenario")
    for line in _RECORDER.lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(details: {_RECORDER.path})")


class Cluster:
    """Everything a scenario starts, stopped in reverse order at the end whatever happened."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.gateways: list[GatewayProcess] = []
        self.started: list[FaultClient] = []
        self.proxies: list[TcpProxy] = []
        self.writers: list[Any] = []
        self.processes: list[asyncio.subprocess.Process] = []

    def gateway(self, db: str, *, name: str = "gateway", args: list[str] | None = None) -> GatewayProcess:
        gateway = GatewayProcess(db, log_dir=self.tmp_path, name=name, args=args or [])
        self.gateways.append(gateway)
        return gateway

    async def proxy(self, port: int) -> TcpProxy:
        proxy = TcpProxy("127.0.0.1", port)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    async def clients(
        self, count: int, urls: str | list[str], *, prefix: str = "c", **options: Any
    ) -> list[FaultClient]:
        """Start ``count`` clients and wait until each one is connected (snapshot on its way)."""
        made = [FaultClient(f"{prefix}{i}", urls, **options) for i in range(count)]
        self.started.extend(made)
        await asyncio.gather(*(c.start() for c in made))
        return made

    def writer(self, writer: Any) -> Any:
        self.writers.append(writer)
        writer.start()
        return writer

    async def aclose(self) -> None:
        for client in self.started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), 10)
        for writer in self.writers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.stop(), 30)
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                await proxy.close()
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(process.wait(), 10)
        for gateway in self.gateways:
            gateway.kill()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A resource collector: gateways are killed, clients and writers stopped at teardown."""
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        await cluster.aclose()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test alone (it gets restarted)."""
    reason = PostgresServer.missing()
    if reason:
        require_or_skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server for this test alone (it gets restarted)."""
    reason = RedisServer.missing()
    if reason:
        require_or_skip(reason)
    with RedisServer() as server:
        yield server
