"""SQL text helpers shared by the change logs: quoting, topic names, ops.

One definition of each rule: both backends quote identifiers and literals the
standard SQL way (SQLite and PostgreSQL agree on it) and refuse the same kind
of topic names.
"""

from __future__ import annotations

from typing import Final

from rxstore.protocol.events import Op

__all__ = ["OPS", "check_topic", "ident", "literal"]

OPS: Final = {op.value: op for op in Op}
"""The log's ``op`` column text -> :class:`~rxstore.protocol.events.Op` (a dict lookup)."""


def ident(name: str) -> str:
    """Quote an SQL identifier (a table or column name).

    Example:
        >>> print(ident('my "posts" table'))
        "my ""posts"" table"
    """
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Quote an SQL string literal.

    Example:
        >>> literal("it's")
        "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def check_topic(table: str, *, internal: tuple[str, ...]) -> None:
    """Refuse a topic (table name) that is empty or one of the database's or the log's own.

    Args:
        table: The table name.
        internal: Prefixes of internal tables, e.g. ``("rxstore_", "sqlite_")``.

    Raises:
        ValueError: The name is empty or starts with an internal prefix.

    Example:
        >>> check_topic("posts", internal=("rxstore_", "pg_"))
        >>> check_topic("pg_class", internal=("rxstore_", "pg_"))
        Traceback (most recent call last):
        ...
        ValueError: cannot watch 'pg_class': rxstore_* and pg_* tables are internal
    """
    if not table:
        raise ValueError("table name must not be empty")
    if table.startswith(internal):
        names = " and ".join(f"{prefix}*" for prefix in internal)
        raise ValueError(f"cannot watch {table!r}: {names} tables are internal")
