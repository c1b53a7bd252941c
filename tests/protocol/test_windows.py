"""rxstore.protocol.windows: sort keys are plain tuples in SQL's order, and a keyset reads back its values.

A reference comparator (each column's :func:`value_key` compared, reversed for a
descending column, the primary key last) orders random rows of every kind a
column may hold; :func:`sort_key` must give the same order with no Python
comparison of its own, and :func:`keyset_of` must read back the values it placed.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rxstore.protocol.windows import Order, keyset_key, keyset_of, order_of, sort_key, value_key

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True),
    st.sampled_from(["", "a", "ab", "abc", "b", "\x00", "a\x00", "\ud800", "\uffff", "é", "NaN", "Infinity"]),
    st.text(max_size=4),
)
ORDERS = st.sampled_from(
    [order_of([("x", "desc")]), order_of(["x", ("y", "desc")]), order_of([("x", "desc"), ("y", "desc")])]
)


def _reference(order: Order) -> Any:
    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        for column, direction in order:
            ka, kb = value_key(a[column]), value_key(b[column])
            sign = int(ka > kb) - int(ka < kb)
            if sign:
                return sign if direction == "asc" else -sign
        return int(a["id"] > b["id"]) - int(a["id"] < b["id"])

    return functools.cmp_to_key(compare)


@given(ORDERS, st.lists(st.tuples(VALUES, VALUES), max_size=40))
def test_sort_key_orders_as_sql_with_plain_tuples(order: Order, values: list[tuple[Any, Any]]) -> None:
    """Descending text (prefixes, NUL, surrogates), numbers, NaN and NULL sort as the reference says."""
    rows = [{"id": i, "x": x, "y": y} for i, (x, y) in enumerate(values)]
    want = [row["id"] for row in sorted(rows, key=_reference(order))]
    assert [row["id"] for row in sorted(rows, key=lambda row: sort_key(row, order, "id"))] == want


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


@given(ORDERS, VALUES, VALUES)
def test_keyset_of_reads_back_the_values(order: Order, x: Any, y: Any) -> None:
    """A row's keyset holds its own values (a boolean stays a boolean), and places as the row does."""
    row = {"id": 7, "x": x, "y": y}
    place = sort_key(row, order, "id")
    keyset = keyset_of(place)
    for (column, _), value in zip(order, keyset, strict=False):
        if row[column] in ("NaN", "Infinity"):
            continue  # text that reads as a number: its keyset is the number
        assert _same(value, row[column])
    assert keyset[-1] == 7
    if not any(isinstance(v, float) and math.isnan(v) for v in keyset):
        assert keyset_key(keyset, order) == place
