"""The demo schema: the seed's ``posts`` table, for SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from rxstore.gateway.access.auth import User
from rxstore.gateway.api import Writes
from rxstore.gateway.log.contract import ChangeLog
from rxstore.protocol.records import structure_record

if TYPE_CHECKING:
    from rxstore.gateway.server import RealtimeGateway

__all__ = [
    "DEMO_TABLES",
    "Post",
    "all_posts",
    "create_demo_schema",
    "delete_post",
    "dialect_of",
    "register_demo_mutations",
    "save_post",
]

_POSTS: Final = {
    "sqlite": """CREATE TABLE IF NOT EXISTS posts (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        author TEXT NOT NULL DEFAULT '',
        private INTEGER NOT NULL DEFAULT 0,
        likes INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL DEFAULT 0
    )""",
    "postgresql": """CREATE TABLE IF NOT EXISTS posts (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        author TEXT NOT NULL DEFAULT '',
        private BOOLEAN NOT NULL DEFAULT FALSE,
        likes INTEGER NOT NULL DEFAULT 0,
        updated_at DOUBLE PRECISION NOT NULL DEFAULT 0
    )""",
}

DEMO_TABLES: Final = ("posts",)
"""Tables created by :func:`create_demo_schema`."""


@attrs.frozen
class Post:
    """A row of the demo ``posts`` table, as a client record type.

    Example:
        >>> Post(id="p1", title="Hello").likes
        0
    """

    id: str
    title: str
    body: str = ""
    author: str = ""
    private: bool = False
    likes: int = 0
    updated_at: float = 0.0


def dialect_of(log: ChangeLog) -> str:
    """Return ``"sqlite"`` or ``"postgresql"`` for a change log."""
    return "sqlite" if log.url.startswith("sqlite") else "postgresql"


async def create_demo_schema(log: ChangeLog) -> None:
    """Create the demo ``posts`` table if it does not exist (the log must be open)."""
    await log.execute(_POSTS[dialect_of(log)])


def _params(log: ChangeLog, count: int) -> str:
    if dialect_of(log) == "sqlite":
        return ", ".join("?" for _ in range(count))
    return ", ".join(f"${i}" for i in range(1, count + 1))


_COLUMNS: Final = ("id", "title", "body", "author", "private", "likes", "updated_at")


async def save_post(log: ChangeLog, post: Post) -> None:
    """Insert or update a demo post (one transaction, captured by the triggers)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
    sql = (
        f"INSERT INTO posts ({', '.join(_COLUMNS)}) VALUES ({_params(log, len(_COLUMNS))}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )
    private: object = int(post.private) if dialect_of(log) == "sqlite" else post.private
    await log.execute(sql, post.id, post.title, post.body, post.author, private, post.likes, post.updated_at)


async def delete_post(log: ChangeLog, post_id: str) -> None:
    """Delete a demo post."""
    await log.execute(f"DELETE FROM posts WHERE id = {_params(log, 1)}", post_id)


async def all_posts(log: ChangeLog) -> dict[str, Post]:
    """Return the demo posts table as records, by id."""
    rows = await log.fetch(f"SELECT {', '.join(_COLUMNS)} FROM posts")
    return {
        row["id"]: Post(**{**row, "private": bool(row["private"]), "updated_at": float(row["updated_at"])})
        for row in rows
    }


def register_demo_mutations(gateway: RealtimeGateway) -> None:
    """Register ``save_post`` and ``delete_post`` on a gateway serving the demo schema.

    ``save_post`` takes a post's fields (validated into :class:`Post`) and
    writes it as the calling user; a user may only change their own posts.
    ``delete_post`` takes ``{"id": ...}`` and deletes it if the user wrote it.
    """
    log = gateway.log
    sqlite = dialect_of(log) == "sqlite"
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
    upsert = (
        f"INSERT INTO posts ({', '.join(_COLUMNS)}) VALUES ({_params(log, len(_COLUMNS))}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE posts.author = excluded.author"
    )

    @gateway.mutation("save_post")
    async def save(user: User, args: Any) -> Writes:
        if not isinstance(args, dict):
            raise ValueError("save_post takes the post's fields as an object")
        post = structure_record({**args, "author": user.id}, Post)
        private: object = int(post.private) if sqlite else post.private
        params = (post.id, post.title, post.body, post.author, private, post.likes, post.updated_at)
        return Writes([(upsert, params)], result={"id": post.id})

    @gateway.mutation("delete_post")
    async def delete(user: User, args: Any) -> Writes:
        if not isinstance(args, dict) or not isinstance(args.get("id"), str):
            raise ValueError("delete_post takes {'id': str}")
        first, second = ("?", "?") if sqlite else ("$1", "$2")
        sql = f"DELETE FROM posts WHERE id = {first} AND author = {second}"
        return Writes([(sql, (args["id"], user.id))])
