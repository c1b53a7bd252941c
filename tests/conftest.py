"""Shared fixtures: throwaway servers (see tests/services.py).

Tests that need PostgreSQL or Redis skip with a clear reason when the binaries
are missing, or fail instead when ``RXSTORE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.services import PostgresServer, RedisServer, require_or_skip

# -- PostgreSQL ---------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A started PostgreSQL server shared by the session."""
    reason = PostgresServer.missing()
    if reason:
        require_or_skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> Iterator[str]:
    """DSN of a fresh, empty database, dropped after the test."""
    postgres.start()  # in case an earlier test stopped it
    name = f"t_{uuid.uuid4().hex[:16]}"
    dsn = postgres.create_database(name)
    yield dsn
    if postgres.running:
        postgres.drop_database(name)


# -- Redis --------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A started Redis server (no persistence) shared by the session."""
    reason = RedisServer.missing()
    if reason:
        require_or_skip(reason)
    with RedisServer() as server:
        yield server
