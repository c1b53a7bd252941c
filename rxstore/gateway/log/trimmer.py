"""The change log's retention: trimmed every ``interval`` seconds, a refused trim on ``/healthz``.

A trim deletes the log's oldest changes (past ``max_age`` or ``max_rows``). When the
database refuses it for a storage fault (a full disk, a lock held elsewhere, a
read-only or restarting PostgreSQL: :func:`~rxstore.gateway.log.write_faults.storage_fault`),
the log keeps its changes and grows meanwhile: the gateway's
:class:`~rxstore.gateway.log.write_faults.WriteFaults` say so on ``/healthz`` (``writes``,
a warning) and ``rxstore_write_faults_total`` counts it, the log gets one ERROR line when
it starts (then one per 100), and the next interval tries again; a trim that deletes
changes again clears it. Any other failure is logged as a warning and tried again too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from rxstore.gateway.log.contract import ChangeLog
from rxstore.gateway.log.write_faults import WriteFaults, storage_fault

__all__ = ["Trimmer"]

log = logging.getLogger("rxstore.gateway")


class Trimmer:
    """Trims ``log`` to ``max_age`` / ``max_rows`` (a gateway's ``Retention``); tells refused trims.

    Args:
        log: The change log.
        max_age: Seconds a change is kept (``None``: no age limit).
        max_rows: Most changes kept (``None``: no size limit).
        interval: Seconds between trims.
        faults: The gateway's write faults (what ``/healthz`` shows).
        counted: Called once per refused trim (``rxstore_write_faults_total``).
    """

    def __init__(
        self,
        log: ChangeLog,
        *,
        max_age: float | None,
        max_rows: int | None,
        interval: float,
        faults: WriteFaults,
        counted: Callable[[], None],
    ) -> None:
        self.log = log
        self.max_age = max_age
        self.max_rows = max_rows
        self.interval = interval
        self.faults = faults
        self._counted = counted

    async def run(self) -> None:
        """Trim every ``interval`` seconds, forever."""
        while True:
            await asyncio.sleep(self.interval)
            await self.trim()

    async def trim(self) -> int:
        """Trim once; the changes removed (0 when it failed: it is told, not raised)."""
        try:
            removed = await self.log.trim(max_age=self.max_age, max_rows=self.max_rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            fault = storage_fault(exc)
            if fault is None:
                log.warning("[RealtimeGateway] trimming the change log failed: %s", exc)
                return 0
            faults = self.faults
            faults.failed(f"trimming the change log: {fault}")
            self._counted()
            if faults.failures == 1 or faults.failures % 100 == 0:
                log.error(
                    "[RealtimeGateway] the database takes no writes (%s): the change log is not "
                    "trimmed and grows; trying again in %g s",
                    fault,
                    self.interval,
                )
            return 0
        if removed:
            self.faults.succeeded()  # it wrote: the database takes writes again
            log.info("[RealtimeGateway] trimmed %d changes from the log", removed)
        return removed
