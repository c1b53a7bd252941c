"""rxstore: reactive stores kept live over Socket.IO.

One :class:`RootStore` owns the connection to a gateway and turns every
socket event into a hot stream of :class:`Event` values; each
:class:`DomainStore` folds the events it accepts into a ``BehaviorSubject``
state, and each :class:`TableStore` mirrors a database table, exactly once
per change, across reconnects. :func:`derived` computes a value from several
stores, once per change, for all its subscribers.
"""

from rxstore.client.connection import Backoff, ConnectionState, ConnectionStatus, Retry
from rxstore.client.metrics import Metrics, MetricsSnapshot
from rxstore.client.recorder import Recorder, Recording, RecordLimits
from rxstore.client.root import RootStore
from rxstore.client.transport import SocketIOTransport, Transport
from rxstore.persist import PendingMutation, Persist, StateCodec
from rxstore.protocol.errors import (
    AuthError,
    CallRejected,
    CallTimeout,
    ConnectError,
    ConnectionRefused,
    LiveTimeout,
    NotConnected,
    OutboxFull,
    PersistError,
    ProtocolError,
    RecordingError,
    RxStoreError,
    StoreError,
    TokenProviderError,
    TransportError,
    ValidationError,
)
from rxstore.protocol.events import Change, Event, EventKind, Op, Snapshot
from rxstore.protocol.presence import Member
from rxstore.protocol.subsets import Subset, SubsetError
from rxstore.protocol.where.claims import Claim
from rxstore.protocol.where.groups import Group
from rxstore.protocol.where.terms import Term
from rxstore.stores.derived import Derived, derived
from rxstore.stores.domain import DomainStore, RealtimeStore
from rxstore.stores.presence import PresenceDelta, PresenceState, PresenceStore
from rxstore.stores.status import SyncState, SyncStatus
from rxstore.stores.table import TableState, TableStore

__all__ = [
    "AuthError",
    "Backoff",
    "CallRejected",
    "CallTimeout",
    "Change",
    "Claim",
    "ConnectError",
    "ConnectionRefused",
    "ConnectionState",
    "ConnectionStatus",
    "Derived",
    "DomainStore",
    "Event",
    "EventKind",
    "Group",
    "LiveTimeout",
    "Member",
    "Metrics",
    "MetricsSnapshot",
    "NotConnected",
    "Op",
    "OutboxFull",
    "PendingMutation",
    "Persist",
    "PersistError",
    "PresenceDelta",
    "PresenceState",
    "PresenceStore",
    "ProtocolError",
    "RealtimeStore",
    "RecordLimits",
    "Recorder",
    "Recording",
    "RecordingError",
    "Retry",
    "RootStore",
    "RxStoreError",
    "Snapshot",
    "SocketIOTransport",
    "StateCodec",
    "StoreError",
    "Subset",
    "SubsetError",
    "SyncState",
    "SyncStatus",
    "TableState",
    "TableStore",
    "Term",
    "TokenProviderError",
    "Transport",
    "TransportError",
    "ValidationError",
    "derived",
]

__version__ = "0.1.0"
