"""States as plain values: what a recording keeps of a state, and how two are compared.

A store's state is kept in a recording as :func:`plain` makes it: JSON values
that compare by value whatever the process (a :class:`~rxstore.stores.state.TableState`'s
rows sorted by key, not in hash order). A value rxstore cannot compare by value
becomes an ``{"$unreplayable": "module.Type"}`` marker, which :func:`unreplayable`
finds, and :func:`difference` names the first place two plain values differ.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from rxstore.stores.state import TableState

__all__ = ["UNREPLAYABLE", "difference", "plain", "unreplayable"]

UNREPLAYABLE = "$unreplayable"
"""The key of the marker :func:`plain` puts in place of a value it cannot compare."""

_SCALARS = (str, int, bool, type(None))
_TEXT = (datetime.datetime, datetime.date, datetime.time, decimal.Decimal, uuid.UUID)


def plain(value: Any) -> Any:
    """``value`` as JSON values that compare as the value does.

    attrs instances become ``{"$type": "module.Qualname", field: ...}``; a
    :class:`~rxstore.stores.state.TableState` becomes ``{"$table": {"seq": ..., "rows":
    [[key, row], ...]}}`` sorted by key; mappings with text keys stay objects, others
    become ``{"$map": [[key, value], ...]}`` sorted; lists and tuples are lists; sets
    are ``{"$set": [...]}`` sorted; enums ``{"$enum": "Type.NAME"}``; dates, decimals
    and UUIDs their text; a float that is not finite ``{"$float": "nan"}``. Anything
    else is ``{"$unreplayable": "module.Type"}``.

    Example:
        >>> import attrs
        >>> @attrs.frozen
        ... class Likes:
        ...     count: int = 0
        >>> plain(Likes(2))["count"], plain({"b": 1, "a": (1, 2)}), plain({3, 1})
        (2, {'b': 1, 'a': [1, 2]}, {'$set': [1, 3]})
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, TableState):
        return {
            "$table": {"seq": value.seq, "rows": _sorted([[plain(k), plain(v)] for k, v in value.items()])}
        }
    if attrs.has(type(value)):
        fields = {field.name: plain(getattr(value, field.name)) for field in attrs.fields(type(value))}
        return {"$type": _name(type(value)), **fields}
    if isinstance(value, enum.Enum):
        return {"$enum": f"{type(value).__name__}.{value.name}"}
    if isinstance(value, Mapping):
        if all(type(key) is str for key in value):
            return {key: plain(item) for key, item in value.items()}
        return {"$map": _sorted([[plain(k), plain(v)] for k, v in value.items()])}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return {"$set": _sorted([plain(item) for item in value])}
    if isinstance(value, _TEXT):
        return str(value)
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    return {UNREPLAYABLE: _name(type(value))}


def unreplayable(value: Any, path: str = "state") -> str | None:
    """Where in a plain ``value`` a marker of :func:`plain` stands, and the type: ``None`` if none.

    Example:
        >>> unreplayable(plain({"when": object()}))
        'state.when is a builtins.object'
    """
    if type(value) is dict:
        if UNREPLAYABLE in value:
            return f"{path} is a {value[UNREPLAYABLE]}"
        for key, item in value.items():
            found = unreplayable(item, f"{path}.{key}")
            if found is not None:
                return found
    elif type(value) is list:
        for i, item in enumerate(value):
            found = unreplayable(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def difference(recorded: Any, replayed: Any, path: str = "state") -> str | None:
    """The first place two plain values differ, told in one line; ``None`` if equal.

    Example:
        >>> difference({"count": 2, "by": "ann"}, {"count": 3, "by": "ann"})
        'state.count: recorded 2, replayed 3'
    """
    if recorded == replayed and type(recorded) is type(replayed):
        return None
    if type(recorded) is dict and type(replayed) is dict:
        for key in recorded.keys() | replayed.keys():
            if key not in replayed:
                return f"{path}.{key}: recorded {_short(recorded[key])}, missing in the replay"
            if key not in recorded:
                return f"{path}.{key}: not recorded, replayed {_short(replayed[key])}"
        for key in recorded:
            found = difference(recorded[key], replayed[key], f"{path}.{key}")
            if found is not None:
                return found
    if type(recorded) is list and type(replayed) is list:
        keyed = _keyed(recorded), _keyed(replayed)
        if keyed[0] is not None and keyed[1] is not None:  # table rows: by key, not by position
            return difference(keyed[0], keyed[1], path)
        for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)):
            found = difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return f"{path}: recorded {len(recorded)} items, replayed {len(replayed)}"
    return f"{path}: recorded {_short(recorded)}, replayed {_short(replayed)}"


def _keyed(pairs: list[Any]) -> dict[str, Any] | None:
    """Rows as ``[[key, row], ...]`` by key (its JSON text), or ``None`` if they are not pairs."""
    if not all(type(pair) is list and len(pair) == 2 for pair in pairs):
        return None
    return {_text(key): row for key, row in pairs}


def _sorted(items: list[Any]) -> list[Any]:
    """``items`` in the order of their JSON text: the same order in every process."""
    return sorted(items, key=_text)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _short(value: Any, most: int = 200) -> str:
    text = _text(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
