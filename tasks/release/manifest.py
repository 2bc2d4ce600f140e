"""A release bundle's manifest: its canonical bytes, the map of every file's sha256 and size, the
signature beside it, and the host-side check of a bundle folder (signature, every hash, no file
missing or extra). The layout is the bundle contract (``manifest.json``, ``manifest.sig``, then the
files the manifest lists, paths relative and POSIX)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tasks import stage
from tasks.config import Config
from tasks.io import sha256_file
from tasks.release import keys

FORMAT = "edgeforge-release/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"


def canonical(manifest: dict[str, Any]) -> bytes:
    """The exact bytes of ``manifest.json`` (sorted keys, no spaces, ASCII): what is signed."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def bundle_sha(bundle: Path | bytes) -> str:
    """The bundle's identity: sha256 of ``manifest.json``'s bytes (given, or read from the bundle folder)."""
    data = bundle if isinstance(bundle, bytes) else (Path(bundle) / MANIFEST).read_bytes()
    return hashlib.sha256(data).hexdigest()


def _files_under(root: Path) -> list[str]:
    """Every regular file under ``root`` (relative POSIX paths, sorted); a symlink is refused."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            raise stage.StageError(f"{p}: a bundle holds no symbolic links")
        if p.is_file():
            out.append(p.relative_to(root).as_posix())
    return out


def files_map(root: Path) -> dict[str, dict[str, Any]]:
    """``{relpath: {"sha256", "size"}}`` of every file under ``root`` except the manifest and its signature."""
    return {
        rel: {"sha256": sha256_file(root / rel), "size": (root / rel).stat().st_size}
        for rel in _files_under(root)
        if rel not in (MANIFEST, SIGNATURE)
    }


def write_signed(root: Path, manifest: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """Set ``manifest["files"]`` from the folder and ``key_id`` from ``key``, write ``manifest.json`` and
    ``manifest.sig`` into ``root``; returns the bundle sha."""
    manifest["files"] = files_map(root)
    manifest["key_id"] = keys.key_id(key.public_key())
    data = canonical(manifest)
    (root / MANIFEST).write_bytes(data)
    (root / SIGNATURE).write_text(keys.sign(key, data) + "\n")
    return bundle_sha(data)


def read(root: Path) -> tuple[dict[str, Any], bytes, str]:
    """``(manifest, its bytes, signature text)`` of the bundle in ``root``."""
    mp, sp = root / MANIFEST, root / SIGNATURE
    for p in (mp, sp):
        if not p.is_file():
            raise stage.StageError(
                f"{p} is missing: {root} is not a release bundle (make one with `edgeforge release`)"
            )
    data = mp.read_bytes()
    try:
        manifest = json.loads(data)
    except ValueError:
        raise stage.StageError(f"{mp} is not JSON: the bundle is damaged; make it again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise stage.StageError(f"{mp}: format is not {FORMAT!r}; this EdgeForge reads only that format")
    return manifest, data, sp.read_text()


def check(root: Path, pub: Ed25519PublicKey) -> dict[str, Any]:
    """Verify the bundle in ``root`` against ``pub``: the key id, the signature of ``manifest.json``'s
    exact bytes, then every listed file's size and sha256, and that no file is missing or extra.
    Returns the manifest; raises :class:`tasks.stage.StageError` naming the first problem."""
    root = Path(root)
    manifest, data, sig = read(root)
    kid = keys.key_id(pub)
    if manifest.get("key_id") != kid:
        raise stage.StageError(
            f"{root}: signed by key {manifest.get('key_id')!r}, not by the public key given ({kid}); "
            "check release.public_key_file"
        )
    if not keys.verify(pub, data, sig):
        raise stage.StageError(f"{root}: the signature of {MANIFEST} does not verify: the bundle was altered")
    want = manifest.get("files") or {}
    have = [r for r in _files_under(root) if r not in (MANIFEST, SIGNATURE)]
    extra = sorted(set(have) - set(want))
    if extra:
        raise stage.StageError(f"{root}: file(s) not in the manifest: {', '.join(extra)}")
    for rel, meta in sorted(want.items()):
        p = root / rel
        if not p.is_file():
            raise stage.StageError(f"{root}: {rel} is missing")
        if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
            raise stage.StageError(f"{root}: {rel} does not match its sha256 in the manifest: the bundle was altered")
    return manifest


def read_manifest(bundle: Path, public_key: bytes | str | None = None) -> dict[str, Any]:
    """The manifest of the bundle folder ``bundle``; with ``public_key`` (raw 32 bytes or the public key
    file's line) the whole bundle is checked first (:func:`check`). Without one the device's agent is
    what verifies it, before it builds or activates anything."""
    if public_key is None:
        return read(Path(bundle))[0]
    return check(Path(bundle), keys.public_from(public_key))


def signature_ok(cfg: Config, manifest: dict[str, Any] | None, signature: str | None) -> bool:
    """Whether ``signature`` (a device's ``manifest.sig``) signs ``manifest`` (its parsed
    ``manifest.json``: canonical JSON, so its bytes are :func:`canonical` of it) under
    ``release.public_key_file``; False when either is missing or that file is unreadable."""
    if not manifest or not signature:
        return False
    try:
        pub = keys.load_public(cfg.release.public_key_file)
    except stage.StageError:
        return False
    return keys.verify(pub, canonical(manifest), signature)
