"""The state file's counters (``root.persist.metrics``)."""

from __future__ import annotations

import attrs

__all__ = ["PersistMetrics"]


@attrs.define
class PersistMetrics:
    """Counters of the writes of one state file, bumped on the loop thread.

    Attributes:
        writes: Transactions committed.
        changes: Changes taken from the stream (a row changed 10 times counts 10).
        rows_written: Rows written or deleted (a row changed 10 times in one window counts 1).
        pending_rows: Rows gathered, not yet handed to the writer.
        write_seconds: Seconds spent in the writer thread, in all.
        write_seconds_max: The longest write.
        bytes: The file's size after the last write.
        failures: Writes that failed (tried again while the disk refuses them, else writing stops).
        loaded_rows: Rows loaded from the file at start.
        load_seconds: Seconds the load took (reading and applying).
    """

    writes: int = 0
    changes: int = 0
    rows_written: int = 0
    pending_rows: int = 0
    write_seconds: float = 0.0
    write_seconds_max: float = 0.0
    bytes: int = 0
    failures: int = 0
    loaded_rows: int = 0
    load_seconds: float = 0.0
