"""Fault-suite harness: gateway processes, writers, tracked clients, an oracle, counts.

Every scenario in ``tests/faults`` is built from the same parts:

- :class:`GatewayProcess`: ``python -m rxstore.cli serve ...`` as a child
  process on 127.0.0.1 (so it can be ``kill -9``-ed and restarted on its port),
  ready once ``/healthz`` answers 200.
- a writer (:class:`SqliteWriter` / :class:`PostgresWriter`) changing the demo
  ``posts`` table directly in the database, at a steady rate, never through
  the gateway.
- :class:`FaultClient`: a ``RootStore`` + ``PostStore`` that records what it
  receives on the wire (:class:`TapTransport`, before the root's duplicate
  filter), what reaches its stores (``root.events``), its sync states and
  when each *marker* row reached it.
- the oracle: every change seq the log ever held for ``posts``
  (:meth:`SqliteDb.install_oracle` copies each one aside as it is written, so
  retention cannot hide it; PostgreSQL scenarios trim nothing).
- :func:`account`: lost / duplicated / out-of-order / redelivered counts of
  one client against the oracle (see docs/reliability.md for the exact
  definitions), and :class:`Recorder` for the one-line summary per scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import attrs

from rxstore import Backoff, RootStore, SyncState, SyncStatus, TableStore
from rxstore.client.transport import SocketIOTransport
from rxstore.gateway.access.auth import TokenAuth
from rxstore.gateway.demo import Post
from rxstore.protocol.errors import CallTimeout, ConnectionRefused, NotConnected, TransportError
from rxstore.protocol.events import BATCH, RESET, SNAPSHOT, Event, EventKind
from rxstore.protocol.frames import CheckedBatch
from tests.services import free_port, in_netns
from tests.waiting import wait_for

SECRET = "rxstore-fault-suite-secret-0123456789"
AUTH = TokenAuth(secret=SECRET)
REPO = Path(__file__).resolve().parents[2]
RXSTORE = [sys.executable, "-m", "rxstore.cli"]

BACKOFF = Backoff(initial=0.1, factor=2.0, maximum=1.0, jitter=0.5)
"""Client reconnection policy in the suite: capped at 1 s so recovery times measure the system."""

LINK_ERRORS = (ConnectionRefused, TransportError, NotConnected, CallTimeout)
"""Errors a client reports while its link is down: expected during a fault, counted apart."""

MARKER = "marker"
"""Primary key of the marker row: its title changes at chosen instants (recovery clocks)."""

COLUMNS = ("id", "title", "body", "author", "private", "likes", "updated_at")


# -- gateway processes --------------------------------------------------------


class GatewayProcess:
    """``rxstore serve`` as a child process on 127.0.0.1:``port`` (the port survives restarts).

    Args:
        db: ``sqlite:///...`` or ``postgresql://...``.
        log_dir: Where its output goes (``<name>.log``, appended across restarts).
        name: Label in logs and summaries.
        args: Extra ``serve`` options (``--redis``, ``--retention-rows``, ...).
        host: Address to listen on (and to reach it at).
        netns: Network namespace to run in (``host`` must be one of its addresses).
    """

    def __init__(
        self,
        db: str,
        *,
        log_dir: Path,
        name: str = "gateway",
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        self.db = db
        self.name = name
        self.host = host
        self.netns = netns
        self.port = free_port()
        self.args = list(args)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        """Start the process (does not wait for it to serve)."""
        assert not self.running, f"{self.name} is already running"
        cmd = [
            *RXSTORE,
            "serve",
            "--db",
            self.db,
            "--tables",
            "posts",
            "--demo-schema",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            "1",  # a node is one process: killing it kills its gateway (test_workers.py kills workers)
            *self.args,
        ]
        env = {**os.environ, "RXSTORE_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts + 1}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                in_netns(self.netns, cmd),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
            )
        self.starts += 1

    async def start(self, timeout: float = 30.0) -> float:
        """Start the process and wait until ``/healthz`` answers 200; return the monotonic time it did."""
        self.spawn()
        return await self.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float = 30.0) -> float:
        """Wait until ``/healthz`` answers 200 (fail at once if the process exited); return when."""

        async def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}")
            health = await self.health()
            return health is not None and health[0] == 200

        try:
            await wait_for(healthy, timeout, f"{self.name} healthy", interval=0.02)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log_tail()}") from None
        return time.monotonic()

    async def health(self) -> tuple[int, dict[str, Any]] | None:
        """``(status, body)`` of ``/healthz``, or ``None`` when it does not answer."""
        return await fetch_health(self.url)

    def kill(self) -> None:
        """``kill -9`` and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    async def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM; return the exit code, or ``None`` if it had not exited after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        proc = self.proc
        proc.send_signal(signal.SIGTERM)
        try:
            await wait_for(lambda: proc.poll() is not None, timeout, f"{self.name} exiting", interval=0.02)
        except AssertionError:
            return None
        return proc.returncode

    def rss(self) -> int:
        """Resident set size in bytes (``VmRSS`` of ``/proc/<pid>/status``)."""
        return process_rss(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


async def fetch_health(url: str) -> tuple[int, dict[str, Any]] | None:
    """``(status, body)`` of ``<url>/healthz``, or ``None`` when it does not answer."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session,
            session.get(f"{url}/healthz") as response,
        ):
            return response.status, await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


def process_rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (psutil when installed, else ``/proc``)."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.Process(pid).memory_info().rss)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- writers ------------------------------------------------------------------


class _Ops:
    """A deterministic stream of upserts and deletes over ``ids`` post ids."""

    def __init__(self, *, seed: int, ids: int, body: int) -> None:
        self.rng = random.Random(seed)
        self.ids = [f"p{i}" for i in range(ids)]
        self.body = body
        self.n = 0

    def next(self) -> tuple[str, tuple[Any, ...]]:
        self.n += 1
        rng, n = self.rng, self.n
        post_id = rng.choice(self.ids)
        if rng.random() < 0.1:
            return "delete", (post_id,)
        body = (f"{n:08d}" * (self.body // 8 + 1))[: self.body]
        # updated_at: an exact binary fraction, so both backends round-trip it exactly.
        return "upsert", (post_id, f"t{n}", body, "writer", rng.randrange(1000), n + 0.25)


_SQLITE_UPSERT = (
    "INSERT INTO posts (id, title, body, author, likes, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET title = excluded.title, body = excluded.body, "
    "likes = excluded.likes, updated_at = excluded.updated_at"
)
_PG_UPSERT = (
    "INSERT INTO posts (id, title, body, author, likes, updated_at) VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (id) DO UPDATE SET title = excluded.title, body = excluded.body, "
    "likes = excluded.likes, updated_at = excluded.updated_at"
)


class SqliteWriter:
    """Writes ``posts`` straight into the SQLite file (``sqlite3``, own thread), ``rate`` changes/s."""

    def __init__(
        self, path: Path, *, rate: float = 200.0, ids: int = 40, body: int = 16, seed: int = 1
    ) -> None:
        self.path = path
        self.rate = rate
        self.ops = _Ops(seed=seed, ids=ids, body=body)
        self.written = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            interval = 1.0 / self.rate
            due = time.monotonic()
            while not self._stop.is_set():
                kind, args = self.ops.next()
                sql = _SQLITE_UPSERT if kind == "upsert" else "DELETE FROM posts WHERE id = ?"
                try:
                    conn.execute(sql, args)
                    self.written += 1
                except sqlite3.Error:
                    self.errors += 1
                due += interval
                pause = due - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)
                else:
                    due = time.monotonic()
        finally:
            conn.close()


class PostgresWriter:
    """Writes ``posts`` straight into PostgreSQL (asyncpg), ``rate`` changes/s, reconnecting after outages."""

    def __init__(
        self, dsn: str, *, rate: float = 200.0, ids: int = 40, body: int = 16, seed: int = 1
    ) -> None:
        self.dsn = dsn
        self.rate = rate
        self.ops = _Ops(seed=seed, ids=ids, body=body)
        self.written = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fault-pg-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        conn: Any = None
        interval = 1.0 / self.rate
        pending: tuple[str, tuple[Any, ...]] | None = None
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while True:
                if conn is None or conn.is_closed():
                    try:
                        conn = await asyncpg.connect(self.dsn, timeout=2)
                    except Exception:
                        self.errors += 1
                        await asyncio.sleep(0.05)
                        due = loop.time()
                        continue
                kind, args = pending or self.ops.next()
                sql = _PG_UPSERT if kind == "upsert" else "DELETE FROM posts WHERE id = $1"
                try:
                    await conn.execute(sql, *args, timeout=5)
                    self.written += 1
                    pending = None
                except Exception:  # any failure: reconnect and retry (asyncpg has many error classes)
                    self.errors += 1
                    pending = (kind, args)  # try the same change again (if it did commit, no harm)
                    with contextlib.suppress(Exception):
                        conn.terminate()
                    conn = None
                    continue
                due += interval
                pause = due - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)  # paces the writer at its rate
                else:
                    due = loop.time()
        finally:
            if conn is not None:
                conn.terminate()


# -- the database as the test sees it -------------------------------------------


def _post(row: dict[str, Any]) -> Post:
    return Post(**{**row, "private": bool(row["private"]), "updated_at": float(row["updated_at"])})


class SqliteDb:
    """The test's own view of a SQLite database (rows, oracle, markers)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    async def install_oracle(self) -> None:
        """Copy every change seq aside as it is logged (after the gateway created the log)."""

        def run() -> None:
            with contextlib.closing(self._connect()) as conn:
                conn.executescript(
                    """
                    CREATE TABLE IF NOT EXISTS fault_oracle (
                        seq INTEGER PRIMARY KEY, topic TEXT, mutation TEXT, title TEXT);
                    CREATE TRIGGER IF NOT EXISTS fault_oracle_copy AFTER INSERT ON rxstore_changes
                    BEGIN
                        INSERT INTO fault_oracle (seq, topic, mutation, title)
                        VALUES (NEW.seq, NEW.topic, NEW.mutation,
                                json_extract(coalesce(NEW.record, NEW.old), '$.title'));
                    END;
                    -- SQLite tags a mutation's changes with its id after writing them.
                    CREATE TRIGGER IF NOT EXISTS fault_oracle_mutation AFTER UPDATE OF mutation
                    ON rxstore_changes
                    BEGIN
                        UPDATE fault_oracle SET mutation = NEW.mutation WHERE seq = NEW.seq;
                    END;
                    """
                )

        await asyncio.to_thread(run)

    async def oracle(self) -> list[tuple[int, str | None, str | None]]:
        """Every ``posts`` change ever logged: ``(seq, mutation, title)`` in seq order."""

        def run() -> list[tuple[int, str | None, str | None]]:
            with contextlib.closing(self._connect()) as conn:
                rows = conn.execute(
                    "SELECT seq, mutation, title FROM fault_oracle WHERE topic = 'posts' ORDER BY seq"
                ).fetchall()
            return [(r[0], r[1], r[2]) for r in rows]

        return await asyncio.to_thread(run)

    async def rows(self) -> dict[str, Post]:
        def run() -> dict[str, Post]:
            with contextlib.closing(self._connect()) as conn:
                rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM posts").fetchall()
            return {r["id"]: _post(dict(r)) for r in rows}

        return await asyncio.to_thread(run)

    async def horizon(self) -> int:
        def run() -> int:
            with contextlib.closing(self._connect()) as conn:
                return int(conn.execute("SELECT value FROM rxstore_meta WHERE key = 'horizon'").fetchone()[0])

        return await asyncio.to_thread(run)

    async def bulk_write(self, count: int, *, body: int = 2000, chunk: int = 500) -> None:
        """Write ``count`` upserts over 40 ids, ``chunk`` per transaction, as fast as SQLite goes."""

        def run() -> None:
            ops = _Ops(seed=7, ids=40, body=body)
            with contextlib.closing(self._connect()) as conn:
                for start in range(0, count, chunk):
                    rows = []
                    for _ in range(min(chunk, count - start)):
                        kind, args = ops.next()
                        if kind == "upsert":
                            rows.append(args)
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(_SQLITE_UPSERT, rows)
                    conn.execute("COMMIT")

        await asyncio.to_thread(run)

    async def write_marker(self, title: str) -> float:
        """Upsert the marker row; return the monotonic time the write committed."""

        def run() -> float:
            with contextlib.closing(self._connect()) as conn:
                conn.execute(_SQLITE_UPSERT, (MARKER, title, "", "test", 0, 0.5))
            return time.monotonic()

        return await asyncio.to_thread(run)


class PostgresDb:
    """The test's own view of a PostgreSQL database (rows, oracle, markers)."""

    def __init__(self, dsn: str) -> None:
        self.url = dsn

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(self.url, timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def install_oracle(self) -> None:
        """Nothing to do: PostgreSQL scenarios keep the whole log (no trimming)."""

    async def oracle(self) -> list[tuple[int, str | None, str | None]]:
        rows = await self._fetch(
            "SELECT seq, mutation, coalesce(record, old)->>'title' FROM rxstore_changes "
            "WHERE topic = 'posts' AND seq IS NOT NULL ORDER BY seq"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def rows(self) -> dict[str, Post]:
        rows = await self._fetch(f"SELECT {', '.join(COLUMNS)} FROM posts")
        return {r["id"]: _post(dict(r.items())) for r in rows}

    async def write_marker(self, title: str, timeout: float = 30.0) -> float:
        """Upsert the marker row (retrying while the server comes back); return when it committed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
                try:
                    await conn.execute(_PG_UPSERT, MARKER, title, "", "test", 0, 0.5)
                finally:
                    await conn.close()
                return time.monotonic()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


# -- clients ------------------------------------------------------------------


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


class TapTransport(SocketIOTransport):
    """The python-socketio transport, recording every change seq that arrives on the wire.

    It sees frames before the root's ``seq <= cursor`` filter, so a change the
    gateway sends twice shows up here twice (``redelivered``).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.received: list[int] = []
        self.resets: list[dict[str, Any]] = []
        self.snapshots = 0

    def bind(self, on_frame: Callable[[str, Any], None], on_lost: Callable[[str], None]) -> None:
        received = self.received

        def tap(name: str, data: Any) -> None:
            if name == BATCH and type(data) is CheckedBatch:  # as the transport decodes a well-formed batch
                received.extend(payload["seq"] for _, payload in data.events)
            elif name == BATCH and type(data) is dict:
                for entry in data.get("events") or ():
                    payload = entry[1] if type(entry) is list and len(entry) == 2 else None
                    if type(payload) is dict and "seq" in payload and "op" in payload:
                        received.append(payload["seq"])
            elif name == RESET:
                self.resets.append(data if type(data) is dict else {})
            elif name == SNAPSHOT:
                self.snapshots += 1
            elif type(data) is dict and "seq" in data and "op" in data:
                received.append(data["seq"])
            on_frame(name, data)

        super().bind(tap, on_lost)


class FaultClient:
    """A RootStore + PostStore (+ extra stores) with everything the accounting needs recorded.

    Args:
        name: Label in summaries.
        urls: Gateway URL(s), tried in turn.
        user: The token's subject.
        stores: Extra domain stores.
    """

    def __init__(
        self,
        name: str,
        urls: str | Sequence[str],
        *,
        user: str = "reader",
        stores: Iterable[Any] = (),
        call_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.posts = PostStore(name=f"{name}.posts")
        self.transport = TapTransport(connect_timeout=2.0)
        self.root = RootStore(
            urls,
            stores=[self.posts, *stores],
            token=AUTH.issue(user, ttl=3600),
            transport=self.transport,
            backoff=BACKOFF,
            call_timeout=call_timeout,
        )
        self.timeline: list[tuple[str, int]] = []
        """``("snap", seq)`` and ``("chg", seq)`` in the order the stores got them."""
        self.sync: list[tuple[float, SyncState]] = []
        self.errors: list[Exception] = []
        self.markers: dict[str, float] = {}
        """Marker title -> monotonic time this client's state first showed it."""
        self.markers_wall: dict[str, float] = {}
        """The same as Unix time (comparable across processes)."""
        self.root.events.subscribe(self._on_event)
        self.posts.status.subscribe(self._on_status)
        self.posts.state.subscribe(self._on_state)
        self.root.errors.subscribe(self.errors.append)

    def _on_event(self, event: Event) -> None:
        if event.kind is EventKind.CHANGE and event.seq is not None:
            self.timeline.append(("chg", event.seq))
        elif event.kind is EventKind.SNAPSHOT and event.seq is not None:
            self.timeline.append(("snap", event.seq))

    def _on_status(self, status: SyncStatus) -> None:
        self.sync.append((time.monotonic(), status.state))

    def _on_state(self, state: Any) -> None:
        marker = state.get(MARKER)
        if marker is not None and marker.title not in self.markers:
            self.markers[marker.title] = time.monotonic()
            self.markers_wall[marker.title] = time.time()

    async def start(self) -> None:
        await self.root.setup_realtime()

    async def stop(self) -> None:
        await self.root.teardown_realtime()

    @property
    def live(self) -> bool:
        return self.posts.sync.state is SyncState.LIVE

    @property
    def seq(self) -> int:
        return self.posts.seq or 0

    def live_after(self, since: float) -> float | None:
        """Monotonic time the store went live again after going stale at or after ``since``."""
        stale = False
        for at, state in self.sync:
            if at < since:
                continue
            if state is SyncState.STALE:
                stale = True
            elif state is SyncState.LIVE and stale:
                return at
        return None

    def report(self) -> dict[str, Any]:
        """Everything :func:`account` needs, as JSON-able data (also sent by client processes)."""
        metrics = self.root.metrics
        return {
            "name": self.name,
            "timeline": self.timeline,
            "received": self.transport.received,
            "resets": len(self.transport.resets),
            "root_duplicates": metrics.duplicates,
            "reconnects": metrics.reconnects,
            "errors": [f"{type(e).__name__}: {e}" for e in self.errors if not isinstance(e, LINK_ERRORS)],
            "link_errors": sum(1 for e in self.errors if isinstance(e, LINK_ERRORS)),
            "seq": self.seq,
            "state": {key: attrs.asdict(post) for key, post in self.posts.confirmed.to_dict().items()},
        }


# -- accounting -----------------------------------------------------------------


@attrs.frozen
class Counts:
    """What one client got, against the log (definitions: docs/reliability.md)."""

    name: str
    expected: int
    applied: int
    lost: int
    duplicated: int
    out_of_order: int
    redelivered: int
    root_duplicates: int
    resets: int
    snapshots: int
    reconnects: int
    state_equal: bool
    caught_up: bool
    errors: tuple[str, ...]
    lost_seqs: tuple[int, ...] = ()
    """The first (at most 10) seqs counted in ``lost``."""

    @property
    def clean(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.out_of_order == 0
            and self.redelivered == 0
            and self.state_equal
            and self.caught_up
            and not self.errors
        )


def account(report: dict[str, Any], oracle: Sequence[int], db_rows: dict[str, Post]) -> Counts:
    """Count one client's lost, duplicated, out-of-order and redelivered changes.

    ``oracle`` is every seq the log held for the client's topic. The client's
    first snapshot (at seq ``base``) stands for every change up to ``base``; a
    later snapshot (after a reset) stands for the changes between the client's
    position before it and its seq. Every other logged change after ``base``
    must have been applied exactly once, in increasing seq order.
    """
    timeline = [(kind, int(seq)) for kind, seq in report["timeline"]]
    applied = [seq for kind, seq in timeline if kind == "chg"]
    snapshots = [seq for kind, seq in timeline if kind == "snap"]
    assert timeline and timeline[0][0] == "snap", f"{report['name']}: no first snapshot ({timeline[:3]})"
    base = timeline[0][1]
    covered: list[tuple[int, int]] = []
    out_of_order = 0
    position: int | None = None
    for kind, seq in timeline:
        if kind == "snap":
            if position is not None and seq > position:
                covered.append((position, seq))
            position = seq
        else:
            if position is not None and seq <= position:
                out_of_order += 1
            position = seq if position is None else max(position, seq)
    seen = set(applied)
    expected = [s for s in oracle if s > base]
    missing = [s for s in expected if s not in seen and not any(lo < s <= hi for lo, hi in covered)]
    counted = Counter(applied)
    duplicated = sum(n - 1 for n in counted.values() if n > 1)
    received = report["received"]
    state = {key: Post(**row) for key, row in report["state"].items()}
    head = oracle[-1] if oracle else 0
    return Counts(
        name=report["name"],
        expected=len(expected),
        applied=len(applied),
        lost=len(missing),
        duplicated=duplicated,
        out_of_order=out_of_order,
        redelivered=len(received) - len(set(received)),
        root_duplicates=int(report["root_duplicates"]),
        resets=int(report["resets"]),
        snapshots=len(snapshots),
        reconnects=int(report["reconnects"]),
        state_equal=state == db_rows,
        caught_up=int(report["seq"]) >= head,
        errors=tuple(report["errors"]),
        lost_seqs=tuple(missing[:10]),
    )


@attrs.frozen
class MutationCounts:
    """What became of the clients' mutations, against the log (definitions: docs/reliability.md)."""

    acked: int
    failed: int
    applied: int
    """Changes in the log that carry a mutation id."""
    acked_missing: tuple[str, ...]
    """Acknowledged mutations with no change in the log."""
    applied_twice: tuple[str, ...]
    """Mutations with more than one change in the log."""
    out_of_order: tuple[str, ...]
    """Clients whose acknowledged mutations are in the log in another order than they were made."""
    failed_applied: int
    """Mutations that failed on the client (timeout, refusal) but are in the log once: allowed."""

    @property
    def clean(self) -> bool:
        return not (self.acked_missing or self.applied_twice or self.out_of_order)


def account_mutations(
    oracle: Sequence[tuple[int, str | None, str | None]],
    acked: dict[str, list[str]],
    failed: dict[str, list[str]] | None = None,
) -> MutationCounts:
    """Every acknowledged mutation applied exactly once, none twice, each client's in its order.

    ``oracle`` is the log's ``(seq, mutation id, title)``; ``acked`` maps each client to the
    titles of its acknowledged mutations in the order it made them (one at a time); ``failed``
    to those that failed (applied at most once).
    """
    failed = failed or {}
    mutated = [title for _, mutation, title in oracle if mutation is not None and title is not None]
    times = Counter(mutated)
    position = {title: i for i, title in enumerate(mutated)}
    acked_missing = tuple(t for titles in acked.values() for t in titles if times[t] == 0)
    twice = tuple(sorted(t for t, n in times.items() if n > 1))
    disorder = tuple(
        client
        for client, titles in acked.items()
        if [t for t in titles if t in position]
        != sorted((t for t in titles if t in position), key=lambda t: position[t])
    )
    failed_titles = [t for titles in failed.values() for t in titles]
    return MutationCounts(
        acked=sum(len(t) for t in acked.values()),
        failed=len(failed_titles),
        applied=len(mutated),
        acked_missing=acked_missing,
        applied_twice=twice,
        out_of_order=disorder,
        failed_applied=sum(1 for t in failed_titles if times[t] > 0),
    )


def state_diff(report: dict[str, Any], db_rows: dict[str, Post], limit: int = 5) -> str:
    """A short description of how a client's state differs from the database."""
    state = {key: Post(**row) for key, row in report["state"].items()}
    missing = sorted(set(db_rows) - set(state))[:limit]
    extra = sorted(set(state) - set(db_rows))[:limit]
    differ = sorted(k for k in set(state) & set(db_rows) if state[k] != db_rows[k])[:limit]
    return f"missing {missing}, extra {extra}, differing {differ}"


# -- results ------------------------------------------------------------------


class Recorder:
    """Collects one summary per scenario: printed, appended to a JSON file, kept for the terminal summary."""

    def __init__(self, path: Path, mirror: Path | None = None) -> None:
        self.path = path
        self.mirror = mirror
        self.results: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def record(self, result: dict[str, Any]) -> str:
        line = summary_line(result)
        self.results.append(result)
        self.lines.append(line)
        print(f"\n{line}", flush=True)
        text = json.dumps(self.results, indent=2, sort_keys=True) + "\n"
        self.path.write_text(text)
        if self.mirror is not None:
            merged = _merge(self.mirror, self.results)
            self.mirror.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        return line


def _merge(path: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results of this run replace earlier ones of the same scenario in ``path``."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = []
    mine = {r["scenario"] for r in results}
    kept = [r for r in earlier if isinstance(r, dict) and r.get("scenario") not in mine]
    return sorted(kept + results, key=lambda r: str(r.get("scenario")))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def summary_line(result: dict[str, Any]) -> str:
    """``FAULT <scenario>: clients=.. changes=.. lost=.. dup=.. ooo=.. ... recovery ...`` on one line."""
    parts = [
        f"FAULT {result['scenario']}:",
        f"clients={result['clients']}",
        f"changes={result['changes']}",
        f"lost={result['lost']}",
        f"duplicated={result['duplicated']}",
        f"out_of_order={result['out_of_order']}",
        f"redelivered={result['redelivered']}",
        f"resets={result['resets']}",
        f"state==db {result['state_equal']}/{result['clients']}",
        f"live_again={_seconds(result.get('live_s'))}",
        f"caught_up={_seconds(result.get('caught_up_s'))}",
    ]
    extra = result.get("extra") or {}
    parts.extend(f"{key}={value}" for key, value in extra.items())
    return " ".join(parts)


def summarize(
    scenario: str,
    counts: Sequence[Counts],
    *,
    changes: int,
    live_s: float | None,
    caught_up_s: float | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One scenario's result: totals over clients plus per-client counts."""
    return {
        "scenario": scenario,
        "clients": len(counts),
        "changes": changes,
        "lost": sum(c.lost for c in counts),
        "duplicated": sum(c.duplicated for c in counts),
        "out_of_order": sum(c.out_of_order for c in counts),
        "redelivered": sum(c.redelivered for c in counts),
        "root_duplicates": sum(c.root_duplicates for c in counts),
        "resets": sum(c.resets for c in counts),
        "state_equal": sum(1 for c in counts if c.state_equal),
        "live_s": None if live_s is None else round(live_s, 3),
        "caught_up_s": None if caught_up_s is None else round(caught_up_s, 3),
        "extra": extra or {},
        "per_client": [attrs.asdict(c) for c in counts],
        "machine": machine(),
    }


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}, load {load:.2f}"


def assert_clean(
    counts: Sequence[Counts], reports: Sequence[dict[str, Any]], db_rows: dict[str, Post]
) -> None:
    """Every count 0, every state equal to the database, no error on any client."""
    problems = []
    for c, report in zip(counts, reports, strict=True):
        if not c.clean:
            detail = "" if c.state_equal else f" ({state_diff(report, db_rows)})"
            problems.append(f"{c}{detail}")
    assert not problems, "clients not clean:\n" + "\n".join(problems)


def max_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def recovery(
    clients: Sequence[FaultClient],
    *,
    fault_start: float,
    fault_end: float,
    marker: str,
    marker_written: float,
) -> tuple[float | None, float | None]:
    """``(live_again_s, caught_up_s)``: the slowest client's time from the fault's end to live again
    (``None`` if no client went stale) and to holding the marker written when the fault ended."""
    live = max_or_none(
        None if (at := c.live_after(fault_start)) is None else max(0.0, at - fault_end) for c in clients
    )
    caught = max(c.markers[marker] - marker_written for c in clients)
    return live, max(0.0, caught)


# -- the end of every scenario --------------------------------------------------


@attrs.frozen
class Outcome:
    """The end state of a scenario: oracle, database rows, per-client reports and counts."""

    oracle: list[tuple[int, str | None, str | None]]
    rows: dict[str, Post]
    reports: list[dict[str, Any]]
    counts: list[Counts]

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _, _ in self.oracle]


async def settle(
    db: SqliteDb | PostgresDb,
    clients: Sequence[FaultClient],
    writers: Sequence[Any] = (),
    *,
    timeout: float = 30.0,
    reports: Sequence[dict[str, Any]] | None = None,
) -> Outcome:
    """Stop the writers, write a last marker, wait until every client has the whole log, count."""
    for writer in writers:
        await writer.stop()
    await db.write_marker("final")
    if clients:
        await wait_for(
            lambda: all("final" in c.markers for c in clients), timeout, "every client has the final marker"
        )
    oracle = await db.oracle()
    head = oracle[-1][0] if oracle else 0
    if clients:
        await wait_for(lambda: all(c.seq >= head for c in clients), timeout, f"every client at seq {head}")
    rows = await db.rows()
    reports = list(reports) if reports is not None else [c.report() for c in clients]
    seqs = [seq for seq, _, _ in oracle]
    counts = [account(report, seqs, rows) for report in reports]
    return Outcome(oracle, rows, reports, counts)


# -- a client that stops reading ------------------------------------------------------


class StalledClient:
    """A Socket.IO client on a raw websocket that connects, subscribes, then never reads again.

    Its receive buffer is shrunk to a few KB before connecting, so what the
    gateway sends piles up on the gateway's side, not in this process's kernel.
    Blocking calls: use it through ``asyncio.to_thread``.
    """

    def __init__(self, port: int, token: str, topics: Sequence[str] = ("posts",)) -> None:
        self.port = port
        self.token = token
        self.topics = list(topics)
        self.sock: socket.socket | None = None
        self.connect_ack = ""

    def connect(self, timeout: float = 10.0) -> None:
        import base64

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", self.port))
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the websocket handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket upgrade refused: {head!r}")
        opened = self._read_text()
        if not opened.startswith("0"):
            raise ConnectionError(f"expected an engine.io open packet, got {opened[:80]!r}")
        auth = {"token": self.token, "topics": self.topics, "cursor": None}
        self._send_text("40" + json.dumps(auth))
        while True:
            text = self._read_text()
            if text.startswith("40"):
                self.connect_ack = text
                return  # connected: from now on, read nothing
            if text.startswith("44"):
                raise ConnectionError(f"refused: {text}")

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def _recv_exact(self, count: int) -> bytes:
        assert self.sock is not None
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    def _read_text(self) -> str:
        while True:
            first, second = self._recv_exact(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._recv_exact(2), "big")
            elif length == 127:
                length = int.from_bytes(self._recv_exact(8), "big")
            payload = self._recv_exact(length)
            if first & 0x0F == 0x1:
                return payload.decode()

    def _send_text(self, text: str) -> None:
        assert self.sock is not None
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)


async def start_inprocess_gateway(db_url: str, **options: Any) -> Any:
    """A RealtimeGateway in this process (for minimal reproductions that need a gateway option
    the CLI does not expose), with the suite's secret, demo schema and mutations, on a free port."""
    from rxstore.gateway.demo import create_demo_schema, register_demo_mutations
    from rxstore.gateway.log.open_log import open_change_log
    from rxstore.gateway.server import RealtimeGateway

    log = open_change_log(db_url)
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=AUTH, **options)
    register_demo_mutations(gateway)
    await gateway.start(port=0)
    return gateway
