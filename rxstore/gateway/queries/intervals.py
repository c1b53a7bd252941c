"""A range of one column that a subscription is filed under: a lower and an upper bound term.

An :class:`Interval` is the AND of at most one lower bound (``>``, ``>=``) and one upper
bound (``<``, ``<=``) on one column, taken from a where clause (``likes > 3``,
``ts >= 10 AND ts < 20``, or a negated term: ``NOT (likes < 3)`` is ``likes >= 3``). Every
row the clause holds for has its column in one of the subscription's intervals (see
:func:`~rxstore.gateway.queries.index.index_keys`), so the
:class:`~rxstore.gateway.queries.ranges.RangeIndex` can find the subscription by the row's
value.

Example:
    >>> week = Interval("ts", Term("ts", ">=", 10), Term("ts", "<", 20))
    >>> week.holds({"ts": 10}), week.holds({"ts": 20}), week.holds({"ts": None})
    (True, False, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from rxstore.protocol.subsets import Term

__all__ = ["Interval"]


@attrs.frozen(cache_hash=True)
class Interval:
    """``lower AND upper`` on ``column``; a missing bound is unbounded (at least one is set).

    Attributes:
        column: The column both bounds compare.
        lower: A ``>`` / ``>=`` term on it, or ``None``.
        upper: A ``<`` / ``<=`` term on it, or ``None``.
    """

    column: str
    lower: Term | None = None
    upper: Term | None = None

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether the row's value is in the interval (as the terms match: a NULL never is)."""
        lower, upper = self.lower, self.upper
        return (lower is None or lower.matches(row)) and (upper is None or upper.matches(row))
