"""Throwaway PostgreSQL and Redis servers for tests: real processes on 127.0.0.1.

Each server lives in a temporary directory it owns and removes on exit::

    with PostgresServer() as pg:
        dsn = pg.create_database("t_example")
        ...
        pg.restart()          # same port, same data

PostgreSQL refuses to run as root, so when the tests run as root its commands
run as the ``postgres`` user (``runuser -u postgres --``).

Both listen on 127.0.0.1 by default; ``host=`` and ``netns=`` put a server on
another address inside a network namespace (``ip netns exec NAME ...``), as a
host of its own (``tests/faults/netns/hosts.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn

import pytest

from rxstore.client.transport import SocketIOTransport

__all__ = [
    "PG_BIN_DIR",
    "WAL_LEVEL",
    "PostgresServer",
    "RedisServer",
    "free_port",
    "in_netns",
    "require_or_skip",
]

PG_BIN_DIR = Path(os.environ.get("RXSTORE_PG_BIN", "/usr/lib/postgresql/15/bin"))
"""Where the PostgreSQL server binaries live (override with ``RXSTORE_PG_BIN``)."""

WAL_LEVEL = os.environ.get("RXSTORE_TEST_WAL_LEVEL", "logical")
"""``wal_level`` of the test servers: ``logical`` (WAL capture, the default) or ``replica``
(``capture="auto"`` chooses triggers), from ``RXSTORE_TEST_WAL_LEVEL``."""

StopMode = Literal["smart", "fast", "immediate"]


def require_or_skip(reason: str) -> NoReturn:
    """Skip the test, or fail it when ``RXSTORE_REQUIRE_SERVICES=1`` (as in CI)."""
    if os.environ.get("RXSTORE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (RXSTORE_REQUIRE_SERVICES=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (taken from the kernel, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class CountingTransport(SocketIOTransport):
    """The real python-socketio transport, counting its connection attempts."""

    def __init__(self) -> None:
        super().__init__(connect_timeout=2.0)
        self.attempts = 0

    async def connect(self, url: str, auth: Mapping[str, Any]) -> None:
        self.attempts += 1
        await super().connect(url, auth)


def _is_root() -> bool:
    return os.geteuid() == 0


def in_netns(netns: str | None, args: list[str]) -> list[str]:
    """``args`` run inside network namespace ``netns`` (``ip netns exec``), or as they are."""
    return ["ip", "netns", "exec", netns, *args] if netns else args


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """A PostgreSQL cluster in a temp dir, listening on 127.0.0.1 (trust auth).

    Args:
        bin_dir: Directory with ``initdb``, ``pg_ctl`` and ``psql``.
        port: TCP port; a free one by default. It stays the same across restarts.
        settings: Extra ``postgresql.conf`` settings.
        host: Address to listen on (and to reach it at); other than 127.0.0.1, hosts of the
            same subnet are trusted too (``samenet`` in ``pg_hba.conf``).
        netns: Network namespace the server runs in (``host`` must be one of its addresses).
    """

    def __init__(
        self,
        *,
        bin_dir: Path = PG_BIN_DIR,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.settings = settings or {}
        self.host = host
        self.netns = netns
        self.base_dir: Path | None = None
        self._running = False

    @staticmethod
    def missing(bin_dir: Path = PG_BIN_DIR) -> str | None:
        """Return why a server cannot be started here, or None if it can."""
        for tool in ("initdb", "pg_ctl", "psql"):
            if not (bin_dir / tool).is_file():
                return f"PostgreSQL binaries not found: {bin_dir / tool} is missing"
        if _is_root():
            if shutil.which("runuser") is None:
                return "running as root and `runuser` is missing (PostgreSQL refuses to run as root)"
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no `postgres` user to run PostgreSQL as"
        return None

    # -- paths --------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory of the server's unix socket."""
        return self._base() / "sock"

    @property
    def log_file(self) -> Path:
        """The server log (read it when a test fails)."""
        return self._base() / "postgres.log"

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped."""
        return self._running

    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database as the ``postgres`` superuser."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """Return the DSN of ``database`` on this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("PostgresServer has not been started")
        return self.base_dir

    # -- lifecycle ----------------------------------------------------------

    def _as_postgres(self, args: list[str]) -> list[str]:
        args = ["runuser", "-u", "postgres", "--", *args] if _is_root() else args
        return in_netns(self.netns, args)

    def _run(self, args: list[str], *, timeout: float = 60) -> str:
        proc = subprocess.run(
            self._as_postgres(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
        )
        if proc.returncode != 0:
            log = ""
            if self.base_dir is not None and self.log_file.exists():
                log = self.log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{log}"
            )
        return proc.stdout

    def _init(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="rxstore-pg-"))
        self.base_dir = base
        (base / "sock").mkdir()
        if _is_root():
            shutil.chown(base, "postgres", "postgres")
            shutil.chown(base / "sock", "postgres", "postgres")
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            # Safe against process crashes (``stop("immediate")``), not OS crashes; a commit
            # must still reach the WAL before it returns, so no synchronous_commit=off.
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            # WAL capture (rxstore's default on PostgreSQL when available) reads a logical slot;
            # RXSTORE_TEST_WAL_LEVEL=replica runs every test with trigger capture (capture="auto").
            "wal_level": WAL_LEVEL,
            "max_replication_slots": "100",
            "max_wal_senders": "10",
            **self.settings,
        }
        conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# rxstore test server\n" + conf)
        if self.host != "127.0.0.1":
            with (self.data_dir / "pg_hba.conf").open("a") as fh:
                fh.write("host all all samenet trust\n")

    def start(self) -> None:
        """Start the server (initializing the cluster first if needed); waits until ready."""
        if self._running:
            return
        if self.base_dir is None:
            self._init()
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "start",
            ],
            timeout=90,
        )
        self._running = True

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: ``fast`` (disconnect clients, clean), ``immediate`` (crash-like)."""
        if not self._running:
            return
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            timeout=90,
        )
        self._running = False

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop the server (immediately) and remove its directory."""
        try:
            if self._running:
                self.stop("immediate")
        finally:
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- SQL ----------------------------------------------------------------

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL with ``psql`` and return its unaligned output."""
        args = [
            str(self.bin_dir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str | None = None) -> str:
        """Create a database (``t_<random>`` by default) and return its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self.psql(f"CREATE DATABASE {_quote_ident(name)}")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its clients and dropping its replication slots."""
        literal = "'" + name.replace("'", "''") + "'"
        self.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {literal}")
        self.psql(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE database = {literal} AND NOT active"
        )
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 with no persistence, in a temp dir.

    Args:
        binary: Path of ``redis-server``; found on ``PATH`` by default.
        port: TCP port; a free one by default. It stays the same across restarts.
        host: Address to listen on (and to reach it at).
        netns: Network namespace the server runs in (``host`` must be one of its addresses).
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        self.binary = binary or shutil.which("redis-server") or "redis-server"
        self.port = port or free_port()
        self.host = host
        self.netns = netns
        self.base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def missing() -> str | None:
        """Return why a server cannot be started here, or None if it can."""
        if shutil.which("redis-server") is None:
            return "redis-server not found (Debian package `redis-server`)"
        return None

    @property
    def url(self) -> str:
        """``redis://<host>:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def ping(self, timeout: float = 1.0) -> bool:
        """Return whether the server answers PING."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, *, timeout: float = 20) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            return
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="rxstore-redis-"))
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--protected-mode",
            "no",  # test hosts only: loopback or a namespace's private address
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.base_dir),
            "--logfile",
            str(self.base_dir / "redis.log"),
        ]
        self._proc = subprocess.Popen(
            in_netns(self.netns, args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self.ping(timeout=0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                log = self.base_dir / "redis.log"
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{text}")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM, or SIGKILL with ``kill=True``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port (all data is lost)."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop(kill=True)
        finally:
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
