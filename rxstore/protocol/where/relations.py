"""A relation: an ``in`` term whose values are a column of another served table's rows.

``["channel_id", "in", {"select": "channel_id", "from": "memberships", "where":
[["user_id", "=", {"claim": "sub"}]]}]`` follows the messages of the channels the
user is a member of. The subquery is one level deep (its own where clause has no
relation), its where clause is an AND of terms and groups like any other (claims
included), and its ``select`` column's NULLs are left out, so that the database
(``IN (SELECT ... AND col IS NOT NULL)``) and the gateway (the values it holds)
agree. The gateway keeps the subquery's values per subscription and moves the
rows in and out when the related table changes (see docs/live_queries.md,
"Relations").

Example:
    >>> from rxstore.protocol.where.terms import Term
    >>> mine = Relation("channel_id", "memberships", (Term("user_id", "=", "alice"),))
    >>> mine.to_wire()
    {'select': 'channel_id', 'from': 'memberships', 'where': [['user_id', '=', 'alice']]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from rxstore.protocol.where.groups import Condition

__all__ = ["MAX_RELATION_VALUES", "RELATION_KEYS", "Relation"]

MAX_RELATION_VALUES: Final = 1000
"""Most rows of the related table one relation may select (the values the gateway keeps)."""
RELATION_KEYS: Final = frozenset({"select", "from", "where"})
"""The keys of a relation's wire form (``where`` may be left out)."""


@attrs.frozen(cache_hash=True)
class Relation:
    """The values of ``select`` in the rows of ``topic`` that satisfy ``where`` (NULLs left out).

    Attributes:
        select: The related table's column whose values the term takes.
        topic: The related table (``"from"`` on the wire); a served topic.
        where: Its conditions (terms and groups, no relation), all of which must hold.
    """

    select: str
    topic: str
    where: tuple[Condition, ...] = ()

    def selects(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` of the related table satisfies the subquery's where clause."""
        for condition in self.where:  # noqa: SIM110  (a loop: it runs per related change)
            if not condition.matches(row):
                return False
        return True

    def selected(self, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
        """The ``select`` values of the ``rows`` it selects, NULLs left out, one per row."""
        select = self.select
        return [value for row in rows if (value := row.get(select)) is not None and self.selects(row)]

    def values(self, rows: Iterable[Mapping[str, Any]]) -> frozenset[Any]:
        """The ``select`` values of the ``rows`` it selects, NULLs left out: the term's values."""
        return frozenset(self.selected(rows))

    def too_many(self, bound: int = MAX_RELATION_VALUES) -> str:
        """Why a subscription whose subquery selects more than ``bound`` rows is refused."""
        return (
            f"the subquery on {self.topic!r} selects more than {bound} rows "
            "(MAX_RELATION_VALUES): narrow its where clause"
        )

    def to_wire(self) -> dict[str, Any]:
        """``{"select": column, "from": table, "where": [...]}``."""
        return {
            "select": self.select,
            "from": self.topic,
            "where": [condition.to_wire() for condition in self.where],
        }
