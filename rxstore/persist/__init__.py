"""A client's state on disk: ``RootStore(persist="app-state.db")`` (see docs/offline.md).

The rows of every table store, the opted-in domain stores' states, the cursor
and the log's epoch, and the mutations not yet settled, in one SQLite file
written behind the stream: restarts resume from the cursor instead of taking
snapshots, an app starts offline on what the file holds, and a mutation
accepted offline survives a ``kill -9``.
"""

from rxstore.persist.codec import PersistCodec, StateCodec
from rxstore.persist.file import FORMAT
from rxstore.persist.metrics import PersistMetrics
from rxstore.persist.mutation import PendingMutation
from rxstore.persist.options import Persist
from rxstore.persist.persister import Persister

__all__ = [
    "FORMAT",
    "PendingMutation",
    "Persist",
    "PersistCodec",
    "PersistMetrics",
    "Persister",
    "StateCodec",
]
