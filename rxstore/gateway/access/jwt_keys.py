"""Reading and checking JWT keys for :class:`~rxstore.gateway.access.auth.TokenAuth`.

PEM files (public keys, certificates, private keys), JWK Sets, and the checks that a key
fits its algorithm (type, curve, size). Private: import the public names from
``rxstore.gateway.access.auth``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import jwt
from jwt.algorithms import get_default_algorithms, has_crypto

from rxstore.protocol.errors import RxStoreError

KeySource = str | bytes | os.PathLike[str]
"""A key: PEM text (``str`` or ``bytes``) or the path of a file holding it."""

HMAC = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MIN_RSA_BITS = 2048


class KeyConfigError(RxStoreError, ValueError):
    """A JWT key or algorithm that cannot be used; raised when the ``TokenAuth`` is built.

    Example:
        >>> from rxstore.gateway import TokenAuth
        >>> try:
        ...     TokenAuth(secret="s3cret-for-the-doctest-only-32bytes", algorithm="none")
        ... except KeyConfigError as exc:
        ...     print(exc)  # doctest: +ELLIPSIS
        unsupported JWT algorithm 'none': use one of ES256, ..., RS512
    """


@attrs.frozen
class Key:
    """One verification key: its algorithm (fixed by configuration) and its name."""

    algorithm: str
    key: Any  # bytes (HMAC) or a cryptography public key
    label: str


def require_crypto() -> None:
    """Refuse public-key algorithms when pyjwt runs without ``cryptography``."""
    if not has_crypto:
        raise KeyConfigError(
            "public-key algorithms need the 'cryptography' package: pip install 'rxstore[gateway]'"
        )


def refuse_hmac(algorithm: str | None, what: str) -> None:
    """Refuse an HS* algorithm for a public or private key (HS/RS confusion)."""
    if algorithm in HMAC:
        raise KeyConfigError(
            f"{algorithm} is an HMAC algorithm, signed with a shared secret: {what} is for "
            "RS256/ES256/...; pass algorithm='RS256' (RSA) or 'ES256' (EC P-256), or none"
        )


def hmac_key(secret: str | bytes, algorithm: str, what: str) -> bytes:
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


def jwks_keys(jwks: Mapping[str, Any]) -> dict[str | None, Key]:
    """The signature keys of a JWK Set by ``kid``, each with its own algorithm."""
    entries = jwks.get("keys") if "kty" not in jwks else [jwks]
    if not isinstance(entries, list):
        raise KeyConfigError("a JWKS is a JSON object {'keys': [...]} (RFC 7517)")
    keys: dict[str | None, Key] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise KeyConfigError(f"JWKS key #{index + 1} is not a JSON object")
        if entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        label = f"JWKS key {short(kid)}" if kid is not None else f"JWKS key #{index + 1}"
        if kid is not None and not isinstance(kid, str):
            raise KeyConfigError(f"{label}: 'kid' must be a string")
        if kid in keys:
            raise KeyConfigError(f"{label} appears twice: every key of a JWKS needs its own kid")
        keys[kid] = jwk_key(entry, label)
    if not keys:
        raise KeyConfigError("the JWKS holds no signature key ({'keys': [...]} with 'use' 'sig' or none)")
    if len(keys) > 1 and None in keys:
        raise KeyConfigError("a JWKS of several keys needs a 'kid' on each: tokens pick their key by kid")
    return keys


def jwk_key(entry: Mapping[str, Any], label: str) -> Key:
    """One JWK as a public verification key, refusing shared secrets (``kty`` ``oct``)."""
    algorithm = entry.get("alg")
    if entry.get("kty") == "oct" or algorithm in HMAC:
        raise KeyConfigError(
            f"{label} is a shared secret (kty 'oct' / HS*): a JWKS for the gateway holds public keys only"
        )
    if algorithm is not None and algorithm not in ASYMMETRIC:
        raise KeyConfigError(f"{label}: unsupported alg {algorithm!r}; use RS256, ES256, ... or leave it out")
    try:
        jwk = jwt.PyJWK(dict(entry))
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise KeyConfigError(f"{label} does not parse as a JWK: {exc}") from exc
    if jwk.algorithm_name not in ASYMMETRIC:
        raise KeyConfigError(f"{label}: unsupported key ({jwk.algorithm_name})")
    key = jwk.key.public_key() if hasattr(jwk.key, "private_bytes") else jwk.key
    check_fits(key, jwk.algorithm_name, label)
    return Key(jwk.algorithm_name, key, label)


def read_key(source: KeySource, what: str) -> bytes:
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


def as_bytes(key: str | bytes) -> bytes:
    """A key as bytes (UTF-8 for text)."""
    return key.encode() if isinstance(key, str) else key


def load_public(data: bytes, what: str) -> Any:
    """A public key from PEM (public key, certificate or private key), OpenSSH or DER."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    text = data.strip()
    if b"PRIVATE KEY-----" in text:
        return load_private(text, what).public_key()
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


def load_private(data: bytes, what: str) -> Any:
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


def check_fits(key: Any, algorithm: str, what: str) -> None:
    """Refuse a public key that cannot verify ``algorithm`` (wrong type, curve or size)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if algorithm[:2] in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyConfigError(f"{what} is {describe(key)}: {algorithm} needs an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise KeyConfigError(f"{what} is a {key.key_size}-bit RSA key: use at least {MIN_RSA_BITS} bits")
    elif algorithm in CURVES:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVES[algorithm]:
            raise KeyConfigError(
                f"{what} is {describe(key)}: {algorithm} needs an EC key on curve {CURVES[algorithm]}"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise KeyConfigError(f"{what} is {describe(key)}: EdDSA needs an Ed25519 or Ed448 key")


def infer_algorithm(key: Any, what: str) -> str:
    """The usual algorithm of a public key: RSA -> RS256, EC -> ES* by curve, Ed -> EdDSA."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        for algorithm, curve in CURVES.items():
            if key.curve.name == curve:
                return algorithm
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    raise KeyConfigError(f"{what} is {describe(key)}: JWTs need an RSA, EC (P-256/384/521) or Ed25519 key")


def describe(key: Any) -> str:
    """A key described for an error message, never its secret."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC key on curve {key.curve.name}"
    return f"a {type(key).__name__.removeprefix('_').removesuffix('PublicKey') or 'different'} key"


def short(value: object) -> str:
    """``value`` shortened for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
