"""Tokens (JWT) and the user they name."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs
import jwt

from rxstore.errors import AuthError

__all__ = ["TokenAuth", "User"]


@attrs.frozen
class User:
    """The authenticated user of a connection.

    Attributes:
        id: The token's ``sub`` claim.
        claims: All claims of the token (roles, tenant, ...), for ``authorize`` hooks.

    Example:
        >>> User("alice", {"sub": "alice", "role": "admin"}).claims["role"]
        'admin'
    """

    id: str
    claims: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TokenAuth:
    """Issues and verifies JWTs (HS256 with a shared secret by default).

    Attributes:
        secret: The HMAC secret, or the private key when issuing with RS/ES algorithms.
        algorithm: JWT algorithm, e.g. ``HS256`` or ``RS256``.
        verify_key: Key to verify with when it differs from ``secret`` (a public key).
        leeway: Seconds of clock skew tolerated on ``exp``.

    Example:
        >>> auth = TokenAuth(secret="s3cret-for-the-doctest-only-32bytes")
        >>> auth.verify(auth.issue("alice", ttl=60)).id
        'alice'
    """

    secret: str | bytes
    algorithm: str = "HS256"
    verify_key: str | bytes | None = None
    leeway: float = 0.0

    def issue(self, sub: str, *, ttl: float | None = 3600.0, **claims: Any) -> str:
        """Return a signed token for user ``sub``, valid ``ttl`` seconds (``None``: forever)."""
        payload: dict[str, Any] = {"sub": sub, "iat": int(time.time()), **claims}
        if ttl is not None:
            payload["exp"] = int(time.time() + ttl)
        return jwt.encode(payload, self.secret, algorithm=self.algorithm)

    def verify(self, token: object) -> User:
        """Return the user a token names.

        Raises:
            AuthError: ``token_expired`` or ``invalid_token`` (missing, malformed,
                bad signature, no ``sub``).
        """
        if not isinstance(token, str) or not token:
            raise AuthError("invalid_token", "no token: pass auth={'token': '<jwt>'} when connecting")
        try:
            claims = jwt.decode(
                token,
                self.verify_key if self.verify_key is not None else self.secret,
                algorithms=[self.algorithm],
                leeway=self.leeway,
                options={"require": ["sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token_expired", "the token has expired: get a new one") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid_token", "the token's 'sub' claim must be a non-empty string")
        return User(sub, claims)
