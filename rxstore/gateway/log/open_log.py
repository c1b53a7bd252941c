"""Opening a change log by its database URL: the one place that knows both backends."""

from __future__ import annotations

from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.postgres.changelog import PostgresChangeLog
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog

__all__ = ["open_change_log"]


def open_change_log(url: str, *, capture: str = "auto", slot_warning_bytes: int | None = None) -> ChangeLog:
    """Return the change log for a database URL (not yet opened).

    Args:
        url: ``sqlite:///path/to/app.db`` (created on first use) or
            ``postgresql://user@host:port/db``.
        capture: PostgreSQL only: ``"auto"``, ``"wal"`` or ``"trigger"`` (see
            :class:`~rxstore.gateway.log.postgres.changelog.PostgresChangeLog`).
        slot_warning_bytes: PostgreSQL WAL capture only: WAL the replication slot may retain
            before ``/healthz`` warns (``None``: the log's default, 1 GiB).

    Raises:
        ValueError: The URL's scheme is not supported.
    """
    if url.startswith("sqlite://"):
        return SQLiteChangeLog(url)
    if url.startswith(("postgresql://", "postgres://")):
        if slot_warning_bytes is not None:
            return PostgresChangeLog(url, capture=capture, slot_warning_bytes=slot_warning_bytes)  # type: ignore[arg-type]
        return PostgresChangeLog(url, capture=capture)  # type: ignore[arg-type]
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://...")
