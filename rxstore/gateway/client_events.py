"""What clients send: mutations (run once per id), broadcasts, and the application's own events.

A mutation is ``{"id", "name", "args"}``: its handler turns it into
statements, the change log runs them in one transaction and remembers the id
with a fingerprint of the name and arguments, so a retry after a lost
acknowledgement is acknowledged again without being applied twice, and an id
reused for another mutation is refused (``mutation_id_reused``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rxstore.gateway.access.packets import BadPayload
from rxstore.gateway.api import Handler, MutationHandler, Writes
from rxstore.gateway.delivery.fanout import RedisFanout
from rxstore.gateway.delivery.queues import Client, room
from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.write_faults import WriteFaults, storage_fault
from rxstore.gateway.metrics import Metrics
from rxstore.protocol.errors import AuthError
from rxstore.protocol.events import BROADCAST, CONTROL_PREFIX, MORE, MUTATE, SUBSCRIBE, UNSUBSCRIBE
from rxstore.protocol.presence import PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE_UPDATE

if TYPE_CHECKING:
    from rxstore.gateway.live_queries import LiveQueries
    from rxstore.gateway.presence.channels import PresenceChannels

__all__ = ["MAX_MUTATION_ID", "SOCKETIO_RESERVED", "ClientEvents", "fingerprint"]

WRITE_RETRY_AFTER = 0.5
"""Seconds a client waits before it resends a mutation the database could not take."""

log = logging.getLogger("rxstore.gateway")

MAX_MUTATION_ID = 128
"""Longest mutation id, in characters."""
SOCKETIO_RESERVED = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
"""Event names Socket.IO clients give a meaning of their own: never broadcast under them."""


def fingerprint(name: Any, args: Any) -> str:
    """Digest of a mutation's name and arguments: tells a retry from a reused id."""
    try:
        text = json.dumps([name, args], sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):  # e.g. msgpack maps with keys of mixed types
        text = repr([name, args])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class ClientEvents:
    """Answers the events a connected client sends, with the acknowledgement it gets back.

    Args:
        log: The change log mutations are applied to.
        sio: The gateway's Socket.IO server (client broadcasts are emitted through it).
        metrics: The gateway's metrics.
        fanout: The Redis fan-out, if any (a broadcast is refused while it is deaf).
        change_events: Event names of the topics' changes (never broadcast by clients).
        max_in_flight: Most events of one connection handled at once; one more is
            refused at once with ``too_many_requests``.
    """

    def __init__(
        self,
        log: ChangeLog,
        sio: Any,
        metrics: Metrics,
        fanout: RedisFanout | None,
        change_events: frozenset[str],
        max_in_flight: int = 64,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.log = log
        self.sio = sio
        self.metrics = metrics
        self.fanout = fanout
        self.change_events = change_events
        self.handlers: dict[str, Handler] = {}
        self.mutations: dict[str, MutationHandler] = {}
        self.live_queries: LiveQueries
        """Serves ``rxstore:subscribe`` / ``rxstore:unsubscribe`` (set by the gateway)."""
        self.presence: PresenceChannels
        """Serves ``rxstore:presence_join`` / ``_update`` / ``_leave`` (set by the gateway)."""
        self.write_faults = WriteFaults()
        """Whether the database takes the mutations' writes now (shown by ``/healthz``)."""

    def reject(self, error: str, message: str) -> dict[str, Any]:
        """A refusal acknowledgement, counted in ``rxstore_bad_input{reason}``."""
        self.metrics.bad_input.labels(error).inc()
        return {"ok": False, "error": error, "message": message}

    async def handle(self, client: Client, event: str, args: tuple[Any, ...]) -> dict[str, Any]:
        """Run a client's event (a mutation, a broadcast or an application handler); its acknowledgement.

        The event counts against ``max_in_flight`` from its receipt (before this
        coroutine first waits) to its acknowledgement, so a client that sends many
        at once without waiting gets exactly the limit handled and the rest refused.
        """
        if client.in_flight >= self.max_in_flight:
            return self.reject(
                "too_many_requests",
                f"{client.in_flight} events of this connection are in flight (max_in_flight="
                f"{self.max_in_flight}); wait for their acknowledgements and send again",
            )
        client.in_flight += 1
        gauge = self.metrics.requests_in_flight
        gauge.inc()
        try:
            return await self._handle(client, event, args)
        finally:
            client.in_flight -= 1
            gauge.dec()

    async def _handle(self, client: Client, event: str, args: tuple[Any, ...]) -> dict[str, Any]:
        if client.expires is not None and time.time() >= client.expires:
            return self.reject("token_expired", "the token expired: reconnect with a fresh one")
        if args and type(args[0]) is BadPayload:  # refused while decoding: see rxstore.gateway.access.guard
            return self.reject("invalid_payload", args[0].message)
        if len(args) > 1:
            return self.reject("invalid_payload", f"{event!r} takes one argument, got {len(args)}")
        data = args[0] if args else None
        if event == MUTATE:
            return await self.mutate(client, data)
        if event == BROADCAST:
            return await self.broadcast(client, data)
        if event == SUBSCRIBE:
            return await self.live_queries.subscribe(client, data)
        if event == UNSUBSCRIBE:
            return await self.live_queries.unsubscribe(client, data)
        if event == MORE:
            return await self.live_queries.more(client, data)
        if event == PRESENCE_JOIN:
            return await self.presence.join(client, data)
        if event == PRESENCE_UPDATE:
            return await self.presence.update(client, data)
        if event == PRESENCE_LEAVE:
            return await self.presence.leave(client, data)
        handler = self.handlers.get(event)
        if handler is None:
            self.metrics.bad_input.labels("unknown_event").inc()
            return {"ok": False, "error": "unknown_event", "message": f"the gateway has no {event!r} handler"}
        try:
            result = await handler(client.user, data)
        except AuthError as exc:
            self.metrics.bad_input.labels(exc.reason).inc()
            return {"ok": False, "error": exc.reason, "message": str(exc)}
        except (ValueError, TypeError, KeyError) as exc:
            self.metrics.bad_input.labels("invalid_payload").inc()
            return {"ok": False, "error": "invalid_payload", "message": str(exc)}
        except Exception:
            log.exception("[RealtimeGateway] handler for %r failed", event)
            return {"ok": False, "error": "internal_error"}
        return {"ok": True, "result": result}

    async def mutate(self, client: Client, data: Any) -> dict[str, Any]:
        """Apply a mutation once per id; a retry gets the first application's acknowledgement."""
        if not isinstance(data, Mapping):
            return self.reject("invalid_payload", "a mutation is {'id': str, 'name': str, 'args': ...}")
        mutation, name = data.get("id"), data.get("name")
        if not isinstance(mutation, str) or not 0 < len(mutation) <= MAX_MUTATION_ID:
            return self.reject(
                "invalid_payload", f"mutation 'id' must be a string of 1-{MAX_MUTATION_ID} chars"
            )
        handler = self.mutations.get(name) if isinstance(name, str) else None
        if handler is None:
            return self.reject("unknown_mutation", f"the gateway has no mutation {name!r}")
        try:
            writes = await handler(client.user, data.get("args"))
        except (AuthError, PermissionError) as exc:
            return self.reject("forbidden", str(exc))
        except (ValueError, TypeError, KeyError) as exc:
            return self.reject("invalid_payload", str(exc) or type(exc).__name__)
        if not isinstance(writes, Writes):
            writes = Writes(list(writes))
        digest = fingerprint(name, data.get("args"))
        user = client.user.id
        try:
            applied = await self.log.apply_mutation(
                mutation, user, writes.statements, fingerprint=digest, result=writes.result
            )
            self.write_faults.succeeded()
            if applied:
                return {"ok": True, "result": writes.result, "duplicate": False}
            previous = await self.log.applied_mutation(mutation, user)
        except Exception as exc:
            fault = storage_fault(exc)
            if fault is not None:  # the database's state, not the mutation's: the client resends it
                return self._unwritable(name, user, fault)
            log.warning("[RealtimeGateway] mutation %r of %s failed: %s", name, user, exc)
            return self.reject("rejected", f"the database refused the mutation: {exc}")
        # A retry: acknowledge it with what the first application acknowledged.
        if previous is None:  # forgotten meanwhile (trimmed with the log)
            return {"ok": True, "result": writes.result, "duplicate": True}
        if previous.fingerprint and previous.fingerprint != digest:
            return self.reject(
                "mutation_id_reused",
                f"mutation id {mutation!r} was used before for another mutation or other arguments; "
                "give every mutation a new id (retries keep theirs)",
            )
        return {"ok": True, "result": previous.result, "duplicate": True}

    def _unwritable(self, name: Any, user: str, fault: str) -> dict[str, Any]:
        """Answer a mutation the database cannot take now: ``unavailable``, resent after ``retry_after``."""
        faults = self.write_faults
        faults.failed(fault)
        self.metrics.write_faults.inc()
        if faults.failures == 1 or faults.failures % 100 == 0:  # one line when it starts, then now and then
            log.error(
                "[RealtimeGateway] the database takes no writes (%s): mutation %r of %s not applied; "
                "clients resend it (%d refused so far)",
                fault,
                name,
                user,
                faults.failures,
            )
        return {
            "ok": False,
            "error": "unavailable",
            "message": f"the database takes no writes now ({fault}); resend the mutation later",
            "retry_after": WRITE_RETRY_AFTER,
        }

    async def broadcast(self, client: Client, data: Any) -> dict[str, Any]:
        """Relay a client's broadcast to the other subscribers of a topic, on every node."""
        if not isinstance(data, Mapping):
            return self.reject("invalid_payload", "a broadcast is {'topic': str, 'event': str, 'data': ...}")
        topic, event = data.get("topic"), data.get("event")
        if not isinstance(topic, str) or topic not in client.topics:
            return self.reject("forbidden_topic", f"broadcast to {topic!r}: not a subscribed topic")
        if not isinstance(event, str) or not event or len(event) > 100:
            return self.reject("invalid_payload", "broadcast 'event' must be a name of 1-100 chars")
        if event.startswith(CONTROL_PREFIX) or event in self.change_events:
            return self.reject("forbidden", f"{event!r} is reserved for the change log")
        if event in SOCKETIO_RESERVED:
            return self.reject("forbidden", f"{event!r} is reserved by Socket.IO")
        if self.fanout is not None and not self.fanout.healthy:
            return self.reject(
                "unavailable", "the gateways' Redis is down: the broadcast would not reach all"
            )
        message = {"from": client.user.id, "topic": topic, "data": data.get("data")}
        await self.sio.emit(event, message, room=room(topic), skip_sid=client.sid)
        return {"ok": True}
