"""Records: table rows (JSON objects) structured into typed values with cattrs.

:data:`converter` is the one cattrs converter of the client; it checks JSON
types instead of coercing them (``str(None)`` is not a title), reads the
gateway's strings for non-finite numbers, and SQLite's 0/1 booleans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cattrs

from rxstore.errors import ValidationError

__all__ = ["converter", "structure_record"]

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


for _kind in (str, int, float, bool):
    converter.register_structure_hook(_kind, _exactly(_kind))


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
        rxstore.errors.ValidationError: invalid Post: invalid value for type, expected int @ $.likes
    """
    try:
        return converter.structure(record, record_type)
    except Exception as exc:
        problems = (
            tuple(cattrs.transform_error(exc)) if isinstance(exc, cattrs.BaseValidationError) else (str(exc),)
        )
        raise ValidationError(
            f"invalid {record_type.__name__}: {'; '.join(problems)}", problems=problems
        ) from exc
