"""The server side of the socket benchmarks: a gateway on a SQLite log, writers, client processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT
from rxstore.gateway.access.auth import TokenAuth
from rxstore.gateway.demo import create_demo_schema
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.gateway.server import RealtimeGateway, Topic

AUTH = TokenAuth(secret="rxstore-benchmark-secret-0123456789abcdef")

_INSERT = (
    "WITH RECURSIVE c(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
    "INSERT INTO posts (id, title, body, author, private, likes, updated_at) "
    "SELECT 'p' || x, 'post ' || x, 'body of post ' || x, 'bench', 0, 0, 0.0 FROM c"
)
_UPSERT = (
    "WITH RECURSIVE c(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
    "INSERT INTO posts (id, title, body, author, private, likes, updated_at) "
    "SELECT 'p' || ((x - 1) % ? + 1), 'post ' || ((x - 1) % ? + 1), 'body of post ' || ((x - 1) % ? + 1), "
    "'bench', 0, x, 0.0 FROM c WHERE true "
    "ON CONFLICT (id) DO UPDATE SET likes = excluded.likes"
)
"""``count`` UPDATEs of the existing rows, cycling over them, in one statement (one transaction)."""


class Server:
    """A RealtimeGateway serving ``posts`` from a fresh SQLite file with ``rows`` rows."""

    def __init__(
        self, *, serializer: str = "json", rows: int = 1000, old: str = "full", **options: Any
    ) -> None:
        self.serializer = serializer
        self.rows = rows
        self.old = old
        self.options = options
        self._tmp = tempfile.TemporaryDirectory(prefix="rxstore-bench-")
        self.path = Path(self._tmp.name) / "bench.db"
        self.log = SQLiteChangeLog(f"sqlite:///{self.path}")
        self.gateway: RealtimeGateway | None = None

    async def __aenter__(self) -> Server:
        await self.log.open()
        await create_demo_schema(self.log)
        for start in range(1, self.rows + 1, 50_000):
            await self.log.execute(_INSERT, start, min(self.rows, start + 49_999))
        self.gateway = RealtimeGateway(
            self.log,
            topics=[Topic(name="posts", old=self.old)],  # type: ignore[arg-type]
            auth=AUTH,
            serializer=self.serializer,  # type: ignore[arg-type]
            **self.options,
        )
        await self.gateway.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        else:
            await self.log.close()
        self._tmp.cleanup()

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    async def head(self) -> int:
        return await self.log.head()

    async def update(self, first: int, count: int) -> None:
        """One transaction of ``count`` UPDATEs, of rows ``first``, ``first + 1``, ... (cycling)."""
        rows = self.rows
        await self.log.execute(_UPSERT, first, first + count - 1, rows, rows, rows)

    async def write_changes(self, total: int, chunk: int) -> int:
        """Write ``total`` UPDATE changes, ``chunk`` per transaction, as fast as possible; return the head."""
        done = 0
        while done < total:
            n = min(chunk, total - done)
            await self.update(done + 1, n)
            done += n
        return await self.head()

    async def paced(self, rate: float, seconds: float) -> int:
        """One single-row UPDATE transaction every 1/rate s for ``seconds``; return the count written."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        count = int(rate * seconds)
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.update(i + 1, 1)
        return count


_PG_INSERT = (
    "INSERT INTO posts (id, title, body, author, private, likes, updated_at) "
    "SELECT 'p' || x, 'post ' || x, 'body of post ' || x, 'bench', false, 0, 0.0 "
    "FROM generate_series(1, $1) x"
)
_PG_UPDATE = "UPDATE posts SET likes = likes + 1 WHERE id = 'p' || $1::text"


class PgServer(Server):
    """The same gateway on a throwaway PostgreSQL 15 cluster (tests/services.py)."""

    def __init__(self, *, rows: int = 1000, **options: Any) -> None:
        super().__init__(rows=rows, **options)
        from tests.services import PostgresServer

        self.postgres = PostgresServer()

    async def __aenter__(self) -> Server:
        from rxstore.gateway.log.postgres.changelog import PostgresChangeLog

        await asyncio.to_thread(self.postgres.__enter__)
        dsn = await asyncio.to_thread(self.postgres.create_database, "bench")
        self.log = PostgresChangeLog(dsn)  # type: ignore[assignment]
        await self.log.open()
        await create_demo_schema(self.log)
        await self.log.execute(_PG_INSERT, self.rows)
        self.gateway = RealtimeGateway(self.log, topics=["posts"], auth=AUTH, **self.options)
        await self.gateway.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        await asyncio.to_thread(self.postgres.__exit__, None, None, None)

    async def update(self, first: int, count: int) -> None:
        for i in range(first, first + count):
            await self.log.execute(_PG_UPDATE, str((i - 1) % self.rows + 1))


class Process:
    """A helper process (``python -m MODULE '<json options>'``) answering JSON lines."""

    module = ""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 120) -> Process:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            json.dumps(self.options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
            limit=1 << 26,
        )
        self.ready = await self._read(timeout)
        return self

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"client process exited (code {await self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    async def send(self, **command: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def request(self, timeout: float = 180, **command: Any) -> dict[str, Any]:
        await self.send(**command)
        return await self._read(timeout)

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            try:
                await self.send(cmd="quit")
                await asyncio.wait_for(proc.wait(), 10)
            except (TimeoutError, ConnectionError, BrokenPipeError):
                proc.kill()
                await proc.wait()
        self.proc = None


class ClientProcess(Process):
    """A ``benchmarks._client`` process with K clients of one kind."""

    module = "benchmarks._client"

    def __init__(
        self, url: str, *, kind: str, serializer: str = "json", clients: int = 1, **options: Any
    ) -> None:
        super().__init__(
            url=url,
            token=AUTH.issue("bench", ttl=None),
            kind=kind,
            serializer=serializer,
            clients=clients,
            **options,
        )


class ServerProcess(Process):
    """A ``benchmarks._server`` process: a gateway of its own."""

    module = "benchmarks._server"


def cpu_seconds() -> float:
    """CPU seconds used by this process so far (all threads)."""
    return time.process_time()
