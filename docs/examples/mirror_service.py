"""A headless service that mirrors the posts table and reacts to its changes.

It keeps three things live from one connection:

- ``posts``: the whole table (a ``TableStore``),
- ``authors``: how many posts each author has (a ``DomainStore`` folding the
  same change events, O(1) per change),
- a log line for every post created while it runs, or while it was offline
  (a plain ``RealtimeStore`` on the root's hot event stream).

Run it against a gateway serving the demo schema::

    export RXSTORE_SECRET=change-me-to-a-long-random-secret
    rxstore serve --db sqlite:///app.db --demo-schema &
    python docs/examples/mirror_service.py --token "$(rxstore token --sub mirror)"

Stop it with Ctrl-C (or ``--duration SECONDS``); it prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

import attrs
import immutables
from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import DisposableBase

from rxstore import (
    ConnectionState,
    DomainStore,
    Event,
    Op,
    RootStore,
    Snapshot,
    SyncStatus,
    TableStore,
    ValidationError,
)
from rxstore.stores.table import structure_record

log = logging.getLogger("mirror")


@attrs.frozen
class Post:
    """A row of the demo ``posts`` table (``rxstore serve --demo-schema``)."""

    id: str
    title: str
    body: str = ""
    author: str = ""
    private: bool = False
    likes: int = 0
    updated_at: float = 0.0


class PostStore(TableStore[Post]):
    """The posts table, mirrored: a snapshot on first connect, then every change."""

    table = "posts"
    record_type = Post


Counts = immutables.Map[str, int]


class AuthorCounts(DomainStore[Counts]):
    """Posts per author, folded from the same ``post_update`` events as ``PostStore``.

    The root hands this store each change exactly once (it drops seqs it has
    already applied), and the table's snapshot on first connect, and again
    after a reset (when the gateway's log no longer reaches back to our cursor).
    """

    accepts = ("post_update",)
    initial: Counts = immutables.Map()

    def reduce_snapshot(self, state: Counts, snapshot: Snapshot) -> Counts:
        counts: dict[str, int] = {}
        for row in snapshot.records:
            author = row.get("author", "")
            counts[author] = counts.get(author, 0) + 1
        return immutables.Map(counts)

    def reduce(self, state: Counts, event: Event) -> Counts:
        change = event.change
        if change is None:  # a message under the table's event name, not a change
            return state
        before = change.old.get("author") if change.old is not None else None
        after = change.record.get("author") if change.record is not None else None
        if before == after:
            return state  # e.g. a new title: nothing to count
        return _add(_add(state, before, -1), after, +1)


def _add(counts: Counts, author: str | None, step: int) -> Counts:
    if author is None:
        return counts
    total = counts.get(author, 0) + step
    if total > 0:
        return counts.set(author, total)
    return counts.delete(author) if author in counts else counts


class NewPostLog:
    """Calls ``on_new`` for each post INSERTed into the log: the seed's RealtimeStore interface.

    Rows of the first snapshot are not new; posts created while the service
    was offline are, and arrive in the replay after the reconnect.
    """

    def __init__(self, on_new: Callable[[Post], None]) -> None:
        self.on_new = on_new

    def setup_realtime_handlers(self, events: Observable[Event]) -> DisposableBase:
        def is_new_post(event: Event) -> bool:
            change = event.change
            return (
                change is not None
                and change.topic == "posts"
                and change.op is Op.INSERT
            )

        def on_new_post(event: Event) -> None:
            assert event.change is not None and event.change.record is not None
            try:
                post = structure_record(event.change.record, Post)
            except ValidationError as exc:  # never raise into the root's event stream
                log.warning("skipped a post: %s", exc)
                return
            self.on_new(post)

        return events.pipe(ops.filter(is_new_post)).subscribe(on_new_post)


class MirrorService:
    """One root store, three stores, and logging of what happens.

    Attributes:
        posts: The mirrored table.
        authors: Posts per author.
        new_posts: Every post created since the service started, in log order.
    """

    def __init__(self, url: str, token: str) -> None:
        self.posts = PostStore()
        self.authors = AuthorCounts()
        self.new_posts: list[Post] = []
        self.root = RootStore(
            url,
            stores=[self.posts, self.authors, NewPostLog(self._on_new_post)],
            token=token,
            connect_timeout=None,  # a service waits for its gateway (a WARNING as retries start and end)
        )
        self._subscriptions: list[DisposableBase] = []

    def _on_new_post(self, post: Post) -> None:
        self.new_posts.append(post)
        log.info("new post %s by %s: %r", post.id, post.author or "?", post.title)

    async def start(self) -> None:
        """Connect, and log connection, sync status, author counts and errors."""
        self._subscriptions = [
            self.root.connection.subscribe(_log_connection),
            self.posts.status.subscribe(_log_sync),
            self.authors.state.subscribe(_log_counts),
            self.root.errors.subscribe(lambda error: log.warning("error: %s", error)),
        ]
        await self.root.setup_realtime()

    async def stop(self) -> None:
        """Disconnect; the stores keep their last state."""
        await self.root.teardown_realtime()
        for subscription in self._subscriptions:
            subscription.dispose()
        self._subscriptions.clear()

    async def __aenter__(self) -> MirrorService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def summary(self) -> str:
        """One line: rows, cursor, new posts seen, posts per author."""
        return (
            f"mirrored {len(self.posts.value)} posts at seq {self.posts.seq}; "
            f"{len(self.new_posts)} new while running; authors: {_format_counts(self.authors.value)}"
        )


def _format_counts(counts: Mapping[str, int]) -> str:
    return (
        ", ".join(f"{author or '-'}={n}" for author, n in sorted(counts.items()))
        or "none"
    )


def _log_connection(state: ConnectionState) -> None:
    reason = f" ({state.reason})" if state.reason else ""
    log.info("connection: %s%s", state.status.value, reason)


def _log_sync(status: SyncStatus) -> None:
    log.info("posts: %s at seq %s", status.state.value, status.cursor)


def _log_counts(counts: Counts) -> None:
    log.info("authors: %s", _format_counts(counts))


async def run(url: str, token: str, duration: float | None = None) -> int:
    """Run the service until Ctrl-C, SIGTERM or ``duration`` seconds; print a summary."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    service = MirrorService(url, token)
    async with service:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    print(service.summary(), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--url``, ``--token`` (or ``RXSTORE_URL``, ``RXSTORE_TOKEN``) and run."""
    parser = argparse.ArgumentParser(
        description="Mirror the posts table and log its changes."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("RXSTORE_URL", "http://127.0.0.1:8080"),
        help="gateway URL (default: $RXSTORE_URL or %(default)s)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("RXSTORE_TOKEN"),
        help="JWT (default: $RXSTORE_TOKEN)",
    )
    parser.add_argument(
        "--duration", type=float, help="stop after SECONDS (default: never)"
    )
    args = parser.parse_args(argv)
    if not args.token:
        parser.error(
            "no token: pass --token or set RXSTORE_TOKEN (rxstore token --sub mirror)"
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout
    )
    try:
        return asyncio.run(run(args.url, args.token, args.duration))
    except Exception as exc:  # e.g. ConnectionRefused: invalid_token
        print(f"mirror_service: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
