"""rxstore.gateway.access.auth: HS256 tokens (issue, verify, refusals by reason), and asymmetric JWT
keys: RS256/ES256 public keys and local JWKS files, with real keys.

Keys are generated here with ``cryptography``; tokens are signed with pyjwt (or forged
by hand for the attacks: an HS256 token whose HMAC secret is the public key, an
unsigned ``alg: none`` token).
"""

from __future__ import annotations

import asyncio
import base64
import doctest
import hashlib
import hmac
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import rxstore.gateway.access.auth
import rxstore.gateway.access.jwt_keys
from rxstore import RootStore
from rxstore.gateway.access.auth import KeyConfigError, TokenAuth
from rxstore.gateway.demo import Post, create_demo_schema, save_post
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.errors import AuthError, ConnectionRefused, RxStoreError
from tests.gateway.harness import PostStore
from tests.waiting import wait_for

RXSTORE = [sys.executable, "-m", "rxstore.cli"]


# -- keys and tokens -------------------------------------------------------------


class Keys:
    """Real key pairs, generated once for the module."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ec384 = ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def private_pem(key: Any) -> str:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def public_pem(key: Any) -> str:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def jwk(key: Any, kid: str | None, **members: str) -> dict[str, Any]:
    """The public JWK of ``key`` (RSA or EC), with ``kid`` and extra members."""
    to_jwk = RSAAlgorithm.to_jwk if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm.to_jwk
    entry: dict[str, Any] = json.loads(to_jwk(key.public_key()))
    if kid is not None:
        entry["kid"] = kid
    return {**entry, **members}


def claims(sub: str = "alice", ttl: float = 60.0) -> dict[str, Any]:
    return {"sub": sub, "iat": int(time.time()), "exp": int(time.time() + ttl)}


def signed(key: Any, algorithm: str, kid: str | None = None, **payload: Any) -> str:
    """A genuine token signed by ``key``."""
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode({**claims(), **payload}, key, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_forged_with(secret: str | bytes, kid: str | None = None) -> str:
    """The HS/RS confusion attack: an HS256 token whose HMAC secret is the (public) key text."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims()).encode())}"
    key = secret.encode() if isinstance(secret, str) else secret
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def unsigned(kid: str | None = None) -> str:
    """An ``alg: none`` token, no signature at all."""
    header = {"alg": "none", "typ": "JWT", **({"kid": kid} if kid else {})}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims()).encode())}."


def refusal(auth: TokenAuth, token: object) -> AuthError:
    with pytest.raises(AuthError) as refused:
        auth.verify(token)
    return refused.value


@pytest.fixture(scope="module")
def jwks_file(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three signature keys (two RSA, one EC) and an encryption key that must be left out."""
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    entries = [
        jwk(keys.rsa, "rsa-1", alg="RS256", use="sig"),
        jwk(keys.rsa2, "rsa-2"),
        jwk(keys.ec, "ec-1", use="sig"),
        jwk(keys.ec384, "enc-1", use="enc"),
    ]
    path.write_text(json.dumps({"keys": entries}))
    return path


# -- a public key ---------------------------------------------------------------


def test_rs256_token_verifies_with_the_public_key_as_pem_text_bytes_or_file(
    keys: Keys, tmp_path: Path
) -> None:
    """from_public_key takes PEM text, PEM bytes, a path string or a Path; RS256 is the RSA default."""
    key_file = tmp_path / "public.pem"
    key_file.write_text(public_pem(keys.rsa))
    token = signed(keys.rsa, "RS256")
    for source in (public_pem(keys.rsa), public_pem(keys.rsa).encode(), str(key_file), key_file):
        auth = TokenAuth.from_public_key(source)
        assert auth.algorithms == {"RS256"}
        user = auth.verify(token)
        assert (user.id, user.claims["sub"]) == ("alice", "alice")


def test_es256_token_verifies_with_an_ec_public_key(keys: Keys) -> None:
    """An EC P-256 key verifies ES256 (inferred or explicit); an RS256 token is then refused."""
    for auth in (
        TokenAuth.from_public_key(public_pem(keys.ec)),
        TokenAuth.from_public_key(public_pem(keys.ec), algorithm="ES256"),
    ):
        assert auth.verify(signed(keys.ec, "ES256")).id == "alice"
        refused = refusal(auth, signed(keys.rsa, "RS256"))
        assert refused.reason == "invalid_token" and "verifies ES256 only" in str(refused)


def test_private_key_issues_tokens_that_the_public_key_verifies(keys: Keys) -> None:
    """from_private_key issues RS256/ES256 tokens (with kid), verified by the public half."""
    for key, algorithm in ((keys.rsa, "RS256"), (keys.ec, "ES256")):
        issuer = TokenAuth.from_private_key(private_pem(key), kid="k1")
        assert issuer.algorithm == algorithm
        token = issuer.issue("bob", ttl=60, role="admin")
        assert jwt.get_unverified_header(token) == {"alg": algorithm, "typ": "JWT", "kid": "k1"}
        assert TokenAuth.from_public_key(public_pem(key)).verify(token).claims["role"] == "admin"
        assert issuer.verify(token).id == "bob"


def test_hs256_token_signed_with_the_public_key_as_secret_is_refused(keys: Keys) -> None:
    """HS/RS confusion: the public key text used as an HMAC secret never passes."""
    auth = TokenAuth.from_public_key(public_pem(keys.rsa), algorithm="RS256")
    for secret in (public_pem(keys.rsa), public_pem(keys.rsa).encode().strip()):
        refused = refusal(auth, hs256_forged_with(secret))
        assert refused.reason == "invalid_token"
        assert "signed with 'HS256'" in str(refused) and "verifies RS256 only" in str(refused)


def test_unsigned_alg_none_token_is_refused_by_every_kind_of_auth(keys: Keys, jwks_file: Path) -> None:
    """alg 'none' is refused by an HMAC secret, a public key and a JWKS alike."""
    for auth, kid in (
        (TokenAuth(secret="s" * 40), None),
        (TokenAuth.from_public_key(public_pem(keys.rsa)), None),
        (TokenAuth.from_jwks(jwks_file), "rsa-1"),
    ):
        refused = refusal(auth, unsigned(kid))
        assert refused.reason == "invalid_token" and "signed with 'none'" in str(refused)


def test_expired_rs256_token_is_token_expired_and_leeway_tolerates_skew(keys: Keys) -> None:
    """An RS256 token past exp is token_expired; a leeway larger than the lateness accepts it."""
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) - 5}, keys.rsa, algorithm="RS256")
    assert refusal(TokenAuth.from_public_key(public_pem(keys.rsa)), token).reason == "token_expired"
    assert TokenAuth.from_public_key(public_pem(keys.rsa), leeway=60).verify(token).id == "alice"


def test_token_signed_by_another_key_is_refused(keys: Keys) -> None:
    """A genuine RS256 token from another key pair: invalid_token, the signature does not match."""
    refused = refusal(TokenAuth.from_public_key(public_pem(keys.rsa)), signed(keys.rsa2, "RS256"))
    assert refused.reason == "invalid_token" and "signature does not match" in str(refused)


def test_a_verify_only_auth_cannot_issue(keys: Keys, jwks_file: Path) -> None:
    """A public key or a JWKS only verifies: issue() says where tokens come from."""
    for auth in (TokenAuth.from_public_key(public_pem(keys.rsa)), TokenAuth.from_jwks(jwks_file)):
        with pytest.raises(KeyConfigError, match="from_private_key"):
            auth.issue("alice")


# -- a JWKS file ------------------------------------------------------------------


def test_jwks_verifies_each_key_by_its_kid_with_its_own_algorithm(keys: Keys, jwks_file: Path) -> None:
    """Tokens from each JWKS key pass when they name it; the 'use: enc' key is left out."""
    auth = TokenAuth.from_jwks(jwks_file)
    assert auth.algorithms == {"RS256", "ES256"}
    assert auth.verify(signed(keys.rsa, "RS256", kid="rsa-1", sub="a")).id == "a"
    assert auth.verify(signed(keys.rsa2, "RS256", kid="rsa-2", sub="b")).id == "b"
    assert auth.verify(signed(keys.ec, "ES256", kid="ec-1", sub="c")).id == "c"
    refused = refusal(auth, signed(keys.ec384, "ES384", kid="enc-1"))
    assert refused.reason == "invalid_token" and "'enc-1' is not in the gateway's JWKS" in str(refused)


def test_jwks_refuses_a_wrong_an_unknown_or_a_missing_kid(keys: Keys, jwks_file: Path) -> None:
    """Wrong kid (signed by another JWKS key), unknown kid, no kid among several keys: invalid_token."""
    auth = TokenAuth.from_jwks(jwks_file)
    wrong = refusal(auth, signed(keys.rsa2, "RS256", kid="rsa-1"))
    assert wrong.reason == "invalid_token"
    assert "signature does not match JWKS key 'rsa-1'" in str(wrong)
    unknown = refusal(auth, signed(keys.rsa, "RS256", kid="nobody"))
    assert unknown.reason == "invalid_token"
    assert "'nobody' is not in the gateway's JWKS (kids 'rsa-1', 'rsa-2', 'ec-1')" in str(unknown)
    missing = refusal(auth, signed(keys.rsa, "RS256"))
    assert missing.reason == "invalid_token" and "no 'kid' header" in str(missing)
    header = _b64(json.dumps({"alg": "RS256", "kid": 7}).encode())
    not_a_string = refusal(auth, f"{header}.{_b64(json.dumps(claims()).encode())}.{_b64(b'sig')}")
    assert not_a_string.reason == "invalid_token"


def test_jwks_key_pins_its_algorithm_against_confusion(keys: Keys, jwks_file: Path) -> None:
    """A kid's key verifies only its algorithm: HS256 forged with its JWK/PEM text, PS256, RS256 on EC."""
    auth = TokenAuth.from_jwks(jwks_file)
    jwk_text = json.dumps(jwk(keys.rsa, "rsa-1", alg="RS256", use="sig"))
    for token in (
        hs256_forged_with(public_pem(keys.rsa), kid="rsa-1"),
        hs256_forged_with(jwk_text, kid="rsa-1"),
        signed(keys.rsa, "PS256", kid="rsa-1"),
        signed(keys.rsa, "RS256", kid="ec-1"),
    ):
        refused = refusal(auth, token)
        assert refused.reason == "invalid_token" and "verifies" in str(refused) and "only" in str(refused)


def test_jwks_of_one_key_also_verifies_tokens_without_kid(keys: Keys) -> None:
    """A single-key JWKS (given as a mapping) accepts a token naming no key, refuses another kid."""
    auth = TokenAuth.from_jwks({"keys": [jwk(keys.ec, "only")]})
    assert auth.verify(signed(keys.ec, "ES256")).id == "alice"
    assert auth.verify(signed(keys.ec, "ES256", kid="only")).id == "alice"
    assert refusal(auth, signed(keys.ec, "ES256", kid="other")).reason == "invalid_token"


# -- keys that cannot work are refused when built -----------------------------------


def _bad_configurations(keys: Keys, tmp: Path) -> list[tuple[Any, str]]:
    encrypted = keys.rsa.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    (tmp / "notjson.json").write_text("{keys")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return [
        (lambda: TokenAuth.from_public_key(public_pem(keys.ec), algorithm="RS256"), "RS256 needs an RSA key"),
        (lambda: TokenAuth.from_public_key(public_pem(keys.ec384), algorithm="ES256"), "curve secp256r1"),
        (lambda: TokenAuth.from_public_key(public_pem(keys.rsa), algorithm="ES256"), "is an RSA key"),
        (lambda: TokenAuth.from_public_key(public_pem(small)), "1024-bit RSA key"),
        (lambda: TokenAuth.from_public_key(public_pem(keys.rsa), algorithm="HS256"), "HMAC algorithm"),
        (
            lambda: TokenAuth.from_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
            "does not parse as a public key",
        ),
        (lambda: TokenAuth.from_public_key(tmp / "missing.pem"), "cannot read the public key file"),
        (lambda: TokenAuth.from_private_key(public_pem(keys.rsa)), "is a public key"),
        (lambda: TokenAuth.from_private_key(encrypted), "is encrypted"),
        (lambda: TokenAuth(secret=public_pem(keys.rsa)), "not an HS256 secret"),
        (lambda: TokenAuth(secret=""), "HS256 needs a secret"),
        (lambda: TokenAuth(secret="s" * 40, algorithm="none"), "unsupported JWT algorithm 'none'"),
        (lambda: TokenAuth(algorithm="RS256"), "from_public_key"),
        (lambda: TokenAuth.from_jwks(tmp / "notjson.json"), "is not JSON"),
        (lambda: TokenAuth.from_jwks(tmp / "missing.json"), "cannot read the JWKS file"),
        (
            lambda: TokenAuth.from_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}),
            "shared secret",
        ),
        (lambda: TokenAuth.from_jwks({"keys": [jwk(keys.rsa, "a"), jwk(keys.ec, "a")]}), "appears twice"),
        (lambda: TokenAuth.from_jwks({"keys": [jwk(keys.rsa, "a"), jwk(keys.ec, None)]}), "'kid' on each"),
        (lambda: TokenAuth.from_jwks({"keys": [jwk(keys.rsa, "a", alg="ES256")]}), "does not parse as a JWK"),
        (lambda: TokenAuth.from_jwks({"keys": [jwk(keys.ec384, "e", use="enc")]}), "no signature key"),
        (lambda: TokenAuth.from_jwks({"keys": "none"}), "{'keys': [...]}"),
    ]


def test_keys_that_do_not_parse_or_fit_are_refused_at_construction(keys: Keys, tmp_path: Path) -> None:
    """Every bad key or algorithm is a KeyConfigError (a ValueError) saying what to do, when built."""
    for build, message in _bad_configurations(keys, tmp_path):
        with pytest.raises(KeyConfigError) as refused:
            build()
        assert message in str(refused.value), (message, str(refused.value))
        assert isinstance(refused.value, RxStoreError) and isinstance(refused.value, ValueError)


def test_hs256_auth_keeps_working_and_refuses_rs256_tokens(keys: Keys) -> None:
    """TokenAuth(secret=...) issues and verifies HS256 as before; an RS256 token is refused."""
    auth = TokenAuth(secret="rxstore-test-secret-0123456789abcdef")
    assert auth.verify(auth.issue("alice", ttl=60)).id == "alice"
    assert refusal(auth, auth.issue("alice", ttl=-10)).reason == "token_expired"
    refused = refusal(auth, signed(keys.rsa, "RS256"))
    assert refused.reason == "invalid_token" and "verifies HS256 only" in str(refused)
    assert "rxstore-test-secret" not in repr(auth)


def test_auth_module_doctests_pass() -> None:
    """The examples in rxstore.gateway.access.auth (and its key helpers) run."""
    for module in (rxstore.gateway.access.auth, rxstore.gateway.access.jwt_keys):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0


# -- end to end: a real gateway and a RootStore ---------------------------------------


@pytest.fixture
async def jwks_gateway(tmp_path: Path, jwks_file: Path) -> AsyncIterator[RealtimeGateway]:
    log = open_change_log(f"sqlite:///{tmp_path}/app.db")
    await log.open()
    await create_demo_schema(log)
    gateway = RealtimeGateway(log, topics=["posts"], auth=TokenAuth.from_jwks(jwks_file))
    await gateway.start("127.0.0.1", 0)
    yield gateway
    await gateway.stop()


async def _refused_reason(gateway: RealtimeGateway, token: str) -> ConnectionRefused:
    root = RootStore(gateway.url, stores=[PostStore()], token=token)
    with pytest.raises(ConnectionRefused) as refused:
        await asyncio.wait_for(root.setup_realtime(), 20)
    await root.teardown_realtime()
    return refused.value


async def test_gateway_with_jwks_serves_rs256_tokens_and_refuses_confused_ones(
    keys: Keys, jwks_gateway: RealtimeGateway
) -> None:
    """A RootStore with a genuine RS256 token follows the table; HS256-confused and unknown kids: refused."""
    posts = PostStore()
    issuer = TokenAuth.from_private_key(private_pem(keys.rsa), kid="rsa-1")
    async with RootStore(jwks_gateway.url, stores=[posts], token=issuer.issue("alice")):
        await save_post(jwks_gateway.log, Post(id="p1", title="signed with RS256"))
        await wait_for(lambda: "p1" in posts.value, what="row over an RS256 connection")
    confused = await _refused_reason(jwks_gateway, hs256_forged_with(public_pem(keys.rsa), kid="rsa-1"))
    assert confused.reason == "invalid_token" and "verifies RS256 only" in str(confused)
    unknown = await _refused_reason(jwks_gateway, signed(keys.rsa, "RS256", kid="nobody"))
    assert unknown.reason == "invalid_token" and "not in the gateway's JWKS" in str(unknown)


# -- the command line -------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RXSTORE, *args], capture_output=True, text=True, timeout=30, env=env)


async def test_serve_with_a_public_key_and_token_with_the_private_key(keys: Keys, tmp_path: Path) -> None:
    """rxstore serve --algorithm RS256 --public-key FILE accepts rxstore token --private-key tokens."""
    (tmp_path / "key.pem").write_text(private_pem(keys.rsa))
    (tmp_path / "public.pem").write_text(public_pem(keys.rsa))
    db = tmp_path / "app.db"
    env = {k: v for k, v in os.environ.items() if k != "RXSTORE_SECRET"}
    server = await asyncio.create_subprocess_exec(
        *RXSTORE, "serve", "--db", f"sqlite:///{db}", "--demo-schema", "--port", "0",
        "--algorithm", "RS256", "--public-key", str(tmp_path / "public.pem"),
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        found = re.search(r"http://[\d.]+:\d+", line)
        assert found, line
        issued = _cli(
            "token", "--sub", "bob", "--private-key", str(tmp_path / "key.pem"), "--kid", "k1", env=env
        )
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip()
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        posts = PostStore()
        async with RootStore(found.group(0), stores=[posts], token=token):
            with sqlite3.connect(db) as conn:
                conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'written with sqlite3')")
            await wait_for(lambda: "p1" in posts.value, what="change over an RS256 connection")
        forged = hs256_forged_with(public_pem(keys.rsa))
        root = RootStore(found.group(0), stores=[PostStore()], token=forged)
        with pytest.raises(ConnectionRefused) as refused:
            await asyncio.wait_for(root.setup_realtime(), 20)
        await root.teardown_realtime()
        assert refused.value.reason == "invalid_token"
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 20) == 0


async def test_cli_refuses_keys_that_cannot_work_with_a_clear_message(keys: Keys, tmp_path: Path) -> None:
    """serve/token exit at once, saying what to pass, for a PEM as --secret, a bad key file, mixed options."""
    public, garbage = tmp_path / "public.pem", tmp_path / "garbage.pem"
    public.write_text(public_pem(keys.rsa))
    garbage.write_text("not a key")
    db = f"sqlite:///{tmp_path}/app.db"
    cases = [
        (
            ["serve", "--db", db, "--algorithm", "RS256", "--secret", public_pem(keys.rsa)],
            "pass --public-key FILE",
        ),
        (["serve", "--db", db, "--public-key", str(garbage)], "does not parse as a public key"),
        (["serve", "--db", db, "--public-key", str(public), "--algorithm", "ES256"], "ES256 needs an EC key"),
        (["serve", "--db", db, "--public-key", str(public), "--jwks", str(public)], "--jwks goes alone"),
        (["serve", "--db", db, "--jwks", str(public)], "is not JSON"),
        (["token", "--sub", "a", "--private-key", str(public)], "is a public key"),
        (["token", "--sub", "a", "--algorithm", "ES256", "--secret", "s" * 40], "pass --private-key FILE"),
    ]
    results = await asyncio.gather(*(asyncio.to_thread(_cli, *args) for args, _ in cases))
    for (args, message), result in zip(cases, results, strict=True):
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


# -- HS256 (the default): issue and verify -----------------------------------------------------

HS_SECRET = "rxstore-auth-test-secret-0123456789abcdef-long-enough-for-hs512-too"


def test_an_issued_token_verifies_to_its_user_with_every_claim() -> None:
    auth = TokenAuth(secret=HS_SECRET)
    user = auth.verify(auth.issue("alice", ttl=60, role="admin", tenant=7))
    assert user.id == "alice"
    assert {k: user.claims[k] for k in ("sub", "role", "tenant")} == {
        "sub": "alice",
        "role": "admin",
        "tenant": 7,
    }
    assert user.claims["exp"] - user.claims["iat"] == 60


def test_a_token_issued_without_ttl_has_no_exp_and_keeps_verifying() -> None:
    auth = TokenAuth(secret=HS_SECRET)
    user = auth.verify(auth.issue("alice", ttl=None))
    assert "exp" not in user.claims and user.id == "alice"


def test_surrounding_whitespace_of_a_token_is_ignored_by_verify() -> None:
    auth = TokenAuth(secret=HS_SECRET)
    token = auth.issue("alice", ttl=60)
    assert auth.verify(f" \t{token}\r\n").id == "alice"


def test_an_expired_token_is_token_expired_unless_within_leeway() -> None:
    token = TokenAuth(secret=HS_SECRET).issue("alice", ttl=-5)
    assert refusal(TokenAuth(secret=HS_SECRET), token).reason == "token_expired"
    assert TokenAuth(secret=HS_SECRET, leeway=30).verify(token).id == "alice"


@pytest.mark.parametrize("token", [None, "", "   ", 42, b"bytes", "not.a.jwt", "a.b"])
def test_a_missing_or_malformed_token_is_invalid_token(token: object) -> None:
    assert refusal(TokenAuth(secret=HS_SECRET), token).reason == "invalid_token"


def test_a_token_signed_with_another_secret_is_refused_naming_the_signature() -> None:
    forged = TokenAuth(secret="another-secret-of-enough-length-0123456789").issue("alice")
    error = refusal(TokenAuth(secret=HS_SECRET), forged)
    assert error.reason == "invalid_token" and "signature does not match" in str(error)


def test_a_token_of_another_hmac_algorithm_is_refused_naming_both() -> None:
    token = jwt.encode({"sub": "alice"}, HS_SECRET, algorithm="HS512")
    error = refusal(TokenAuth(secret=HS_SECRET), token)
    assert error.reason == "invalid_token" and "HS512" in str(error) and "HS256" in str(error)


@pytest.mark.parametrize("claims", [{}, {"sub": ""}, {"sub": 5}, {"name": "alice"}])
def test_a_token_without_a_non_empty_string_sub_is_refused(claims: dict[str, Any]) -> None:
    token = jwt.encode(claims, HS_SECRET, algorithm="HS256")
    assert refusal(TokenAuth(secret=HS_SECRET), token).reason == "invalid_token"
