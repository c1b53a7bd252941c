"""Records: table rows (JSON objects) structured into typed values with cattrs.

:data:`converter` is the one cattrs converter of the client; it checks JSON
types instead of coercing them (``str(None)`` is not a title), reads the
gateway's strings for non-finite numbers, and SQLite's 0/1 booleans.

An attrs class whose fields are all plain JSON types (``str``, ``int``,
``float``, ``bool``, ``None``, their unions, and lists and string-keyed
dicts of them) and have no attrs ``converter`` is structured by
``msgspec.convert`` first: the same checks in C, about twice as fast as
cattrs for one row, and a batch's or a snapshot's rows in one call
(:func:`structure_records`) three times as fast again. A row msgspec
refuses goes to cattrs, which accepts what the gateway's rules allow besides
(SQLite's 0/1, ``"NaN"``) or names the bad field, so the result and the
errors are cattrs' either way.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import cattrs
import msgspec

from rxstore.protocol.errors import ValidationError

__all__ = ["batch_records", "converter", "envelope_records", "structure_record", "structure_records"]

R = TypeVar("R")

converter = cattrs.Converter(detailed_validation=True)
"""The cattrs converter used for records; register hooks on it for custom types."""


_NON_FINITE = frozenset({"Infinity", "-Infinity", "NaN"})
"""Non-finite numbers as JSON strings: what the gateway sends for a database's inf and NaN."""


def _exactly(kind: type) -> Callable[[Any, type], Any]:
    """A structure hook that checks the JSON type instead of coercing (``str(None)`` is not a title)."""

    def structure(value: Any, _: type) -> Any:
        if type(value) is kind:
            return value
        if kind is float and type(value) is int:
            return float(value)
        if kind is float and type(value) is str and value in _NON_FINITE:  # the gateway sends them so
            return float(value)
        if kind is bool and type(value) is int and value in (0, 1):  # SQLite booleans
            return bool(value)
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")

    return structure


_HOOKS = {kind: _exactly(kind) for kind in (str, int, float, bool)}
for _kind, _hook in _HOOKS.items():
    converter.register_structure_hook(_kind, _hook)

_PLAIN = frozenset({str, int, float, bool, type(None)})
_fast: dict[type, bool] = {}
"""Record type -> whether msgspec may structure it (decided once per type)."""


def _plain(annotation: Any) -> bool:
    """Whether a field of this type holds plain JSON values only (no hook of anyone's applies)."""
    if annotation in _PLAIN:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple):
        return all(arg is Ellipsis or _plain(arg) for arg in args)
    if origin is dict:
        return len(args) == 2 and args[0] is str and _plain(args[1])
    return False


_bools: dict[type, tuple[str, ...]] = {}
"""Record type (one msgspec may structure) -> its fields of type ``bool`` or ``bool | None``."""
_BOOL_TYPES = (bool, bool | None)


def _msgspec_fits(record_type: type) -> bool:
    """Whether ``msgspec.convert`` structures ``record_type`` exactly as :data:`converter` does."""
    if not attrs.has(record_type):
        return False
    if any(converter.get_structure_hook(kind) is not hook for kind, hook in _HOOKS.items()):
        return False  # someone changed how plain values are structured: only cattrs knows how
    try:
        hints = typing.get_type_hints(record_type)
    except Exception:
        return False
    fields = attrs.fields(record_type)
    _bools[record_type] = tuple(field.name for field in fields if hints.get(field.name) in _BOOL_TYPES)
    return all(
        field.converter is None and field.init and field.alias == field.name and _plain(hints.get(field.name))
        for field in fields
    )


def _with_bools(row: Any, fields: tuple[str, ...]) -> Any:
    """``row`` with SQLite's 0/1 in ``fields`` as ``False``/``True`` (a copy, if any): what cattrs does."""
    if type(row) is not dict:
        return row
    changed = None
    for name in fields:
        value = row.get(name)
        if type(value) is int and (value == 0 or value == 1):
            if changed is None:
                changed = dict(row)
            changed[name] = value == 1
    return row if changed is None else changed


def structure_record(record: Mapping[str, Any], record_type: type[R]) -> R:
    """Structure a row into ``record_type`` with :data:`converter`.

    Raises:
        ValidationError: The row does not fit; the message names each bad field.

    Example:
        >>> import attrs
        >>> @attrs.frozen
        ... class Post:
        ...     id: str
        ...     likes: int = 0
        >>> structure_record({"id": "p1", "likes": "many"}, Post)
        Traceback (most recent call last):
        ...
        rxstore.protocol.errors.ValidationError: invalid Post: invalid value for type, expected int @ $.likes
    """
    fast = _fast.get(record_type)
    if fast is None:
        fast = _fast[record_type] = _msgspec_fits(record_type)
    if fast:
        try:
            return msgspec.convert(record, record_type)
        except Exception:  # not plainly valid: SQLite's booleans, else cattrs decides and names the problem
            bools = _bools.get(record_type)
            if bools:
                try:
                    return msgspec.convert(_with_bools(record, bools), record_type)
                except Exception:
                    pass
    try:
        return converter.structure(record, record_type)
    except Exception as exc:
        problems = (
            tuple(cattrs.transform_error(exc)) if isinstance(exc, cattrs.BaseValidationError) else (str(exc),)
        )
        raise ValidationError(
            f"invalid {record_type.__name__}: {'; '.join(problems)}", problems=problems
        ) from exc


def structure_records(rows: list[Any], record_type: type[R], *, gaps: bool = False) -> list[R] | None:
    """Structure many rows in one msgspec call; ``None`` unless every row is plainly valid.

    For a record type msgspec may structure (see the module), one C call for
    a whole batch; ``None`` otherwise, or when any row does not fit: then
    structure them one by one with :func:`structure_record`, which names the
    bad row and field. ``gaps``: a ``None`` row stays ``None``.

    Example:
        >>> import attrs
        >>> @attrs.frozen
        ... class Post:
        ...     id: str
        >>> structure_records([{"id": "p1"}, {"id": "p2"}], Post)
        [Post(id='p1'), Post(id='p2')]
        >>> structure_records([{"id": "p1"}, {"id": 2}], Post) is None
        True
    """
    fast = _fast.get(record_type)
    if fast is None:
        fast = _fast[record_type] = _msgspec_fits(record_type)
    if not fast:
        return None
    target: Any = list[record_type | None] if gaps else list[record_type]  # type: ignore[valid-type]
    try:
        converted: list[R] = msgspec.convert(rows, target)
    except Exception:
        bools = _bools.get(record_type)
        if not bools:
            return None
        try:  # SQLite's 0/1 booleans (the gateway sends them so): as cattrs takes them
            converted = msgspec.convert([_with_bools(row, bools) for row in rows], target)
        except Exception:
            return None
    return converted


def batch_records(events: Sequence[Any], record_type: type[R] | None) -> list[R | None] | None:
    """The records of a frame's INSERT/UPDATE changes in one msgspec call, aligned with ``events``.

    ``None`` (structure them one by one) unless ``record_type`` is msgspec's
    and every such row fits; other events get ``None`` in the list.
    """
    if record_type is None:
        return None
    rows = [
        event.data.get("record") if type(event.data) is dict and event.data.get("op") != "DELETE" else None
        for event in events
    ]
    return structure_records(rows, record_type, gaps=True)


def envelope_records(envelopes: Sequence[Any], record_type: type[R] | None) -> list[R | None] | None:
    """:func:`batch_records` of checked change envelopes (a :class:`~rxstore.protocol.frames.ChangeFrame`)."""
    if record_type is None:
        return None
    rows = [envelope.get("record") if envelope["op"] != "DELETE" else None for envelope in envelopes]
    return structure_records(rows, record_type, gaps=True)
