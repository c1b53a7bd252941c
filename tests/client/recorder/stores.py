"""Stores the recorder's tests record and replay: importable, as a generated test imports them."""

from __future__ import annotations

from typing import Any

import attrs

from rxstore import DomainStore, Event, TableStore
from rxstore.gateway.demo import Post


@attrs.frozen
class Likes:
    """How many likes, and by whom (the last one)."""

    count: int = 0
    last: str | None = None


class LikeStore(DomainStore[Likes]):
    """Counts ``post_liked`` messages (a broadcast: ``{"from": user, "topic": ..., "data": ...}``)."""

    accepts = ("post_liked",)
    initial = Likes()

    def reduce(self, state: Likes, event: Event) -> Likes:
        data: Any = event.data
        who = data.get("from") if type(data) is dict else None
        return Likes(state.count + 1, who)


class PostStore(TableStore[Post]):
    """The demo ``posts`` table."""

    table = "posts"
    record_type = Post
