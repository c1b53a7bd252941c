"""Benchmark 6: memory per entity at 100k entities, and per idle store (tracemalloc).

Per entity: the rows (dicts) and their keys exist before tracing starts, so
what is measured is the container only: what holding 100k rows in a store's
state costs on top of the rows themselves. Per idle store: a store that exists
(and is registered with a RootStore) but receives nothing.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import attrs
import immutables
from reactivex.subject import BehaviorSubject

from benchmarks._common import Output, Table
from benchmarks.inproc import ENTITIES, EVENT, DictPosts, _row
from rxstore import DomainStore, Event, RootStore
from rxstore.protocol.events import Snapshot
from rxstore.testing import VirtualLink

IDLE_STORES = 1_000


def _traced(build: Callable[[], Any]) -> int:
    """Bytes allocated by ``build()`` and still held by what it returns."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


@attrs.frozen
class Likes:
    count: int = 0


class LikeStore(DomainStore[Likes]):
    accepts = ("post_liked",)
    initial = Likes()

    def reduce(self, state: Likes, event: Event) -> Likes:
        return Likes(state.count + 1)


def run(out: Output, *, quick: bool) -> list[Table]:
    out.start("6 memory", 9)
    rows = [_row(i) for i in range(ENTITIES)]
    snapshot = Event(EVENT, Snapshot("posts", 0, tuple(rows)), kind=_snapshot_kind(), seq=0)
    updates = _updates(rows)

    entity = Table(
        "memory",
        f"6a. Container bytes per entity at {ENTITIES:,} entities (rows pre-allocated; tracemalloc)",
        ["container", "bytes/entity"],
    )

    def rxstore_state() -> Any:
        store = DictPosts()
        store.apply([snapshot])
        return store

    def rxstore_churned() -> Any:
        store = DictPosts()
        store.apply([snapshot])
        for batch in updates:
            store.apply(batch)
        return store

    def plain_dict() -> Any:
        return {row["id"]: row for row in rows}

    def hamt() -> Any:
        return immutables.Map({row["id"]: row for row in rows})

    cases: list[tuple[str, Callable[[], Any], bool]] = [
        ("rxstore TableStore state (immutables.Map HAMT)", rxstore_state, False),
        ("rxstore TableStore state after 100k UPDATEs (batches of 100)", rxstore_churned, False),
        ("dict (floor, mutable)", plain_dict, True),
        ("immutables.Map (what reactivex/reaktiv/pydux peers hold)", hamt, True),
    ]
    values: dict[str, float] = {}
    for name, build, peer in cases:
        out.step(name)
        per = _traced(build) / ENTITIES
        values[name] = per
        out.advance()
        entity.add([name, per], entity.row(name, f"{ENTITIES} entities", per, "bytes/entity", peer=peer))
    entity.notes.append(f"target: <= 60 bytes/entity of container overhead (now {values[cases[0][0]]:.1f})")

    idle = Table(
        "memory_idle",
        f"6b. Bytes per idle store ({IDLE_STORES:,} stores, tracemalloc)",
        ["store", "bytes/store"],
    )

    def table_stores() -> Any:
        stores = [DictPosts() for _ in range(IDLE_STORES)]
        for store in stores:
            store.state.subscribe(lambda _s: None)
        return stores

    def table_stores_rooted() -> Any:
        stores = [DictPosts() for _ in range(IDLE_STORES)]
        root = RootStore(stores=stores, transport=VirtualLink())
        root.setup_domain_event_handlers()
        return root

    def domain_stores() -> Any:
        return [LikeStore() for _ in range(IDLE_STORES)]

    def behavior_subjects() -> Any:
        subjects: list[BehaviorSubject[Any]] = [BehaviorSubject(immutables.Map()) for _ in range(IDLE_STORES)]
        for subject in subjects:
            subject.subscribe(lambda _s: None)
        return subjects

    def reaktiv_signals() -> Any:
        try:
            from reaktiv import Signal
        except ImportError:
            return None
        return [Signal(immutables.Map()) for _ in range(IDLE_STORES)]

    def pydux_stores() -> Any:
        try:
            import pydux
        except ImportError:
            return None
        return [pydux.create_store(lambda s, a: s or immutables.Map()) for _ in range(IDLE_STORES)]

    idle_cases: list[tuple[str, Callable[[], Any], bool]] = [
        ("rxstore TableStore (1 state subscriber)", table_stores, False),
        ("rxstore TableStore registered in a RootStore", table_stores_rooted, False),
        ("rxstore DomainStore", domain_stores, False),
        ("reactivex BehaviorSubject (1 subscriber)", behavior_subjects, True),
        ("reaktiv Signal", reaktiv_signals, True),
    ]
    if not quick:
        idle_cases.append(("pydux store", pydux_stores, True))
    idle_values: dict[str, float] = {}
    for name, build, peer in idle_cases:
        out.step(name)
        per = _traced(build) / IDLE_STORES
        idle_values[name] = per
        out.advance()
        idle.add([name, per], idle.row(name, "idle store", per, "bytes/store", peer=peer))
    idle.notes.append(
        f"target: <= 6 KB per idle store "
        f"(now {idle_values[idle_cases[1][0]]:,.0f} bytes registered in a root)"
    )
    out.finish()
    return [entity, idle]


def _snapshot_kind() -> Any:
    from rxstore.protocol.events import EventKind

    return EventKind.SNAPSHOT


def _updates(rows: list[dict[str, Any]]) -> list[list[Event]]:
    from benchmarks.inproc import make_payloads
    from rxstore.protocol.events import EventKind, parse_change

    events = []
    for p in make_payloads(ENTITIES):
        p["record"] = rows[int(p["record"]["id"][1:])]  # reuse the pre-allocated rows
        events.append(Event(EVENT, p, EventKind.CHANGE, p["seq"], parse_change(p)))
    return [events[i : i + 100] for i in range(0, len(events), 100)]
