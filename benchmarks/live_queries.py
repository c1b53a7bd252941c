"""Benchmark 7: live queries, the gateway's routing cost per change, in-process.

A real :class:`~rxstore.gateway.server.RealtimeGateway` is built (not
started: no socket, no database read) and given real ``Client`` objects, one
subscription each, filed through its ``LiveQueries`` (the path a
``rxstore:subscribe`` takes). Batches of prepared UPDATEs of ``posts`` then go
through ``gateway.tailer.broadcast``: the subscription index, the events of
each subscription (:func:`~rxstore.gateway.queries.subscriptions.subscription_event`),
the grouping per client, the encoding of each client's batch frame and the
enqueue on its queue. The queues are emptied between rounds, outside the clock.

Each subscription is ``author = value``; each change moves a post of one value
(its new and old row have the same ``author``). Rows:

* ``a``: 10 subscriptions over 10 values: a change matches 1 (the baseline);
* ``a10``: 10 subscriptions over 1 value: a change matches all 10;
* ``b``: 10,000 over 1,000 values: a change matches 10 (issue 12's target);
* ``c``: 10,000 over 10,000 values: a change matches 1, as in ``a`` (the cost of
  the index alone);
* ``e``: 10,000 ``author in (v1, v2)`` over 2,000 values: a change matches 10;
* peers, "every subscriber checks every change" (Supabase Realtime's
  ``postgres_changes`` style) on the subscriptions of ``b``: the same gateway
  path with an index that hands every subscription to every change, and the
  bare floor of that design (``Subset.matches`` of each subscription, no delivery).

Batches of 1 change (a live gateway at a low rate broadcasts each change
alone) and of 200 (the tailer's ``batch_size``: a backlog). Timed in CPU seconds
of this process, median of the repeats.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import Output, Table
from rxstore.gateway.access.auth import TokenAuth, User
from rxstore.gateway.delivery.queues import Client
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.gateway.queries.index import SubscriptionIndex
from rxstore.gateway.queries.subscriptions import Subscription
from rxstore.gateway.server import RealtimeGateway, Topic
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Subset, Term

TOPIC = "posts"
COLUMN = "author"
BATCHES = (1, 200)
"""Changes per broadcast: a live gateway at a low rate, and the tailer's ``batch_size``."""
AUTH = TokenAuth(secret="rxstore-benchmark-secret-0123456789abcdef")


@dataclass(frozen=True)
class Case:
    """One row: ``subscriptions`` subscriptions over ``values`` distinct values."""

    key: str
    label: str
    subscriptions: int
    values: int
    width: int = 1
    """Values per subscription: 1 is an ``=`` term, more an ``in`` term."""
    peer: str = ""
    """``""``: the gateway's index; ``"scan"``: every subscription checks every change through
    the gateway's path; ``"bare"``: ``Subset.matches`` of every subscription, nothing delivered."""


def cases(quick: bool) -> list[Case]:
    """The rows; ``quick`` divides the big ones by 10 (same subscriptions per value)."""
    big = 1_000 if quick else 10_000
    return [
        Case("a", "10 subscriptions, 10 values", 10, 10),
        Case("a10", "10 subscriptions, 1 value", 10, 1),
        Case("b", f"{big:,} subscriptions, {big // 10:,} values", big, big // 10),
        Case("c", f"{big:,} subscriptions, {big:,} values", big, big),
        Case("e", f"{big:,} subscriptions `in` 2 of {big // 5:,} values", big, big // 5, width=2),
        Case(
            "d",
            f"peer: every subscriber checks every change ({big:,} subscriptions, {big // 10:,} values)",
            big,
            big // 10,
            peer="scan",
        ),
        Case(
            "d0",
            f"peer floor: Subset.matches x {big:,} per change, nothing delivered",
            big,
            big // 10,
            peer="bare",
        ),
    ]


def _value(i: int) -> str:
    return f"u{i}"


def _row(post: int, value: str, likes: int) -> dict[str, Any]:
    return {
        "id": f"p{post}",
        "title": f"post {post}",
        "body": "",
        COLUMN: value,
        "private": False,
        "likes": likes,
        "updated_at": 0.0,
    }


def make_changes(count: int, values: int, seed: int = 1) -> list[Change]:
    """``count`` UPDATEs (seq 1..count) of posts whose ``author`` is uniform over ``values`` values."""
    rnd = random.Random(seed)
    changes = []
    for seq in range(1, count + 1):
        value = _value(rnd.randrange(values))
        post = rnd.randrange(100_000)
        changes.append(Change(seq, TOPIC, Op.UPDATE, _row(post, value, seq), _row(post, value, seq - 1), 0.0))
    return changes


class EveryoneChecks(SubscriptionIndex[Subscription]):
    """The peer's design: every subscription of the topic is a candidate of every change."""

    def __init__(self, subscriptions: Iterable[Subscription]) -> None:
        super().__init__()
        self.all = list(subscriptions)
        self.count = len(self.all)

    def candidates(self, change: Change) -> Iterable[Subscription]:
        return self.all


class Routing:
    """A gateway (not started) with ``case.subscriptions`` clients of one subscription each."""

    def __init__(self, case: Case, directory: Path) -> None:
        log = SQLiteChangeLog(f"sqlite:///{directory / 'unused.db'}")  # never opened
        self.gateway = gateway = RealtimeGateway(
            log,
            topics=[Topic(name=TOPIC)],
            auth=AUTH,
            client_queue_limit=1_000_000,  # a round queues every event it delivers: none may drop
            client_queue_bytes=1 << 30,
        )
        self.clients: list[Client] = []
        self.subscriptions: list[Subscription] = []
        live = gateway.live_queries
        for i in range(case.subscriptions):
            client = Client(f"sid{i}", User(f"user{i}"), frozenset(), cursor=0, live=True)
            first = (i * case.width) % case.values
            picked = tuple(_value((first + k) % case.values) for k in range(case.width))
            term = Term(COLUMN, "=", picked[0]) if case.width == 1 else Term(COLUMN, "in", picked)
            sub = live.new(client, "posts_mine", Subset(TOPIC, (term,)))
            live.index_client(client, [sub])
            gateway.tailer.clients[client.sid] = client
            self.clients.append(client)
            self.subscriptions.append(sub)
        if case.peer == "scan":
            gateway.tailer.index = EveryoneChecks(self.subscriptions)

    def reset(self) -> None:
        """Empty every queue and rewind every cursor (outside the clock)."""
        clear = self.gateway.delivery.clear
        for client in self.clients:
            clear(client)
            client.cursor = 0

    def delivered(self) -> int:
        """Events queued since the last :meth:`reset`; fails if the gateway dropped a client."""
        if len(self.gateway.tailer.clients) != len(self.clients):
            raise RuntimeError("the gateway dropped a client: raise its queue limits")
        return sum(client.queued for client in self.clients)

    def feed(self, batch: int) -> Callable[[Sequence[Change]], None]:
        broadcast = self.gateway.tailer.broadcast

        def run(changes: Sequence[Change]) -> None:
            for start in range(0, len(changes), batch):
                broadcast(changes[start : start + batch])

        return run

    def bare(self) -> Callable[[Sequence[Change]], None]:
        subsets = [sub.subset for sub in self.subscriptions]

        def run(changes: Sequence[Change]) -> None:
            for change in changes:
                record = change.record
                for subset in subsets:
                    subset.matches(record)

        return run


@dataclass
class Measured:
    us: float
    """Median CPU microseconds per change."""
    matched: float
    """Events delivered per change (``nan`` for the bare peer)."""
    changes: int


def measure(
    routing: Routing, run: Callable[[Sequence[Change]], None], case: Case, batch: int, quick: bool
) -> Measured:
    """Median CPU us/change over ``repeats`` rounds, each long enough to time (~0.25 s, quick 0.02 s).

    A round holds at least one whole batch, except for the peers (at ~3 us per subscription
    and change they take seconds per batch of 200): at least 20 changes there.
    """
    target, repeats = (0.02, 3) if quick else (0.25, 5)
    least = 20 if case.peer else batch
    count = 20
    while True:  # grow the round until it takes long enough to time well
        changes = make_changes(count, case.values)
        routing.reset()
        start = time.process_time()
        run(changes)
        took = time.process_time() - start
        if took >= target / 4 or count >= 200_000:
            break
        count *= 4
    count = max(least, min(200_000, int(count * target / max(took, 1e-6))))
    times = []
    matched = float("nan")
    for r in range(repeats):
        changes = make_changes(count, case.values, seed=r + 2)
        routing.reset()
        start = time.process_time()
        run(changes)
        times.append(time.process_time() - start)
        if case.peer != "bare":
            matched = routing.delivered() / count
    routing.reset()
    return Measured(statistics.median(times) / count * 1e6, matched, count)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


async def _run(out: Output, quick: bool) -> Table:
    rows = cases(quick)
    table = Table(
        "live_queries",
        "7. Live queries: gateway CPU per change routed to subscriptions (in-process, median)",
        [
            "subscriptions",
            "events / change",
            "us/change, 1 per broadcast",
            "vs a",
            "us/change, 200 per broadcast",
            "vs a",
        ],
    )
    results: dict[tuple[str, int], Measured] = {}
    with tempfile.TemporaryDirectory(prefix="rxstore-bench-") as tmp:
        for case in rows:
            out.step(f"{case.key}: building {case.subscriptions:,} subscriptions")
            routing = Routing(case, Path(tmp))
            gc.collect()
            gc.freeze()  # the subscriptions stay: the collector need not walk them in every round
            for batch in BATCHES:
                out.step(f"{case.key}: {case.label}, {batch} per broadcast")
                run = routing.bare() if case.peer == "bare" else routing.feed(batch)
                results[case.key, batch] = measure(routing, run, case, batch, quick)
                out.advance()
            gc.unfreeze()
            del routing
            gc.collect()
    for case in rows:
        cells: list[Any] = [f"{case.key}. {case.label}"]
        measured = [results[case.key, batch] for batch in BATCHES]
        cells.append("-" if case.peer == "bare" else f"{measured[0].matched:.1f}")
        records = []
        for batch, m in zip(BATCHES, measured, strict=True):
            base = results["a", batch].us
            cells += [m.us, _ratio(m.us, base)]
            records.append(
                table.row(
                    case.label,
                    f"{case.key} {batch} per broadcast",
                    m.us,
                    "us/change",
                    peer=bool(case.peer),
                    note=f"{m.matched:.1f} events/change, vs a {m.us / base:.2f}x, {m.changes} changes/round",
                )
            )
        if case.peer != "bare":
            records.append(
                table.row(
                    case.label,
                    f"{case.key} events",
                    measured[0].matched,
                    "events/change",
                    peer=bool(case.peer),
                )
            )
        table.add(cells, *records)
    big = rows[2].subscriptions
    table.notes.append(
        f"target (issue 12): b, {big:,} subscriptions over {big // 10:,} values, within 2x of a "
        f"(10 subscriptions): now {results['b', 1].us / results['a', 1].us:.1f}x at 1 change per broadcast, "
        f"{results['b', 200].us / results['a', 200].us:.1f}x at 200; "
        f"c (as many events as a): {results['c', 1].us / results['a', 1].us:.1f}x / "
        f"{results['c', 200].us / results['a', 200].us:.1f}x"
    )
    table.notes.append(
        "one client per subscription; a broadcast = gateway.tailer.broadcast(batch): index, "
        "subscription_event, grouping per client, batch frame encoded (json), enqueued; "
        "the peers' rounds may be one shorter batch (at least 20 changes)"
    )
    return table


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("7 live queries", len(cases(quick)) * len(BATCHES))
    table = asyncio.run(_run(out, quick))
    out.finish()
    return [table]
