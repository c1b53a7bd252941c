"""Tokens (JWT) and the user they name.

A :class:`TokenAuth` verifies with exactly the keys and algorithms it was
configured with; a token's header never chooses them:

- HS256/384/512: a shared secret (``TokenAuth(secret=...)``), which also issues.
- RS/PS256-512, ES256/384/512, EdDSA: a public key
  (:meth:`TokenAuth.from_public_key`), or a local JWKS file whose keys are picked
  by the token's ``kid`` header (:meth:`TokenAuth.from_jwks`); tokens are issued
  with the private key (:meth:`TokenAuth.from_private_key`).

A key that does not parse or does not fit its algorithm is a
:class:`KeyConfigError` when the ``TokenAuth`` is built, not at the first client.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import jwt

from rxstore.gateway.access.jwt_keys import (
    ASYMMETRIC,
    HMAC,
    Key,
    KeyConfigError,
    KeySource,
    as_bytes,
    check_fits,
    hmac_key,
    infer_algorithm,
    jwks_keys,
    load_private,
    load_public,
    read_key,
    refuse_hmac,
    require_crypto,
    short,
)
from rxstore.protocol.errors import AuthError

__all__ = ["KeyConfigError", "KeySource", "TokenAuth", "User"]

_SHOWN_KIDS = 5


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
        secret: The HMAC secret, or the private key (PEM) when issuing with RS/PS/ES/EdDSA.
        algorithm: JWT algorithm, e.g. ``HS256``, ``RS256`` or ``ES256``; the only one
            accepted (with ``jwks``, each key's own algorithm is).
        verify_key: Key to verify with when it differs from ``secret`` (a public key, PEM).
        leeway: Seconds of clock skew tolerated on ``exp``.
        kid: Key id written in the header of issued tokens.
        jwks: A JWK Set (``{"keys": [...]}``) of public keys to verify with, picked by
            the token's ``kid``; see :meth:`from_jwks`.

    Raises:
        KeyConfigError: The algorithm is unsupported, or a key does not parse or does
            not fit it (an RSA key for ES256, a PEM key as an HMAC secret, ...).

    Example:
        >>> auth = TokenAuth(secret="s3cret-for-the-doctest-only-32bytes")
        >>> auth.verify(auth.issue("alice", ttl=60)).id
        'alice'
    """

    secret: str | bytes = attrs.field(default="", repr=False)
    algorithm: str = "HS256"
    verify_key: str | bytes | None = attrs.field(default=None, repr=False)
    leeway: float = 0.0
    kid: str | None = None
    jwks: Mapping[str, Any] | None = attrs.field(default=None, repr=False, hash=False)
    _signing_key: Any = attrs.field(init=False, repr=False, eq=False)
    _keys: Mapping[str | None, Key] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        signing_key, keys = _prepare(self)
        object.__setattr__(self, "_signing_key", signing_key)
        object.__setattr__(self, "_keys", keys)

    @classmethod
    def from_public_key(
        cls, key: KeySource, *, algorithm: str | None = None, leeway: float = 0.0
    ) -> TokenAuth:
        """Verify tokens signed by the private half of ``key`` (verification only).

        Args:
            key: A public key (or X.509 certificate) as PEM text, or its file's path.
            algorithm: ``RS256``, ``ES256``, ...; by default the key's own (RSA: RS256,
                EC: ES256/384/512 by curve, Ed25519/Ed448: EdDSA).
            leeway: Seconds of clock skew tolerated on ``exp``.

        Raises:
            KeyConfigError: The file cannot be read, or the key does not parse or fit.
        """
        refuse_hmac(algorithm, "a public key")
        require_crypto()
        data = read_key(key, "public key")
        chosen = algorithm or infer_algorithm(load_public(data, "the public key"), "the public key")
        return cls(algorithm=chosen, verify_key=data, leeway=leeway)

    @classmethod
    def from_private_key(
        cls,
        key: KeySource,
        *,
        algorithm: str | None = None,
        kid: str | None = None,
        leeway: float = 0.0,
    ) -> TokenAuth:
        """Issue tokens signed with ``key`` (and verify them with its public half).

        Args:
            key: An unencrypted private key as PEM text, or its file's path.
            algorithm: ``RS256``, ``ES256``, ...; by default the key's own.
            kid: Key id written in the tokens' header (to match a JWKS entry).
            leeway: Seconds of clock skew tolerated on ``exp``.

        Raises:
            KeyConfigError: The file cannot be read, or the key does not parse or fit.
        """
        refuse_hmac(algorithm, "a private key")
        require_crypto()
        data = read_key(key, "private key")
        private = load_private(data, "the private key")
        chosen = algorithm or infer_algorithm(private.public_key(), "the private key")
        return cls(secret=data, algorithm=chosen, kid=kid, leeway=leeway)

    @classmethod
    def from_jwks(cls, jwks: str | os.PathLike[str] | Mapping[str, Any], *, leeway: float = 0.0) -> TokenAuth:
        """Verify tokens with the public keys of a JWK Set, picked by the token's ``kid``.

        Each key verifies only its own algorithm: its ``alg`` member, or else its type's
        (RSA: RS256, EC: ES256/384/512 by curve, OKP: EdDSA). Keys whose ``use`` is not
        ``sig`` are left out. With several keys every token must name one in its ``kid``
        header; a single key also verifies tokens that name none.

        Args:
            jwks: The path of a JWKS file (``{"keys": [...]}``), or the parsed set.
            leeway: Seconds of clock skew tolerated on ``exp``.

        Raises:
            KeyConfigError: The file cannot be read or is not a JWKS, a key is a shared
                secret, does not parse, or two keys share a ``kid``.
        """
        if isinstance(jwks, Mapping):
            return cls(jwks=jwks, leeway=leeway)
        path = Path(jwks)
        try:
            data = json.loads(path.read_bytes())
        except OSError as exc:
            raise KeyConfigError(f"cannot read the JWKS file {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise KeyConfigError(f"the JWKS file {path} is not JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise KeyConfigError(f"the JWKS file {path} must hold a JSON object {{'keys': [...]}}")
        return cls(jwks=data, leeway=leeway)

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms this ``TokenAuth`` accepts (fixed by its keys)."""
        return frozenset(key.algorithm for key in self._keys.values())

    def issue(self, sub: str, *, ttl: float | None = 3600.0, **claims: Any) -> str:
        """Return a signed token for user ``sub``, valid ``ttl`` seconds (``None``: forever).

        Raises:
            KeyConfigError: This ``TokenAuth`` holds public keys only.
        """
        if self._signing_key is None:
            raise KeyConfigError(
                "this TokenAuth only verifies (it holds public keys): issue tokens with "
                "TokenAuth.from_private_key(...) or your identity provider"
            )
        payload: dict[str, Any] = {"sub": sub, "iat": int(time.time()), **claims}
        if ttl is not None:
            payload["exp"] = int(time.time() + ttl)
        headers = {"kid": self.kid} if self.kid is not None else None
        return jwt.encode(payload, self._signing_key, algorithm=self.algorithm, headers=headers)

    def verify(self, token: object) -> User:
        """Return the user a token names (whitespace around it, e.g. a pasted newline, is ignored).

        Raises:
            AuthError: ``token_expired`` or ``invalid_token`` (missing, malformed,
                bad signature, another algorithm, unknown ``kid``, no ``sub``).
        """
        token = token.strip() if isinstance(token, str) else token
        if not isinstance(token, str) or not token:
            raise AuthError("invalid_token", "no token: pass auth={'token': '<jwt>'} when connecting")
        key = self._select(token)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                leeway=self.leeway,
                options={"require": ["sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token_expired", "the token has expired: get a new one") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise AuthError(
                "invalid_token",
                f"the token is not valid: it is signed with {_token_alg(token)}, "
                f"and {key.label} verifies {key.algorithm} only",
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(
                "invalid_token", f"the token is not valid: its signature does not match {key.label}"
            ) from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid_token", "the token's 'sub' claim must be a non-empty string")
        return User(sub, claims)

    def _select(self, token: str) -> Key:
        """The key that verifies ``token``: the only one, or the JWKS key its ``kid`` names."""
        if self.jwks is None:
            return next(iter(self._keys.values()))
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from exc
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is not None:
            return key
        if len(self._keys) == 1 and (kid is None or None in self._keys):
            return next(iter(self._keys.values()))
        known = _known_kids(self._keys)
        if kid is None:
            raise AuthError(
                "invalid_token",
                f"the token names no key (no 'kid' header) and the gateway's JWKS holds "
                f"{len(self._keys)} ({known}): sign with one of them and put its kid in the header",
            )
        raise AuthError(
            "invalid_token",
            f"the token's key id {short(kid)} is not in the gateway's JWKS ({known}): "
            "sign with one of its keys, or add the key to the JWKS",
        )


def _prepare(auth: TokenAuth) -> tuple[Any, dict[str | None, Key]]:
    """Parse and check ``auth``'s keys: (the signing key or None, the verification keys)."""
    if auth.algorithm not in HMAC | ASYMMETRIC:
        supported = ", ".join(sorted(HMAC | ASYMMETRIC))
        raise KeyConfigError(f"unsupported JWT algorithm {auth.algorithm!r}: use one of {supported}")
    if auth.jwks is not None and auth.verify_key is not None:
        raise KeyConfigError("pass either jwks or verify_key, not both")
    if auth.algorithm in ASYMMETRIC or auth.jwks is not None:
        require_crypto()
    if auth.algorithm in HMAC:
        if auth.jwks is not None:
            if auth.secret:
                raise KeyConfigError(
                    "a JWKS verifies RS/PS/ES/EdDSA tokens: an HMAC secret cannot go with it"
                )
            return None, jwks_keys(auth.jwks)
        signing_key = hmac_key(auth.secret, auth.algorithm, "the secret")
        if auth.verify_key is None:
            return signing_key, {None: Key(auth.algorithm, signing_key, "the gateway's secret")}
        verify_key = hmac_key(auth.verify_key, auth.algorithm, "verify_key")
        return signing_key, {None: Key(auth.algorithm, verify_key, "the gateway's secret")}
    private = None
    if auth.secret:
        private = load_private(as_bytes(auth.secret), "the private key (secret)")
        check_fits(private.public_key(), auth.algorithm, "the private key (secret)")
    if auth.jwks is not None:
        return private, jwks_keys(auth.jwks)
    if auth.verify_key is not None:
        public = load_public(as_bytes(auth.verify_key), "verify_key")
    elif private is not None:
        public = private.public_key()
    else:
        raise KeyConfigError(
            f"{auth.algorithm} verifies with a public key: use TokenAuth.from_public_key(PEM or file), "
            "TokenAuth.from_jwks(file), or TokenAuth.from_private_key(...) to issue"
        )
    check_fits(public, auth.algorithm, "the public key")
    return private, {None: Key(auth.algorithm, public, "the gateway's public key")}


def _token_alg(token: str) -> str:
    try:
        return short(jwt.get_unverified_header(token).get("alg"))
    except jwt.PyJWTError:
        return "an unknown algorithm"


def _known_kids(keys: Mapping[str | None, Key]) -> str:
    kids = [repr(kid) for kid in keys if kid is not None]
    more = f", ... {len(kids) - _SHOWN_KIDS} more" if len(kids) > _SHOWN_KIDS else ""
    return "kids " + ", ".join(kids[:_SHOWN_KIDS]) + more
