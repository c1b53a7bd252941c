"""How a domain store's state goes to disk and back: a store opts in with ``persist_codec``.

A :class:`~rxstore.stores.table.TableStore` is always persisted (its rows, as the
gateway sent them). A :class:`~rxstore.stores.domain.DomainStore` is persisted
only if it has a ``persist_codec``: any object with ``encode(state) -> JSON value``
and ``decode(value) -> state``; :class:`StateCodec` is one for states that cattrs
(un)structures (attrs classes, tuples, dicts of them). A store without one is
not persisted and starts from its initial state.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

import attrs

from rxstore.protocol.records import converter

__all__ = ["PersistCodec", "StateCodec", "type_fingerprint"]

S = TypeVar("S")


class PersistCodec(Protocol):
    """What ``DomainStore.persist_codec`` is: a state to a JSON value and back."""

    def encode(self, state: Any) -> Any:
        """Return ``state`` as a JSON value (dicts, lists, strings, numbers, booleans, ``None``)."""
        ...

    def decode(self, value: Any) -> Any:
        """Return the state ``value`` encodes; raise if it does not fit (the store then starts afresh)."""
        ...


@attrs.frozen
class StateCodec(Generic[S]):
    """A codec through cattrs (the stores' converter): for attrs states.

    Example:
        >>> @attrs.frozen
        ... class Likes:
        ...     count: int = 0
        >>> codec = StateCodec(Likes)
        >>> codec.encode(Likes(3)), codec.decode({"count": 3})
        ({'count': 3}, Likes(count=3))
    """

    state_type: type[S]

    def encode(self, state: S) -> Any:
        """Unstructure ``state`` with cattrs."""
        return converter.unstructure(state, self.state_type)

    def decode(self, value: Any) -> S:
        """Structure ``value`` into the state type with cattrs."""
        return converter.structure(value, self.state_type)


def type_fingerprint(record_type: type[Any] | None) -> str:
    """A record type's name and fields: rows stored under another fingerprint are not trusted as is.

    Example:
        >>> @attrs.frozen
        ... class Post:
        ...     id: str
        ...     title: str = ""
        >>> type_fingerprint(Post).endswith("Post(id:str,title:str)")
        True
    """
    if record_type is None:
        return "dict"
    name = f"{record_type.__module__}.{record_type.__qualname__}"
    if attrs.has(record_type):
        fields = ",".join(
            f"{f.name}:{getattr(f.type, '__name__', f.type)}" for f in attrs.fields(record_type)
        )
        return f"{name}({fields})"
    return name
