"""Benchmark 1: in-process RootStore -> TableStore on 100k entities, against peers.

Frames enter through ``root.router.on_frame(name, payload)`` (the transport's
callback), so the socket is excluded; payloads are decoded before the clock
starts. Every contestant does the same work per change: take an UPDATE
envelope, put its record into a 100k-entity table state and notify one
subscriber of the new state.

Contestants:

* ``rxstore``: RootStore -> TableStore (rows kept as dicts), fed what its
  transport hands the router: the gateway's ``rxstore:batch`` frames (one
  change each when unbatched) as :func:`rxstore.protocol.frames.decode_json` decodes
  them, envelopes checked while decoding (that cost is in benchmark 2); the
  same fed plain dicts (envelopes checked by the router, in Python); and with
  attrs records (``record_type = Post``: msgspec, else cattrs).
* ``dict -> callback`` (floor): a dict of handlers, a mutable dict as the table.
* ``reactivex``: Subject -> filter -> scan (immutables.Map) -> BehaviorSubject.
* ``reactivex shared Subject``: N stores each filtering one shared Subject.
* ``reaktiv``: a Signal holding the immutables.Map, one Effect subscribed.
* ``pydux``: a redux store (reducer on immutables.Map), one listener.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import immutables
from reactivex import operators as ops
from reactivex.subject import BehaviorSubject, Subject

from benchmarks._common import Output, Table, rate
from rxstore import RootStore, TableStore
from rxstore.gateway.demo import Post
from rxstore.protocol.events import BATCH, SNAPSHOT
from rxstore.protocol.frames import decode_json
from rxstore.testing import VirtualLink

ENTITIES = 100_000
EVENT = "post_update"

Feed = Callable[[int, int], None]
"""``feed(start, stop)``: process payloads[start:stop] (unbatched or in prepared batches)."""


class DictPosts(TableStore[dict[str, Any]]):
    """Rows kept as the decoded dicts."""

    table = "posts"


class PostStore(TableStore[Post]):
    """Rows structured into attrs ``Post`` records with cattrs."""

    table = "posts"
    record_type = Post


def _row(i: int, likes: int = 0) -> dict[str, Any]:
    return {
        "id": f"p{i}",
        "title": f"post {i}",
        "body": "",
        "author": "bench",
        "private": False,
        "likes": likes,
        "updated_at": 0.0,
    }


def make_payloads(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """UPDATE envelopes on random rows of the 100k table, seq 1..count."""
    rnd = random.Random(seed)
    now = time.time()
    return [
        {
            "seq": seq,
            "topic": "posts",
            "op": "UPDATE",
            "record": _row(rnd.randrange(ENTITIES), likes=seq),
            "old": None,
            "ts": now,
        }
        for seq in range(1, count + 1)
    ]


def _batches(payloads: Sequence[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    return [{"events": [[EVENT, p] for p in payloads[i : i + size]]} for i in range(0, len(payloads), size)]


class Bench:
    """Shared payloads and initial rows for all contestants."""

    def __init__(self, events: int, repeats: int) -> None:
        self.events = events
        self.repeats = repeats
        self.payloads = make_payloads(events * repeats)
        self.rows = [_row(i) for i in range(ENTITIES)]
        self.initial = immutables.Map({row["id"]: row for row in self.rows})
        self._frames: dict[int, list[dict[str, Any]]] = {}

    def frames(self, size: int) -> list[dict[str, Any]]:
        if size not in self._frames:
            self._frames[size] = _batches(self.payloads, size)
        return self._frames[size]

    def checked(self, size: int) -> list[Any]:
        """The batches of ``size`` (1: one change each) as the client transport decodes them."""
        if -size not in self._frames:
            self._frames[-size] = [decode_json(json.dumps([BATCH, frame]))[1] for frame in self.frames(size)]
        return self._frames[-size]

    def measure(self, feed: Feed, batch: int, events: int | None = None) -> float:
        """Median events/s of ``repeats`` runs of ``events`` payloads each (new payloads per run)."""
        events = events or self.events
        events -= events % batch
        runs = iter(range(self.repeats))
        state: dict[str, int] = {}

        def setup() -> None:
            i = next(runs)
            state["start"] = i * events

        def run() -> None:
            start = state["start"]
            feed(start, start + events)

        return rate(events, run, repeats=self.repeats, setup=setup)

    # -- contestants -------------------------------------------------------------

    def rxstore(self, batch: int, *, stores: int = 1, records: bool = False, wire: bool = True) -> Feed:
        """``wire``: frames as the transport decodes them (checked batches); else plain dict frames."""
        hot: TableStore[Any] = PostStore() if records else DictPosts()
        idle = [_idle_store(i)() for i in range(stores - 1)]
        root = RootStore(stores=[hot, *idle], transport=VirtualLink())
        root.setup_domain_event_handlers()
        root.router.on_frame(SNAPSHOT, {"topic": "posts", "event": EVENT, "seq": 0, "records": self.rows})
        hot.state.subscribe(_listener)
        assert len(hot.value) == ENTITIES
        on_frame = root.router.on_frame
        payloads = self.payloads
        if batch == 1 and not wire:

            def feed(start: int, stop: int) -> None:
                for p in payloads[start:stop]:
                    on_frame(EVENT, p)

            return feed
        frames = self.checked(batch) if wire else self.frames(batch)

        def feed_batches(start: int, stop: int) -> None:
            for frame in frames[start // batch : stop // batch]:
                on_frame(BATCH, frame)

        return feed_batches

    def floor(self, batch: int, *, stores: int = 1) -> Feed:
        table: dict[str, Any] = dict(self.initial)
        listener = _listener

        def handle(p: dict[str, Any]) -> None:
            record = p["record"]
            table[record["id"]] = record
            listener(table)

        def handle_batch(ps: list[list[Any]]) -> None:
            for _, p in ps:
                record = p["record"]
                table[record["id"]] = record
            listener(table)

        handlers: dict[str, Callable[[Any], None]] = {f"t{i}_update": _listener for i in range(stores - 1)}
        handlers[EVENT] = handle if batch == 1 else handle_batch
        payloads = self.payloads
        if batch == 1:

            def feed(start: int, stop: int) -> None:
                for p in payloads[start:stop]:
                    handlers[EVENT](p)

            return feed
        frames = self.frames(batch)

        def feed_batches(start: int, stop: int) -> None:
            for frame in frames[start // batch : stop // batch]:
                handlers[EVENT](frame["events"])

        return feed_batches

    def reactivex(self, batch: int, *, stores: int = 1) -> Feed:
        """One shared Subject; ``stores`` pipelines filter it (filter -> scan -> BehaviorSubject)."""
        subject: Subject[tuple[str, Any]] = Subject()
        for i in range(stores):
            name = EVENT if i == 0 else f"t{i}_update"
            state = BehaviorSubject(self.initial)
            subject.pipe(
                ops.filter(_named(name)),
                ops.scan(_set_one if batch == 1 else _set_many, seed=self.initial),
            ).subscribe(state)
            state.subscribe(_listener)
        on_next = subject.on_next
        payloads = self.payloads
        if batch == 1:

            def feed(start: int, stop: int) -> None:
                for p in payloads[start:stop]:
                    on_next((EVENT, p))

            return feed
        frames = self.frames(batch)

        def feed_batches(start: int, stop: int) -> None:
            for frame in frames[start // batch : stop // batch]:
                on_next((EVENT, frame["events"]))

        return feed_batches

    def reaktiv(self, batch: int) -> Feed | None:
        try:
            from reaktiv import Effect, Signal
        except ImportError:
            return None
        signal = Signal(self.initial)
        effect = Effect(lambda: _listener(signal()))
        self._keep = effect  # an Effect unsubscribes when garbage-collected
        payloads = self.payloads
        if batch == 1:

            def feed(start: int, stop: int) -> None:
                for p in payloads[start:stop]:
                    record = p["record"]
                    signal.set(signal().set(record["id"], record))

            return feed
        frames = self.frames(batch)

        def feed_batches(start: int, stop: int) -> None:
            for frame in frames[start // batch : stop // batch]:
                signal.set(_set_many(signal(), (EVENT, frame["events"])))

        return feed_batches

    def pydux(self, batch: int) -> Feed | None:
        try:
            import pydux
        except ImportError:
            return None
        initial = self.initial

        def reducer(state: Any, action: dict[str, Any]) -> Any:
            if state is None:
                return initial
            kind = action["type"]
            if kind == EVENT:
                record = action["payload"]["record"]
                return state.set(record["id"], record)
            if kind == "batch":
                return _set_many(state, (EVENT, action["payload"]))
            return state

        store = pydux.create_store(reducer)
        store.subscribe(lambda: _listener(store.get_state()))
        dispatch = store.dispatch
        payloads = self.payloads
        if batch == 1:

            def feed(start: int, stop: int) -> None:
                for p in payloads[start:stop]:
                    dispatch({"type": EVENT, "payload": p})

            return feed
        frames = self.frames(batch)

        def feed_batches(start: int, stop: int) -> None:
            for frame in frames[start // batch : stop // batch]:
                dispatch({"type": "batch", "payload": frame["events"]})

        return feed_batches


DICT_ROWS = "rxstore RootStore -> TableStore (dict rows)"
PLAIN_FRAMES = "rxstore RootStore -> TableStore (dict rows, plain dict frames)"
ATTRS_ROWS = "rxstore RootStore -> TableStore (attrs rows)"


def _peer_targets(measured: dict[str, tuple[float | None, float | None]], peers: list[str]) -> str:
    """Issue 11's goals for table 1, each ratio beside its goal."""
    parts = []
    for index, label in ((0, "unbatched"), (1, "in batches of 100")):
        rates = [(measured[p][index] or 0.0, p) for p in peers]
        best, best_name = max(rates)
        ours = measured[DICT_ROWS][index] or 0.0
        parts.append(f"{label} {ours / best:.2f}x (best peer: {best_name.split(' ')[0]} {best:,.0f}/s)")
    typed = [(measured[ATTRS_ROWS][i] or 0.0) / (measured[DICT_ROWS][i] or 1.0) for i in (0, 1)]
    return (
        f"targets: rxstore >= 1.0x the best peer: {'; '.join(parts)}; "
        f"typed records >= 0.8x dict rows: {typed[0]:.2f}x unbatched, {typed[1]:.2f}x in batches of 100"
    )


def _listener(_state: object) -> None:
    return None


def _named(name: str) -> Callable[[tuple[str, Any]], bool]:
    return lambda event: event[0] == name


def _set_one(state: Any, event: tuple[str, Any]) -> Any:
    record = event[1]["record"]
    return state.set(record["id"], record)


def _set_many(state: Any, event: tuple[str, Any]) -> Any:
    mutation = state.mutate()
    for _, p in event[1]:
        record = p["record"]
        mutation[record["id"]] = record
    return mutation.finish()


_IDLE: dict[int, type[TableStore[Any]]] = {}


def _idle_store(i: int) -> type[TableStore[Any]]:
    if i not in _IDLE:
        _IDLE[i] = type(f"Idle{i}", (TableStore,), {"table": f"t{i + 1}s"})
    return _IDLE[i]


def run(out: Output, *, quick: bool) -> list[Table]:
    events, repeats = (30_000, 3) if quick else (100_000, 3)
    store_counts = [1, 10, 100] if quick else [1, 2, 5, 10, 20, 50, 100]
    batch_sizes = [1, 10, 100, 500] if quick else [1, 2, 5, 10, 20, 50, 100, 200, 500]
    out.start("1 in-process", 1 + 10 + len(store_counts) * 4 + len(batch_sizes) * 3)
    out.step("building 100k entities and payloads")
    bench = Bench(events, repeats)
    out.advance()

    head = Table(
        "inproc",
        f"1. In-process: change -> 100k-entity table state -> 1 subscriber (events/s, median of {repeats})",
        ["contestant", "unbatched", "batches of 100", "vs floor (unbatched / batched)"],
    )
    measured: dict[str, tuple[float | None, float | None]] = {}
    contestants: list[tuple[str, Callable[[int], Feed | None], bool]] = [
        ("dict -> callback (floor)", bench.floor, True),
        (DICT_ROWS, lambda b: bench.rxstore(b), False),
        (PLAIN_FRAMES, lambda b: bench.rxstore(b, wire=False), False),
        (ATTRS_ROWS, lambda b: bench.rxstore(b, records=True), False),
        ("reactivex Subject -> filter -> scan -> BehaviorSubject", bench.reactivex, True),
        ("reaktiv Signal + Effect", bench.reaktiv, True),
        ("pydux store + listener", bench.pydux, True),
    ]
    for name, make, _peer in contestants:
        values: list[float | None] = []
        for batch in (1, 100):
            out.step(f"{name}, batch {batch}")
            feed = make(batch)
            slow = "reaktiv" in name or "pydux" in name
            values.append(None if feed is None else bench.measure(feed, batch, events // 4 if slow else None))
            out.advance()
        measured[name] = (values[0], values[1])
    floor = measured["dict -> callback (floor)"]
    for name, _, peer in contestants:
        u, b = measured[name]
        ratio = (
            f"{u / floor[0]:.2f} / {b / floor[1]:.2f}"
            if u and b and floor[0] and floor[1]
            else "not installed"
        )
        head.add(
            [name, u, b, ratio],
            head.row(name, "unbatched", u, "events/s", peer=peer),
            head.row(name, "batch=100", b, "events/s", peer=peer),
        )
    rx_u, rx_b = measured[DICT_ROWS]
    head.notes.append(
        _peer_targets(measured, [name for name, _, peer in contestants if peer and "floor" not in name])
    )
    head.notes.append(
        f"earlier targets: >= 300,000 events/s unbatched (now {rx_u:,.0f}), >= 1,500,000 in batches of 100 "
        f"(now {rx_b:,.0f})"
    )
    head.notes.append(
        "rxstore (dict rows): frames as its transport decodes them "
        "(rxstore.protocol.frames; unbatched: the gateway's "
        "batch of one change); plain dict frames: the same envelopes as decoded dicts, checked by the router"
    )

    stores_table = Table(
        "stores",
        f"1b. Events/s vs number of stores (one hot 100k-entity store, the others idle), median of {repeats}",
        ["stores", "rxstore", "rxstore batch=100", "reactivex shared Subject + filter", "dict -> callback"],
    )
    series: dict[str, list[float]] = {
        "rxstore": [],
        "rxstore batch=100": [],
        "reactivex shared Subject": [],
        "floor": [],
    }
    for n in store_counts:
        out.step(f"{n} stores")
        r1 = bench.measure(bench.rxstore(1, stores=n), 1)
        out.advance()
        r100 = bench.measure(bench.rxstore(100, stores=n), 100)
        out.advance()
        shared = bench.measure(bench.reactivex(1, stores=n), 1, max(5_000, events // max(1, n // 4)))
        out.advance()
        fl = bench.measure(bench.floor(1, stores=n), 1)
        out.advance()
        for key, value in zip(series, (r1, r100, shared, fl), strict=True):
            series[key].append(value)
        stores_table.add(
            [n, r1, r100, shared, fl],
            stores_table.row("rxstore", f"stores={n}", r1, "events/s"),
            stores_table.row("rxstore batch=100", f"stores={n}", r100, "events/s"),
            stores_table.row(
                "reactivex shared Subject + filter", f"stores={n}", shared, "events/s", peer=True
            ),
            stores_table.row("dict -> callback", f"stores={n}", fl, "events/s", peer=True),
        )
    ratio_u = series["rxstore"][-1] / series["rxstore"][0]
    ratio_b = series["rxstore batch=100"][-1] / series["rxstore batch=100"][0]
    stores_table.rows.append(stores_table.row("rxstore", "100 stores / 1 store", ratio_u, "ratio"))
    stores_table.rows.append(stores_table.row("rxstore batch=100", "100 stores / 1 store", ratio_b, "ratio"))
    stores_table.notes.append(
        f"target: 100 stores / 1 store within 0.9-1.1 "
        f"(now {ratio_u:.2f} unbatched, {ratio_b:.2f} in batches of 100)"
    )
    stores_table.series = {"stores": store_counts, **series}

    batch_table = Table(
        "batch",
        f"1c. Events/s vs batch size (events per frame), median of {repeats}",
        ["batch size", "rxstore", "reactivex (scan over lists)", "dict -> callback"],
    )
    bseries: dict[str, list[float]] = {"rxstore": [], "reactivex": [], "floor": []}
    for size in batch_sizes:
        out.step(f"batch size {size}")
        rates: list[float] = []
        for key, make in (("rxstore", bench.rxstore), ("reactivex", bench.reactivex), ("floor", bench.floor)):
            feed = make(size)
            assert feed is not None
            rates.append(bench.measure(feed, size))
            bseries[key].append(rates[-1])
            out.advance()
        batch_table.add(
            [size, *rates],
            batch_table.row("rxstore", f"batch={size}", rates[0], "events/s"),
            batch_table.row("reactivex scan over lists", f"batch={size}", rates[1], "events/s", peer=True),
            batch_table.row("dict -> callback", f"batch={size}", rates[2], "events/s", peer=True),
        )
    batch_table.series = {"batch": batch_sizes, **bseries}
    out.finish()
    return [head, stores_table, batch_table]
