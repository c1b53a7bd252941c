"""Opening a change log by its database URL: the one place that knows both backends."""

from __future__ import annotations

from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.postgres.changelog import PostgresChangeLog
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog

__all__ = ["open_change_log"]


def open_change_log(url: str, *, capture: str = "auto") -> ChangeLog:
    """Return the change log for a database URL (not yet opened).

    Args:
        url: ``sqlite:///path/to/app.db`` (created on first use) or
            ``postgresql://user@host:port/db``.
        capture: PostgreSQL only: ``"auto"``, ``"wal"`` or ``"trigger"`` (see
            :class:`~rxstore.gateway.log.postgres.changelog.PostgresChangeLog`).

    Raises:
        ValueError: The URL's scheme is not supported.
    """
    if url.startswith("sqlite://"):
        return SQLiteChangeLog(url)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresChangeLog(url, capture=capture)  # type: ignore[arg-type]
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://...")
