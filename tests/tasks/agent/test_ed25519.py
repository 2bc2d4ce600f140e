"""The device's stdlib Ed25519 verifier agrees with ``cryptography`` (OpenSSL) and RFC 8032's vectors."""

from __future__ import annotations

import ast
import random
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tasks.agent import ed25519

# RFC 8032 section 7.1, TEST 1-3: (secret key, public key, message, signature), hex; copied from the RFC
# via public copies (PyCryptodome's SelfTest, several Rust/C++ test suites agree byte for byte) and
# re-derived below with cryptography (signing is deterministic), so a mistyped digit fails the test.
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
        "d25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c"
        "387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc659"
        "4a7c15e9716ed28dc027beceea1ec40a",
    ),
]
VERIFIERS = [ed25519.verify, ed25519.verify_any]


def _raw(key) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("vector", RFC8032, ids=["test1", "test2", "test3"])
def test_rfc8032_vectors(vector):
    sk, pk, msg, sig = map(bytes.fromhex, vector)
    key = Ed25519PrivateKey.from_private_bytes(sk)
    assert _raw(key) == pk and key.sign(msg) == sig  # the vectors as typed are the RFC's
    assert ed25519.verify(pk, msg, sig)
    assert not ed25519.verify(pk, msg + b"\0", sig)


@pytest.mark.parametrize("verify", VERIFIERS)
def test_agrees_with_cryptography_on_random_keys(verify):
    rng = random.Random(17)
    for _ in range(4):
        key = Ed25519PrivateKey.generate()
        pk, msg = _raw(key), rng.randbytes(rng.randrange(0, 300))
        sig = key.sign(msg)
        assert verify(pk, msg, sig)
        for bad_msg in (_flip(msg, rng.randrange(len(msg) * 8)) if msg else b"x", msg + b"\n"):
            assert not verify(pk, bad_msg, sig)
        for bit in (rng.randrange(256), 256 + rng.randrange(252)):  # a bit of R, a bit of S
            assert not verify(pk, msg, _flip(sig, bit))
        assert not verify(_flip(pk, rng.randrange(255)), msg, sig)
        assert not verify(_raw(Ed25519PrivateKey.generate()), msg, sig)


@pytest.mark.parametrize("verify", VERIFIERS)
def test_s_at_or_above_the_group_order_is_refused(verify):
    """S + L verifies the same equation; RFC 8032 (and OpenSSL) refuse it as malleable."""
    key = Ed25519PrivateKey.generate()
    pk, sig = _raw(key), key.sign(b"manifest")
    s = int.from_bytes(sig[32:], "little")
    assert verify(pk, b"manifest", sig)
    assert not verify(pk, b"manifest", sig[:32] + (s + ed25519.L).to_bytes(32, "little"))
    assert not verify(pk, b"manifest", sig[:32] + ed25519.L.to_bytes(32, "little"))


@pytest.mark.parametrize("verify", VERIFIERS)
def test_wrong_lengths_are_refused(verify):
    key = Ed25519PrivateKey.generate()
    pk, sig = _raw(key), key.sign(b"m")
    for p, s in ((pk[:31], sig), (pk + b"\0", sig), (pk, sig[:63]), (pk, sig + b"\0"), (b"", b"")):
        assert not verify(p, b"m", s)


def test_non_canonical_points_are_refused():
    # y = p (non-canonical encoding of y = 0), y = p + 1 (of the identity's y = 1), x = 0 with the sign bit set
    assert ed25519.decode_point(ed25519.P.to_bytes(32, "little")) is None
    assert ed25519.decode_point((ed25519.P + 1).to_bytes(32, "little")) is None
    assert ed25519.decode_point((1 | 1 << 255).to_bytes(32, "little")) is None
    assert ed25519.decode_point((1).to_bytes(32, "little")) == ed25519.IDENTITY
    # a y with no x on the curve (x^2 not a square): y = 2
    assert ed25519.decode_point((2).to_bytes(32, "little")) is None
    # the base point decodes from its encoding (RFC 8032 5.1: y = 4/5)
    base = ed25519.decode_point(bytes.fromhex("58" + "66" * 31))
    assert base is not None and base[:2] == ed25519.B[:2]


def test_module_is_stdlib_only_python38():
    path = ed25519.__file__
    tree = ast.parse(open(path).read(), feature_version=(3, 8))
    top = [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
    top += [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    assert all(n.split(".")[0] in sys.stdlib_module_names | {"__future__"} for n in top), top
