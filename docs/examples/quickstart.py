"""The Quickstart's first store: follow the posts table and print what changes."""

# --8<-- [start:store]
import asyncio
import os

import attrs

from rxstore import RootStore, TableStore


@attrs.frozen
class Post:
    id: str
    title: str
    author: str = ""
    likes: int = 0  # columns the record does not name (body, ...) are ignored


class PostStore(TableStore[Post]):
    table = "posts"  # follow this table; its changes arrive as "post_update" events
    record_type = Post  # rows are structured into Post records


async def main(url: str, token: str, seconds: float = 3600) -> None:
    posts = PostStore()
    async with RootStore(url, stores=[posts], token=token) as root:  # connected
        root.connection.subscribe(lambda c: print("connection:", c.status.value))
        await root.live(timeout=10)  # the snapshot is in: posts holds the whole table
        posts.select(len).subscribe(lambda n: print("posts:", n))
        posts.select(lambda s: s.get("p1")).subscribe(lambda p: print("p1 is now", p))
        await asyncio.sleep(seconds)


if __name__ == "__main__":
    url = os.environ.get("RXSTORE_URL", "http://127.0.0.1:8080")
    asyncio.run(main(url, os.environ["RXSTORE_TOKEN"]))
# --8<-- [end:store]
