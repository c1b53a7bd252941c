"""Shared fixtures: throwaway servers (see tests/services.py).

Tests that need PostgreSQL or Redis skip with a clear reason when the binaries
are missing, or fail instead when ``RXSTORE_REQUIRE_SERVICES=1`` (CI).

Every test that uses a service's fixture carries that service's marker (added at collection,
see :func:`service_markers`), so ``pytest -m "not postgres and not redis"`` runs what needs
neither server.
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


# -- markers ------------------------------------------------------------------

#: marker -> the fixtures (anywhere in a test's fixture closure) that need that service.
SERVICE_FIXTURES: dict[str, frozenset[str]] = {
    "postgres": frozenset({"postgres", "pg_dsn", "own_postgres"}),
    "redis": frozenset({"redis_server", "own_redis"}),
    "node": frozenset({"node"}),
}
#: A parametrized fixture with this value reaches PostgreSQL through ``request.getfixturevalue``,
#: which static fixture closures do not show (e.g. ``database_url`` / ``backend`` in tests/gateway).
POSTGRES_PARAM = "postgresql"


def service_markers(item: pytest.Item) -> set[str]:
    """The service markers ``item`` needs, from its fixtures and its parameters."""
    fixtures = set(getattr(item, "fixturenames", ()))
    markers = {marker for marker, needs in SERVICE_FIXTURES.items() if fixtures & needs}
    callspec = getattr(item, "callspec", None)
    if callspec is not None and POSTGRES_PARAM in (str(value) for value in callspec.params.values()):
        markers.add("postgres")
    return markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with the services it needs (see :data:`SERVICE_FIXTURES`)."""
    for item in items:
        present = {mark.name for mark in item.iter_markers()}
        for marker in sorted(service_markers(item) - present):
            item.add_marker(marker)
