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
from jwt.algorithms import get_default_algorithms, has_crypto

from rxstore.errors import AuthError, RxStoreError

__all__ = ["KeyConfigError", "KeySource", "TokenAuth", "User"]

KeySource = str | bytes | os.PathLike[str]
"""A key: PEM text (``str`` or ``bytes``) or the path of a file holding it."""

_HMAC = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_MIN_RSA_BITS = 2048
_SHOWN_KIDS = 5


class KeyConfigError(RxStoreError, ValueError):
    """A JWT key or algorithm that cannot be used; raised when the ``TokenAuth`` is built.

    Example:
        >>> try:
        ...     TokenAuth(secret="s3cret-for-the-doctest-only-32bytes", algorithm="none")
        ... except KeyConfigError as exc:
        ...     print(exc)  # doctest: +ELLIPSIS
        unsupported JWT algorithm 'none': use one of ES256, ..., RS512
    """


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


@attrs.frozen
class _Key:
    """One verification key: its algorithm (fixed by configuration) and its name."""

    algorithm: str
    key: Any  # bytes (HMAC) or a cryptography public key
    label: str


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
    _keys: Mapping[str | None, _Key] = attrs.field(init=False, repr=False, eq=False)

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
        _refuse_hmac(algorithm, "a public key")
        _require_crypto()
        data = _read_key(key, "public key")
        chosen = algorithm or _infer_algorithm(_load_public(data, "the public key"), "the public key")
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
        _refuse_hmac(algorithm, "a private key")
        _require_crypto()
        data = _read_key(key, "private key")
        private = _load_private(data, "the private key")
        chosen = algorithm or _infer_algorithm(private.public_key(), "the private key")
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
        """Return the user a token names.

        Raises:
            AuthError: ``token_expired`` or ``invalid_token`` (missing, malformed,
                bad signature, another algorithm, unknown ``kid``, no ``sub``).
        """
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

    def _select(self, token: str) -> _Key:
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
            f"the token's key id {_short(kid)} is not in the gateway's JWKS ({known}): "
            "sign with one of its keys, or add the key to the JWKS",
        )


def _prepare(auth: TokenAuth) -> tuple[Any, dict[str | None, _Key]]:
    """Parse and check ``auth``'s keys: (the signing key or None, the verification keys)."""
    if auth.algorithm not in _HMAC | _ASYMMETRIC:
        supported = ", ".join(sorted(_HMAC | _ASYMMETRIC))
        raise KeyConfigError(f"unsupported JWT algorithm {auth.algorithm!r}: use one of {supported}")
    if auth.jwks is not None and auth.verify_key is not None:
        raise KeyConfigError("pass either jwks or verify_key, not both")
    if auth.algorithm in _ASYMMETRIC or auth.jwks is not None:
        _require_crypto()
    if auth.algorithm in _HMAC:
        if auth.jwks is not None:
            if auth.secret:
                raise KeyConfigError(
                    "a JWKS verifies RS/PS/ES/EdDSA tokens: an HMAC secret cannot go with it"
                )
            return None, _jwks_keys(auth.jwks)
        signing_key = _hmac_key(auth.secret, auth.algorithm, "the secret")
        if auth.verify_key is None:
            return signing_key, {None: _Key(auth.algorithm, signing_key, "the gateway's secret")}
        verify_key = _hmac_key(auth.verify_key, auth.algorithm, "verify_key")
        return signing_key, {None: _Key(auth.algorithm, verify_key, "the gateway's secret")}
    private = None
    if auth.secret:
        private = _load_private(_as_bytes(auth.secret), "the private key (secret)")
        _check_fits(private.public_key(), auth.algorithm, "the private key (secret)")
    if auth.jwks is not None:
        return private, _jwks_keys(auth.jwks)
    if auth.verify_key is not None:
        public = _load_public(_as_bytes(auth.verify_key), "verify_key")
    elif private is not None:
        public = private.public_key()
    else:
        raise KeyConfigError(
            f"{auth.algorithm} verifies with a public key: use TokenAuth.from_public_key(PEM or file), "
            "TokenAuth.from_jwks(file), or TokenAuth.from_private_key(...) to issue"
        )
    _check_fits(public, auth.algorithm, "the public key")
    return private, {None: _Key(auth.algorithm, public, "the gateway's public key")}


def _require_crypto() -> None:
    if not has_crypto:
        raise KeyConfigError(
            "public-key algorithms need the 'cryptography' package: pip install 'rxstore[gateway]'"
        )


def _refuse_hmac(algorithm: str | None, what: str) -> None:
    if algorithm in _HMAC:
        raise KeyConfigError(
            f"{algorithm} is an HMAC algorithm, signed with a shared secret: {what} is for "
            "RS256/ES256/...; pass algorithm='RS256' (RSA) or 'ES256' (EC P-256), or none"
        )


def _hmac_key(secret: str | bytes, algorithm: str, what: str) -> bytes:
    """``secret`` as an HMAC key, refusing an empty one and an asymmetric key."""
    if not secret:
        raise KeyConfigError(
            f"{algorithm} needs a secret: pass secret='<a long random string>' "
            "(an empty secret would let anyone sign tokens)"
        )
    try:
        key: bytes = get_default_algorithms()[algorithm].prepare_key(secret)
    except jwt.InvalidKeyError as exc:
        raise KeyConfigError(
            f"{what} is a public/private key, not an {algorithm} secret: to verify RS256/ES256 "
            "tokens use TokenAuth.from_public_key(...) with algorithm='RS256' or 'ES256'"
        ) from exc
    return key


def _jwks_keys(jwks: Mapping[str, Any]) -> dict[str | None, _Key]:
    """The signature keys of a JWK Set by ``kid``, each with its own algorithm."""
    entries = jwks.get("keys") if "kty" not in jwks else [jwks]
    if not isinstance(entries, list):
        raise KeyConfigError("a JWKS is a JSON object {'keys': [...]} (RFC 7517)")
    keys: dict[str | None, _Key] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise KeyConfigError(f"JWKS key #{index + 1} is not a JSON object")
        if entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        label = f"JWKS key {_short(kid)}" if kid is not None else f"JWKS key #{index + 1}"
        if kid is not None and not isinstance(kid, str):
            raise KeyConfigError(f"{label}: 'kid' must be a string")
        if kid in keys:
            raise KeyConfigError(f"{label} appears twice: every key of a JWKS needs its own kid")
        keys[kid] = _jwk_key(entry, label)
    if not keys:
        raise KeyConfigError("the JWKS holds no signature key ({'keys': [...]} with 'use' 'sig' or none)")
    if len(keys) > 1 and None in keys:
        raise KeyConfigError("a JWKS of several keys needs a 'kid' on each: tokens pick their key by kid")
    return keys


def _jwk_key(entry: Mapping[str, Any], label: str) -> _Key:
    """One JWK as a public verification key, refusing shared secrets (``kty`` ``oct``)."""
    algorithm = entry.get("alg")
    if entry.get("kty") == "oct" or algorithm in _HMAC:
        raise KeyConfigError(
            f"{label} is a shared secret (kty 'oct' / HS*): a JWKS for the gateway holds public keys only"
        )
    if algorithm is not None and algorithm not in _ASYMMETRIC:
        raise KeyConfigError(f"{label}: unsupported alg {algorithm!r}; use RS256, ES256, ... or leave it out")
    try:
        jwk = jwt.PyJWK(dict(entry))
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise KeyConfigError(f"{label} does not parse as a JWK: {exc}") from exc
    if jwk.algorithm_name not in _ASYMMETRIC:
        raise KeyConfigError(f"{label}: unsupported key ({jwk.algorithm_name})")
    key = jwk.key.public_key() if hasattr(jwk.key, "private_bytes") else jwk.key
    _check_fits(key, jwk.algorithm_name, label)
    return _Key(jwk.algorithm_name, key, label)


def _read_key(source: KeySource, what: str) -> bytes:
    """The key bytes of ``source``: PEM text as is, else the content of the file it names."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and ("-----BEGIN" in source or source.lstrip().startswith(("ssh-", "ecdsa-"))):
        return source.encode()
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyConfigError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _load_public(data: bytes, what: str) -> Any:
    """A public key from PEM (public key, certificate or private key), OpenSSH or DER."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    text = data.strip()
    if b"PRIVATE KEY-----" in text:
        return _load_private(text, what).public_key()
    try:
        if text.startswith(b"-----BEGIN CERTIFICATE"):
            return x509.load_pem_x509_certificate(text).public_key()
        if text.startswith(b"-----BEGIN"):
            return serialization.load_pem_public_key(text)
        if text.startswith((b"ssh-", b"ecdsa-")):
            return serialization.load_ssh_public_key(text)
        return serialization.load_der_public_key(text)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyConfigError(
            f"{what} does not parse as a public key ({exc}): pass a PEM file "
            "('-----BEGIN PUBLIC KEY-----', e.g. from `openssl pkey -pubout -in key.pem`)"
        ) from exc


def _load_private(data: bytes, what: str) -> Any:
    """An unencrypted private key from PEM (PKCS#8, PKCS#1, SEC1 or OpenSSH)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    text = data.strip()
    if b"PUBLIC KEY-----" in text or text.startswith(b"-----BEGIN CERTIFICATE"):
        raise KeyConfigError(
            f"{what} is a public key: it can only verify; use TokenAuth.from_public_key(...) "
            "(rxstore serve --public-key FILE), and issue with the private key"
        )
    try:
        if text.startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            return serialization.load_ssh_private_key(text, password=None)
        return serialization.load_pem_private_key(text, password=None)
    except TypeError as exc:  # encrypted
        raise KeyConfigError(
            f"{what} is encrypted: decrypt it (`openssl pkey -in key.pem -out plain.pem`) ({exc})"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyConfigError(
            f"{what} does not parse as a private key ({exc}): pass a PEM file "
            "('-----BEGIN PRIVATE KEY-----', e.g. from `openssl genpkey -algorithm RSA`)"
        ) from exc


def _check_fits(key: Any, algorithm: str, what: str) -> None:
    """Refuse a public key that cannot verify ``algorithm`` (wrong type, curve or size)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if algorithm[:2] in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyConfigError(f"{what} is {_describe(key)}: {algorithm} needs an RSA key")
        if key.key_size < _MIN_RSA_BITS:
            raise KeyConfigError(f"{what} is a {key.key_size}-bit RSA key: use at least {_MIN_RSA_BITS} bits")
    elif algorithm in _CURVES:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVES[algorithm]:
            raise KeyConfigError(
                f"{what} is {_describe(key)}: {algorithm} needs an EC key on curve {_CURVES[algorithm]}"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise KeyConfigError(f"{what} is {_describe(key)}: EdDSA needs an Ed25519 or Ed448 key")


def _infer_algorithm(key: Any, what: str) -> str:
    """The usual algorithm of a public key: RSA -> RS256, EC -> ES* by curve, Ed -> EdDSA."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        for algorithm, curve in _CURVES.items():
            if key.curve.name == curve:
                return algorithm
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    raise KeyConfigError(f"{what} is {_describe(key)}: JWTs need an RSA, EC (P-256/384/521) or Ed25519 key")


def _describe(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC key on curve {key.curve.name}"
    return f"a {type(key).__name__.removeprefix('_').removesuffix('PublicKey') or 'different'} key"


def _token_alg(token: str) -> str:
    try:
        return _short(jwt.get_unverified_header(token).get("alg"))
    except jwt.PyJWTError:
        return "an unknown algorithm"


def _known_kids(keys: Mapping[str | None, _Key]) -> str:
    kids = [repr(kid) for kid in keys if kid is not None]
    more = f", ... {len(kids) - _SHOWN_KIDS} more" if len(kids) > _SHOWN_KIDS else ""
    return "kids " + ", ".join(kids[:_SHOWN_KIDS]) + more


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
