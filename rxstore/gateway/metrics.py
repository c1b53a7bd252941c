"""The gateway's Prometheus metrics (``/metrics``); add new ones at the end of :class:`Metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["Metrics"]


class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own (served on ``/metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.clients = Gauge("rxstore_connected_clients", "Connected clients.", registry=r)
        self.changes = Counter("rxstore_changes", "Changes read from the log and broadcast.", registry=r)
        self.sent = Counter("rxstore_events_sent", "Change events sent to clients.", registry=r)
        self.replayed = Counter("rxstore_replayed", "Changes replayed to returning clients.", registry=r)
        self.snapshots = Counter("rxstore_snapshots", "Snapshots sent.", registry=r)
        self.window_refills = Counter(
            "rxstore_window_refills",
            "Windows read again because a row left them full (the next row beyond was not known).",
            registry=r,
        )
        self.relation_moves = Counter(
            "rxstore_relation_moves",
            "Relation subscriptions read again: a change of the related table added or removed a value.",
            registry=r,
        )
        self.relations_ended = Counter(
            "rxstore_relations_ended",
            "Relation subscriptions ended: their subquery selected more than MAX_RELATION_VALUES rows.",
            registry=r,
        )
        self.refused = Counter("rxstore_refused", "Connections refused.", ["reason"], registry=r)
        self.dropped = Counter(
            "rxstore_slow_clients_dropped", "Clients disconnected for falling behind.", registry=r
        )
        self.bad_input = Counter("rxstore_bad_input", "Rejected client events.", ["reason"], registry=r)
        self.write_faults = Counter(
            "rxstore_write_faults",
            "Mutations answered 'unavailable': the database took no writes (disk full, read-only, "
            "locked, down); the clients resend them.",
            registry=r,
        )
        self.head = Gauge("rxstore_head_seq", "Last seq broadcast.", registry=r)
        self.lag = Gauge("rxstore_lag_seconds", "Commit-to-broadcast lag of the last batch.", registry=r)
        self.healthy = Gauge("rxstore_log_healthy", "1 while the database connection is up.", registry=r)
        self.snapshot_frames = Counter(
            "rxstore_snapshot_frames", "Snapshot frames (chunks) sent.", registry=r
        )
        self.snapshots_active = Gauge(
            "rxstore_snapshots_active", "Snapshots being read and sent now.", registry=r
        )
        self.snapshots_waiting = Gauge(
            "rxstore_snapshots_waiting", "Clients waiting for a snapshot slot.", registry=r
        )
        self.queued_bytes = Gauge(
            "rxstore_queued_bytes", "Encoded bytes waiting in every client's send queue.", registry=r
        )
        self.stalled = Counter(
            "rxstore_stalled_clients_dropped",
            "Clients dropped for not accepting a frame within client_send_timeout.",
            registry=r,
        )
        self.authorize_errors = Counter(
            "rxstore_authorize_errors",
            "authorize/can_subscribe calls that raised (the row or topic was denied).",
            registry=r,
        )
        self.expired = Counter(
            "rxstore_sessions_expired", "Sessions ended because their token expired.", registry=r
        )
        self.broadcasts = Counter(
            "rxstore_broadcasts", "Client broadcasts delivered to this node's clients.", registry=r
        )
        self.bad_frames = Counter(
            "rxstore_bad_frames",
            "Client frames refused at the wire, the socket closed (malformed, binary, oversize_closed).",
            ["reason"],
            registry=r,
        )
        self.capture_lag_bytes = Gauge(
            "rxstore_capture_lag_bytes",
            "WAL the capture slot holds and the capture has not confirmed (PostgreSQL WAL capture, leader).",
            registry=r,
        )
        self.capture_lag_seconds = Gauge(
            "rxstore_capture_lag_seconds",
            "Seconds since the WAL capture last had nothing left to read (leader).",
            registry=r,
        )
        self.capture_slots_lost = Gauge(
            "rxstore_capture_slots_lost",
            "Capture slots lost and made anew since start (clients reset and reload each time).",
            registry=r,
        )
        self.capture_retained_bytes = Gauge(
            "rxstore_capture_slot_retained_bytes",
            "WAL the capture slot keeps the server from removing: current WAL position - restart_lsn "
            "(PostgreSQL WAL capture; max_slot_wal_keep_size bounds it).",
            registry=r,
        )
        self.capture_slot_warning = Gauge(
            "rxstore_capture_slot_warning",
            "1 while the capture slot retains over slot_warning_bytes of WAL or is about to be lost, else 0.",
            registry=r,
        )
        self.capture_spooled_parts = Gauge(
            "rxstore_capture_spooled_parts",
            "Parts of transactions bigger than the capture's batch spooled in the database since start.",
            registry=r,
        )
        self.subscriptions = Gauge(
            "rxstore_subscriptions",
            "Live-query subscriptions of indexed clients (whole-table ones of those clients included).",
            registry=r,
        )
        self.handshake_timeouts = Counter(
            "rxstore_handshake_timeouts",
            "Connections closed for not joining the namespace within handshake_timeout.",
            registry=r,
        )
        self.bad_input_log_suppressed = Counter(
            "rxstore_bad_input_log_suppressed",
            "Warnings about bad clients not logged (over bad_input_log_per_minute).",
            registry=r,
        )
        self.direct_writes = Counter(
            "rxstore_direct_writes",
            "Frames written straight to a client's websocket (the rest go through python-engineio).",
            registry=r,
        )
        self.snapshot_reads = Counter(
            "rxstore_snapshot_reads",
            "Snapshot reads of the database; clients that want the same rows at once share one "
            "(fewer than rxstore_snapshots under a storm of first connects).",
            registry=r,
        )
        self.pending_syncs = Gauge(
            "rxstore_pending_syncs",
            "Clients being brought up to date (waiting for or getting a snapshot, or a replay), not yet "
            "live; a connect beyond max_pending_syncs is refused with unavailable + retry_after.",
            registry=r,
        )
        self.catchups = Counter(
            "rxstore_catchups",
            "Live clients over client_queue_limit/client_queue_bytes moved to catch up from the log on "
            "their connection instead of being dropped (RealtimeGateway(behind='catch_up')).",
            registry=r,
        )
        self.catching_up = Gauge(
            "rxstore_catching_up", "Clients catching up from the log now, out of live delivery.", registry=r
        )
        self.requests_in_flight = Gauge(
            "rxstore_requests_in_flight",
            "Client events (calls, mutations, broadcasts, subscriptions) being handled now; one beyond "
            "max_in_flight on its connection is refused with too_many_requests.",
            registry=r,
        )
        self.window_pages = Counter(
            "rxstore_window_pages",
            "rxstore:more answered with a page (the rows after the client's last, nothing sent again); "
            "one answered by reading the widened window whole counts in rxstore_window_refills.",
            registry=r,
        )
        self.presence_members = Gauge(
            "rxstore_presence_members",
            "Presence memberships of this node's connections (one connection in two channels: 2).",
            registry=r,
        )
        self.presence_channels = Gauge(
            "rxstore_presence_channels", "Presence channels with members (every node's).", registry=r
        )
        self.presence_updates = Counter(
            "rxstore_presence_updates",
            "Presence joins, updates and leaves of this node's connections (a dropped client's leaves too).",
            registry=r,
        )
        self.presence_frames = Counter(
            "rxstore_presence_frames",
            "Presence diff frames built for this node's clients (one per channel and change, shared).",
            registry=r,
        )
        self.presence_refused = Counter(
            "rxstore_presence_refused",
            "Presence events refused (forbidden_channel, too_many_members, too_many_channels, "
            "too_many_updates, meta_too_large, invalid_meta, not_joined, bad_request).",
            ["reason"],
            registry=r,
        )
        self.presence_nodes = Gauge(
            "rxstore_presence_nodes", "Other gateway nodes heard from within the presence lease.", registry=r
        )
        self.presence_nodes_expired = Counter(
            "rxstore_presence_nodes_expired",
            "Other nodes taken for dead (silent for the presence lease); their members left.",
            registry=r,
        )
        self.presence_resyncs = Counter(
            "rxstore_presence_resyncs",
            "Whole presence states asked of the other nodes (on subscribing to Redis, again after a Redis "
            "outage) or of one (a gap in its changes, or a node not known yet).",
            registry=r,
        )
