"""The release signing key (Ed25519, the ``cryptography`` package): make one, load it, sign, verify.

The private key is PKCS#8 PEM, in ``release.signing_key_file`` (mode 0600) or, taking precedence,
the PEM text in the environment variable ``EDGEFORGE_SIGNING_KEY`` (a CI secret). The public key file
is one line ``ed25519 <base64 of the raw 32-byte key>`` (docs: the bundle contract), what devices
trust. A key's id is the first 16 hex digits of the sha256 of its raw 32 bytes. No message here
quotes key material: errors name the file or the variable and say what to do.

``edgeforge keygen [--out PATH] [--force]`` (:func:`main`) writes a new pair.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tasks import stage
from tasks.io import write_text

ENV = "EDGEFORGE_SIGNING_KEY"
PUB_PREFIX = "ed25519"
_TO_MAKE = "make a key pair with `edgeforge keygen` (or set release.signing_key_file)"


def raw_public(pub: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub: Ed25519PublicKey | bytes) -> str:
    """First 16 hex digits of sha256 of the raw 32-byte public key."""
    raw = pub if isinstance(pub, bytes) else raw_public(pub)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_line(pub: Ed25519PublicKey) -> str:
    """The public key file's one line, ``ed25519 <base64>`` with ``\\n``."""
    return f"{PUB_PREFIX} {base64.b64encode(raw_public(pub)).decode()}\n"


def parse_public(text: str, where: str) -> Ed25519PublicKey:
    """A public key from its one-line form; ``where`` names its source in the error."""
    parts = text.split()
    try:
        if len(parts) != 2 or parts[0] != PUB_PREFIX:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(parts[1], validate=True))
    except (ValueError, binascii.Error):
        raise stage.StageError(
            f"{where} is not an Ed25519 public key (one line `{PUB_PREFIX} <base64 of 32 bytes>`); {_TO_MAKE}"
        ) from None


def public_from(key: bytes | str) -> Ed25519PublicKey:
    """A public key from its raw 32 bytes or its one-line form."""
    if isinstance(key, bytes) and len(key) == 32:
        return Ed25519PublicKey.from_public_bytes(key)
    return parse_public(key.decode() if isinstance(key, bytes) else key, "the public key given")


def public_key_line(cfg) -> str:
    """``release.public_key_file``'s key as one line ``ed25519 <base64>`` (no newline), checked:
    what ``edgeforge fleet trust`` installs on devices."""
    return public_line(load_public(cfg.release.public_key_file)).strip()


def load_public(path: str | os.PathLike) -> Ed25519PublicKey:
    p = Path(path)
    if not p.is_file():
        raise stage.StageError(f"no public key at {p} (release.public_key_file); {_TO_MAKE}")
    return parse_public(p.read_text(), str(p))


def _private_from_pem(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # the library's message may quote the input: never shown
        raise stage.StageError(
            f"{where} holds no unencrypted PKCS#8 PEM private key; {_TO_MAKE}, or fix {where}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise stage.StageError(f"{where} holds a {type(key).__name__}, not an Ed25519 private key; {_TO_MAKE}")
    return key


def load_private(key_file: str | os.PathLike) -> Ed25519PrivateKey:
    """The signing key: env ``EDGEFORGE_SIGNING_KEY`` (PEM text) when set, else ``key_file``."""
    env = os.environ.get(ENV)
    if env:
        return _private_from_pem(env.encode(), f"environment variable {ENV}")
    p = Path(key_file)
    if not p.is_file():
        raise stage.StageError(
            f"no signing key: {ENV} is not set and {p} (release.signing_key_file) does not exist; {_TO_MAKE}"
        )
    return _private_from_pem(p.read_bytes(), str(p))


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The Ed25519 signature of ``data``, base64 (no newline)."""
    return base64.b64encode(key.sign(data)).decode()


def verify(pub: Ed25519PublicKey, data: bytes, sig_b64: str) -> bool:
    """Whether ``sig_b64`` (base64, surrounding whitespace ignored) signs ``data`` under ``pub``."""
    try:
        pub.verify(base64.b64decode(sig_b64.strip(), validate=True), data)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def generate(private_path: str | os.PathLike, public_path: str | os.PathLike, force: bool = False) -> str:
    """Write a new key pair (the private file 0600 from its creation on); returns its key id.
    Refuses to replace an existing private key unless ``force``."""
    priv_p, pub_p = Path(private_path), Path(public_path)
    if priv_p.exists() and not force:
        raise stage.StageError(
            f"{priv_p} exists: a new key would orphan every device that trusts the old one; "
            "pass --force to replace it (then `edgeforge fleet trust` the new public key)"
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    priv_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = priv_p.with_name(f".{priv_p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(tmp, 0o600)  # an existing tmp keeps its mode through O_CREAT
        os.replace(tmp, priv_p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_text(pub_p, public_line(key.public_key()))
    os.chmod(pub_p, 0o644)  # public: devices and operators read it
    return key_id(key.public_key())


def main(argv: list[str] | None = None) -> None:
    """``edgeforge keygen``: a new signing key pair at release.signing_key_file / public_key_file
    (``--out PATH``: the private key at PATH, the public one at PATH with ``.pub``)."""
    p = stage.parser("release.keys")
    p.prog = "edgeforge keygen"
    p.add_argument("--out", default=None, help="private key path (default: release.signing_key_file)")
    p.add_argument("--force", action="store_true", help="replace an existing key")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv[1:] if argv[:1] == ["--"] else argv)  # `edgeforge release -- --version 1.2.0`
    with stage.stage_errors("keygen"):
        if args.out:
            priv, pub = Path(args.out), Path(args.out).with_suffix(".pub")
        else:
            cfg = stage.load(args)
            priv, pub = Path(cfg.release.signing_key_file), Path(cfg.release.public_key_file)
        kid = generate(priv, pub, args.force)
        print(f"key {kid}: private {priv} (mode 0600, keep it secret), public {pub}")


if __name__ == "__main__":
    main()
