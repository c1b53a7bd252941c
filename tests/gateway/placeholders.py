"""SQL written with ``?`` placeholders, as each test database takes it."""

from __future__ import annotations


def placeholders(text: str, *, postgres: bool) -> str:
    """``text`` with its ``?`` placeholders numbered for PostgreSQL (``$1``, ``$2``, ...), else unchanged."""
    if not postgres:
        return text
    parts = text.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))
