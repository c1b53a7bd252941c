"""Live queries at runtime: checking subscriptions, ``rxstore:subscribe`` / ``unsubscribe`` / ``more``.

:class:`LiveQueries` owns the gateway's :class:`~rxstore.gateway.queries.index.SubscriptionIndex`
and each client's subscriptions. It checks a subscription against the served
topics and ``can_subscribe``, fills in its ``{"claim": ...}`` values from the
client's token, checks it against the table's columns (:func:`check_subset`),
files it, and serves a switch: the old subset is unfiled and every frame
already queued for it written before the new subset's snapshot is sent, so no
row of the old subset arrives after the acknowledgement.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rxstore.gateway.access.auth import User
from rxstore.gateway.delivery.pages import Pages
from rxstore.gateway.delivery.queues import Client, Delivery, room
from rxstore.gateway.delivery.sync import Sync
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.subset_sql import check_relation, check_subset
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.queries.index import SubscriptionIndex
from rxstore.gateway.queries.subscriptions import Subscription
from rxstore.protocol.paging import BAD_REQUEST, more_of, widened
from rxstore.protocol.subsets import Subset, SubsetError, parse_subscription, terms_in

__all__ = ["LiveQueries"]

log = logging.getLogger("rxstore.gateway")


class LiveQueries:
    """The subscriptions of every client, and the index the tailer routes changes with.

    Args:
        log: The change log (for the tables' columns).
        sio: The gateway's Socket.IO server (rooms of client broadcasts).
        delivery: The clients' send queues.
        sync: Snapshots and replays.
        metrics: The gateway's metrics.
        names: Topic -> event name of its whole-table subscription.
        primary_keys: Topic -> primary key.
        key_only: Topics whose envelopes carry only the old row's key.
        may_subscribe: ``(user, topic) -> bool``, failing closed.
        max_subscriptions: Most subscriptions one client may hold.
    """

    def __init__(
        self,
        log: ChangeLog,
        sio: Any,
        delivery: Delivery,
        sync: Sync,
        metrics: Metrics,
        *,
        names: Mapping[str, str],
        primary_keys: Mapping[str, str],
        key_only: Iterable[str],
        may_subscribe: Callable[[User, str], bool],
        max_subscriptions: int,
    ) -> None:
        self.log = log
        self.sio = sio
        self.delivery = delivery
        self.sync = sync
        self.metrics = metrics
        self.names = names
        self.primary_keys = primary_keys
        self.key_only = frozenset(key_only)
        self.may_subscribe = may_subscribe
        self.max_subscriptions = max_subscriptions
        self.index = SubscriptionIndex[Subscription]()
        self._subsets: weakref.WeakValueDictionary[Subset, Subset] = weakref.WeakValueDictionary()
        """Every subset followed, once: equal subsets are one object (the tailer compares them by id)."""
        self.pages = Pages(log, delivery, sync, metrics, authorize=sync.authorize, slots=sync.shared.slots)
        """Widens windows (``rxstore:more``)."""
        self.plain: dict[str, Client] = {}
        """The tailer's whole-table-only clients: an indexed client leaves it (set by the gateway)."""
        self._event_topics = {event: topic for topic, event in names.items()}
        self._kinds: dict[str, dict[str, str]] = {}

    # -- checks -----------------------------------------------------------------

    async def check(self, user: User, sub_id: str, subset: Subset) -> Subset:
        """Check that ``user`` may follow ``subset`` under ``sub_id``; the subset with its claims filled in.

        Each ``{"claim": name}`` value becomes the value of that claim of
        ``user``'s token (:meth:`Subset.resolve <rxstore.protocol.subsets.Subset.resolve>`),
        after ``can_subscribe`` allowed the topic and before the values are
        checked against the table's columns.

        Raises:
            SubsetError: ``forbidden_topic`` (not served, or ``can_subscribe`` denies),
                ``invalid_subscription`` (the id is another topic's event name, a claim
                the token lacks, an unknown column, an operator on a column that cannot
                take it, a value of the wrong type).
        """
        topic = subset.topic
        if topic not in self.names:
            raise SubsetError(f"no such topic {topic!r}", code="forbidden_topic")
        if not self.may_subscribe(user, topic):
            raise SubsetError(f"{user.id!r} may not subscribe to {topic!r}", code="forbidden_topic")
        owner = self._event_topics.get(sub_id)
        if owner is not None and owner != topic:
            raise SubsetError(
                f"subscription id {sub_id!r} is the event name of topic {owner!r}; pick another"
            )
        if subset.whole:
            return subset
        subset = subset.resolve(user.claims)
        kinds = self._kinds.get(topic)
        if kinds is None or not _known(subset, kinds):
            kinds = self._kinds[topic] = await self.log.columns(topic)  # new or changed table: read again
        check_subset(subset, kinds, self.primary_keys[topic])
        if subset.relation is not None:
            await self._check_relation(user, subset, kinds)
        return subset

    async def _check_relation(self, user: User, subset: Subset, kinds: Mapping[str, str]) -> None:
        """Check a relation term: its table served, not the subset's own, allowed, its columns known."""
        term = subset.relation
        assert term is not None
        related = term.value.topic
        if related not in self.names or related == subset.topic:
            problem = "is not served" if related != subset.topic else "is the subset's own table"
            raise SubsetError(f"the subquery's table {related!r} {problem}", code="forbidden_topic")
        if not self.may_subscribe(user, related):
            raise SubsetError(
                f"{user.id!r} may not subscribe to {related!r}, which the subquery reads",
                code="forbidden_topic",
            )
        check_relation(subset, kinds, await self.log.columns(related))

    def new(self, client: Client, sub_id: str, subset: Subset, since: int | None = None) -> Subscription:
        """A subscription of ``client`` (not filed yet); its subset the one object of that value."""
        topic = subset.topic
        subset = self._subsets.setdefault(subset, subset)
        return Subscription(
            sub_id,
            subset,
            client.sid,
            client.user,
            self.primary_keys[topic],
            key_only=topic in self.key_only,
            since=-1 if since is None else since,
        )

    # -- filing -----------------------------------------------------------------

    def index_client(self, client: Client, subscriptions: Iterable[Subscription] = ()) -> None:
        """Make ``client`` indexed: its whole-table topics and ``subscriptions`` go in the index."""
        self.plain.pop(client.sid, None)
        if not client.subscriptions:
            for topic in sorted(client.topics):
                whole = self.new(client, self.names[topic], Subset(topic))
                whole.skip = client.skip
                whole.since = -1
                self._file(client, whole)
            client.skip = frozenset()
        for sub in subscriptions:
            self._file(client, sub)
        client.topics = frozenset(s.topic for s in client.subscriptions.values())

    def _file(self, client: Client, sub: Subscription) -> None:
        if client.gone:  # a request that began before it left must not index it again
            return
        old = client.subscriptions.get(sub.id)
        if old is not None:
            self._unfile(client, old)
        client.subscriptions[sub.id] = sub
        for topic in _tables(sub):
            client.by_topic[topic] = (*client.by_topic.get(topic, ()), sub)
        self.index.add(sub)
        self.metrics.subscriptions.set(self.index.count)

    def _unfile(self, client: Client, sub: Subscription) -> None:
        client.subscriptions.pop(sub.id, None)
        for topic in _tables(sub):
            rest = tuple(s for s in client.by_topic.get(topic, ()) if s is not sub)
            if rest:
                client.by_topic[topic] = rest
            else:
                client.by_topic.pop(topic, None)
        self.index.remove(sub)
        self.metrics.subscriptions.set(self.index.count)

    def forget(self, client: Client) -> None:
        """Unfile every subscription of a client that went."""
        for sub in list(client.subscriptions.values()):
            self._unfile(client, sub)

    # -- client events ------------------------------------------------------------

    async def subscribe(self, client: Client, data: Any) -> dict[str, Any]:
        """``rxstore:subscribe``: follow a subset, or switch one; acknowledged after its snapshot.

        A new id takes one of ``max_subscriptions`` on receipt, before this coroutine
        first waits, and keeps it while it is in flight; the requests of one
        connection (subscribes and unsubscribes) take effect in the order sent.
        """
        try:
            sub_id, subset, _ = parse_subscription(data)
        except SubsetError as exc:
            return self._reject(exc)
        if not self._reserve(client, sub_id):
            return self._reject(
                SubsetError(
                    f"a client may hold {self.max_subscriptions} subscriptions (those being subscribed "
                    "included); unsubscribe one first",
                    code="too_many_subscriptions",
                )
            )
        try:
            async with client.lock:  # FIFO: taken in the order the requests arrived
                return await self._subscribe(client, sub_id, subset)
        finally:
            self._release(client, sub_id)

    def _held(self, client: Client) -> set[str]:
        """The ids of ``client``'s subscriptions, held or being subscribed."""
        if client.subscriptions:
            held = set(client.subscriptions)
        else:  # whole-table topics of a client not indexed yet: their ids are their events
            held = {self.names[topic] for topic in client.topics}
        held.update(client.reserved)
        return held

    def _reserve(self, client: Client, sub_id: str) -> bool:
        """Take a place for ``sub_id`` among ``client``'s subscriptions; ``False``: none is left."""
        reserved = client.reserved
        if sub_id not in reserved:
            held = self._held(client)
            if sub_id not in held and len(held) >= self.max_subscriptions:
                return False
        reserved[sub_id] = reserved.get(sub_id, 0) + 1
        return True

    def _release(self, client: Client, sub_id: str) -> None:
        reserved = client.reserved
        left = reserved[sub_id] - 1
        if left:
            reserved[sub_id] = left
        else:
            del reserved[sub_id]

    async def _subscribe(self, client: Client, sub_id: str, subset: Subset) -> dict[str, Any]:
        try:
            subset = await self.check(client.user, sub_id, subset)
        except SubsetError as exc:
            return self._reject(exc)
        if client.live:  # it has every change up to the head (kept lazily by the tailer)
            client.cursor = max(client.cursor or 0, self.sync.head())
        client.live = False  # the tailer leaves it to the replay below
        self.index_client(client)
        # A switched id keeps its old subset filed until the new one's snapshot is sent (``_file``
        # replaces it): a switch refused while it is read leaves the connection as it was.
        sub = self.new(client, sub_id, subset)
        seq = await self.sync.guarded(client, self._switch(client, sub))
        if seq is None:
            return {"ok": False, "error": "internal_error", "message": "the subscription failed; reconnect"}
        if isinstance(seq, SubsetError):
            return self._reject(seq)
        return {"ok": True, "seq": seq}

    async def _switch(self, client: Client, sub: Subscription) -> int | SubsetError:
        await self.delivery.drain(client)  # every frame of the old subset is written
        try:
            seq = await self.sync.snapshot_subscriptions(client, [sub], refuse=True)
        except SubsetError as exc:  # a relation over its bound: nothing of it was sent
            await self.sync.catch_up(client)
            return SubsetError(f"subscription {sub.id!r}: {exc}")
        if client.gone:  # it left while the snapshot was read: nothing to file, no room to enter
            return seq
        self._file(client, sub)
        client.topics = frozenset(s.topic for s in client.subscriptions.values())
        await self.sio.enter_room(client.sid, room(sub.topic))
        await self.sync.catch_up(client)
        return seq

    async def unsubscribe(self, client: Client, data: Any) -> dict[str, Any]:
        """``rxstore:unsubscribe``: acknowledged once no event of the subscription can follow."""
        sub_id = data.get("id") if type(data) is dict else None
        if type(sub_id) is not str:
            return self._reject(SubsetError("rxstore:unsubscribe takes {'id': '<subscription id>'}"))
        async with client.lock:
            self.index_client(client)
            sub = client.subscriptions.get(sub_id)
            if sub is None:
                return self._reject(SubsetError(f"no subscription {sub_id!r} on this connection"))
            self._unfile(client, sub)
            client.topics = frozenset(s.topic for s in client.subscriptions.values())
            if sub.topic not in client.topics:
                await self.sio.leave_room(client.sid, room(sub.topic))
            if not await self.sync.guarded(client, self.delivery.drain(client)):
                return {"ok": False, "error": "internal_error", "message": "the client was dropped"}
        return {"ok": True}

    async def more(self, client: Client, data: Any) -> dict[str, Any]:
        """``rxstore:more``: widen a window by ``n`` rows; acknowledged once they are sent.

        The acknowledgement is ``{"ok": true, "seq": P, "added": k, "limit": new limit}``
        (see :mod:`~rxstore.gateway.delivery.pages`); a bad request changes nothing.
        """
        try:
            sub_id, n = more_of(data)
        except SubsetError as exc:
            return self._reject(exc)
        async with client.lock:  # after the subscribes sent before it
            sub = client.subscriptions.get(sub_id)
            if sub is None:
                return self._reject(
                    SubsetError(f"more: no subscription {sub_id!r} on this connection", code=BAD_REQUEST)
                )
            try:
                subset = widened(sub.subset, n)
            except SubsetError as exc:
                return self._reject(SubsetError(f"subscription {sub_id!r}: {exc}", code=exc.code))
            done = await self.sync.guarded(client, self.pages.more(client, sub, subset))
        if done is None:
            return {"ok": False, "error": "internal_error", "message": "the page failed; reconnect"}
        seq, added = done
        return {"ok": True, "seq": seq, "added": added, "limit": subset.limit}

    def _reject(self, exc: SubsetError) -> dict[str, Any]:
        self.metrics.bad_input.labels(exc.code).inc()
        return {"ok": False, "error": exc.code, "message": str(exc)}


def _tables(sub: Subscription) -> tuple[str, ...]:
    """The tables whose changes concern ``sub``: its own, and a relation's related table."""
    term = sub.subset.relation if sub.relational else None
    return (sub.topic,) if term is None else (sub.topic, term.value.topic)


def _known(subset: Subset, kinds: Mapping[str, str]) -> bool:
    """Whether every column ``subset`` names is in ``kinds`` (else the table may have changed)."""
    names = [term.column for term in terms_in(subset.where)]
    names.extend(subset.columns or ())
    return all(name in kinds for name in names)
