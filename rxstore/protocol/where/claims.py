"""A claim of the connection's token used as a value: ``{"claim": "sub"}``, filled in by the gateway.

A where clause may name a claim where it would hold a value
(``["owner", "=", {"claim": "sub"}]``). The client sends the claim's name; the
gateway fills in the value of the token the connection authenticated with, at
subscribe time and again at every reconnect (from the new token), so a request
cannot name another user's value there.

Example:
    >>> Claim("sub").to_wire()
    {'claim': 'sub'}
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["CLAIM_KEY", "Claim"]

CLAIM_KEY: Final = "claim"
"""The one key of a claim's wire form."""


@attrs.frozen
class Claim:
    """The value of the token's claim ``name``, to be filled in by the gateway.

    Attributes:
        name: The claim: ``sub``, ``tenant``, ``team``... (any claim of the token).

    Example:
        >>> from rxstore.protocol.subsets import Subset, terms_of
        >>> mine = Subset("tickets", terms_of({"assignee": Claim("sub")}))
        >>> mine.resolve({"sub": "alice"}).matches({"assignee": "alice"})
        True
    """

    name: str

    def to_wire(self) -> dict[str, str]:
        """``{"claim": name}``."""
        return {CLAIM_KEY: self.name}
