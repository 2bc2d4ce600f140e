"""Ed25519 signature verification (RFC 8032 section 5.1.7), stdlib only, for devices without ``cryptography``.

Only verification: the device checks the release manifests the host signed; it never holds a private key.

Decoding is strict: a point whose y is not below p, whose x^2 has no square root, or whose x is 0 with
the sign bit set is refused (RFC 8032 5.1.3), and so is a signature whose S is not below the group
order L. The check is the cofactorless ``[S]B == R + [k]A`` (k = SHA-512(R || A || M) mod L), as
OpenSSL's ED25519_verify (and so ``cryptography``) computes it: the device then accepts exactly the
signatures the host's ``cryptography`` accepts. The cofactored ``[8][S]B == [8]R + [8][k]A`` would also
accept signatures with a small-order component that OpenSSL refuses; honestly made signatures pass
both, so nothing is lost by agreeing with the host. Not constant-time: nothing secret is handled here.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
_BY = 4 * pow(5, P - 2, P) % P


def _recover_x(y: int, sign: int) -> int | None:
    """x of the point with this y and x's low bit ``sign``, or None (RFC 8032 5.1.3 steps 2-4)."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    return P - x if (x & 1) != sign else x


_BX = _recover_x(_BY, 0)
#: extended homogeneous coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z
B = (_BX, _BY, 1, _BX * _BY % P)
IDENTITY = (0, 1, 1, 0)


def _add(p: tuple, q: tuple) -> tuple:
    """RFC 8032 5.1.4's addition (complete for every pair of points)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s: int, p: tuple) -> tuple:
    q = IDENTITY
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(p: tuple, q: tuple) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def decode_point(s: bytes) -> tuple | None:
    """The point encoded by 32 bytes, or None when the encoding is not canonical or not on the curve."""
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` (64 bytes: R || S) is ``public_key``'s (32 bytes) Ed25519 signature of ``message``."""
    if not isinstance(public_key, bytes) or not isinstance(signature, bytes):
        return False
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = decode_point(public_key), decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + bytes(message)).digest(), "little") % L
    return _equal(_mul(s, B), _add(r, _mul(k, a)))


def verify_any(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """:func:`verify` through ``cryptography`` (OpenSSL) where the device has it, else this module's code."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return verify(public_key, message, signature)
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
