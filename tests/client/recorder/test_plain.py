"""rxstore.client.recorder.plain: states as JSON values that compare by value, in any process."""

from __future__ import annotations

import datetime
import enum
import subprocess
import sys

import attrs
import immutables

from rxstore import TableState
from rxstore.client.recorder import difference, plain, unreplayable


@attrs.frozen
class Point:
    x: int
    y: float = 0.0


class Color(enum.Enum):
    RED = 1


def test_values_become_json_that_compares_as_they_do() -> None:
    """attrs records, mappings, sequences, sets, enums, dates, odd floats: each has a plain form."""
    value = {
        "p": Point(1, 2.5),
        "t": (1, [2]),
        "s": frozenset({3, 1}),
        "c": Color.RED,
        "d": datetime.date(2026, 12, 7),
        "n": float("nan"),
        "k": {1: "one"},
    }
    assert plain(value) == {
        "p": {"$type": f"{__name__}.Point", "x": 1, "y": 2.5},
        "t": [1, [2]],
        "s": {"$set": [1, 3]},
        "c": {"$enum": "Color.RED"},
        "d": "2026-12-07",
        "n": {"$float": "nan"},
        "k": {"$map": [[1, "one"]]},
    }
    assert plain(Point(1)) != plain(Point(2)) and plain(value) == plain(dict(value))


def test_a_table_state_is_its_rows_by_key_whatever_the_hash_order() -> None:
    """Rows sorted by key: the same plain value in a process with another PYTHONHASHSEED."""
    code = (
        "import immutables; from rxstore import TableState; from rxstore.client.recorder import plain;"
        "print(plain(TableState(immutables.Map({k: {'id': k} for k in 'qwertyuiopasdfgh'}), seq=3)))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(seen) == 1
    state = TableState(immutables.Map({"b": Point(2), "a": Point(1)}), seq=3)
    assert [key for key, _ in plain(state)["$table"]["rows"]] == ["a", "b"]


def test_what_cannot_be_compared_is_marked_and_found() -> None:
    """An object of no known kind becomes a marker; unreplayable() says where and what it is."""
    assert unreplayable(plain({"ok": [1, {"when": object()}]})) == "state.ok[1].when is a builtins.object"
    assert unreplayable(plain({"ok": Point(1)})) is None


def test_difference_names_the_first_place_two_states_differ() -> None:
    """A field, a row by its key, a missing row, a length: one line each."""
    a = plain(TableState(immutables.Map({"p1": Point(1), "p2": Point(2)}), seq=3))
    b = plain(TableState(immutables.Map({"p1": Point(1), "p2": Point(5)}), seq=3))
    assert difference(a, b) == 'state.$table.rows."p2".x: recorded 2, replayed 5'
    c = plain(TableState(immutables.Map({"p1": Point(1)}), seq=3))
    missing = (
        'state.$table.rows."p2": recorded {"$type":"tests.client.recorder.test_plain.Point","x":2,"y":0.0}'
    )
    assert difference(a, c) == missing + ", missing in the replay"
    assert difference([1, 2], [1]) == "state: recorded 2 items, replayed 1"
    assert difference(a, a) is None
