"""What ``rxstore inspect --table`` names: a table, or a subset of it, and the store that follows it."""

from __future__ import annotations

import json
from typing import Any

import attrs

from rxstore.protocol.subsets import SubsetError, WhereSpec, terms_of
from rxstore.stores.table import TableStore

__all__ = ["TableSpec"]


@attrs.frozen
class TableSpec:
    """A table to follow, whole or the rows a where clause keeps.

    Attributes:
        table: The table (topic) name.
        where: The where clause (docs/live_queries.md: ``{"col": value}`` or a list of
            terms and groups); ``None``: the whole table.
        key: The column that identifies a row.

    Example:
        >>> TableSpec.parse('posts={"author": "ann"}')
        TableSpec(table='posts', where={'author': 'ann'}, key='id')
        >>> TableSpec.parse("posts").label
        'posts'
    """

    table: str
    where: WhereSpec = None
    key: str = "id"

    @classmethod
    def parse(cls, text: str, *, key: str = "id") -> TableSpec:
        """Read ``NAME`` or ``NAME=WHERE`` (WHERE as JSON); the where clause is checked here.

        Raises:
            SubsetError: No name, WHERE is not JSON, or not a valid where clause (the message says why).
        """
        table, equals, where_text = text.partition("=")
        table = table.strip()
        if not table:
            raise SubsetError(f"{text!r}: name a table: NAME or NAME=WHERE (WHERE as JSON)")
        if not equals:
            return cls(table, None, key)
        try:
            where: Any = json.loads(where_text)
        except ValueError as exc:
            raise SubsetError(
                f'{text!r}: WHERE is not JSON ({exc}); e.g. posts=\'{{"author": "ann"}}\''
            ) from exc
        try:
            terms_of(where)
        except SubsetError as exc:
            raise SubsetError(f"{text!r}: {exc}") from exc
        return cls(table, where, key)

    @property
    def label(self) -> str:
        """The table, and its where clause as JSON when it has one."""
        if self.where is None:
            return self.table
        return f"{self.table} {json.dumps(self.where, separators=(',', ':'))}"

    def store(self, event: str | None = None) -> TableStore[Any]:
        """A new table store of rows as dicts following this table (a subset under ``event``)."""
        kind = type(f"Inspected_{self.table}", (TableStore,), {"table": self.table, "primary_key": self.key})
        store: TableStore[Any] = kind(name=self.label, where=self.where, event=event)
        return store
