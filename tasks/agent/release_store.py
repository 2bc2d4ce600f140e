"""The device's release folder (contract 2's layout: lock, current, state, installed releases) and its
checks of a bundle (contract 1), before anything else is done with it: the
manifest is signed by a key in ``<root>/trust``, every file it lists is there with its sha256 and
size, and nothing else is. Stdlib only (the device agent's zipapp carries it); no file of the bundle
is opened as anything but bytes here."""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

if __package__:
    from . import agent, ed25519
else:  # inside the agent's zipapp: top-level modules
    import agent
    import ed25519

FORMAT = "edgeforge-release/1"
SIGNED = ("manifest.json", "manifest.sig")
KEY_ID = re.compile(r"[0-9a-f]{16}")
BUNDLE_SHA = re.compile(r"[0-9a-f]{64}")
RELEASE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,127}")


def fail(kind: str, message: str):
    raise agent.AgentError(kind, message)


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_public_key(text: str) -> bytes:
    """The raw 32-byte key of a public key file's line ``ed25519 <base64>``; bad_input otherwise."""
    parts = text.strip().split() if isinstance(text, str) else []
    try:
        raw = base64.b64decode(parts[1], validate=True) if len(parts) == 2 and parts[0] == "ed25519" else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32 or ed25519.decode_point(raw) is None:
        fail("bad_input", "public_key must be one line 'ed25519 <base64 of the raw 32-byte key>' (the .pub file)")
    return raw


def safe_relpath(name) -> str:
    """A manifest file name: relative, POSIX, no ``..``/``.``/empty parts, no backslash or NUL."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if not name or name.startswith("/") or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        fail("tampered", f"manifest file name {name!r} is not a relative path inside the bundle")
    return name


def checked_name(value, pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value) or value in (".", ".."):
        fail("bad_input", f"request key {what} must match {pattern.pattern}, not {value!r}")
    return value


def _inside(folder: Path, rel: str) -> Path:
    """``folder/rel``, refused when a symlink on the way (or the file itself) leads anywhere at all."""
    path, here = folder / rel, folder
    for part in rel.split("/"):
        here = here / part
        if here.is_symlink():
            fail("tampered", f"{rel}: {here.relative_to(folder)} is a symlink; a bundle holds plain files only")
    return path


def read_signed(folder: Path, root: Path, bundle_sha: str | None = None) -> tuple:
    """``(manifest, manifest bytes, signature base64)`` of ``folder`` once the signature checks out against a
    key in ``root/trust`` (kind ``untrusted`` otherwise); ``bundle_sha``: what manifest.json must hash to."""
    for name in SIGNED:
        p = _inside(folder, name)
        if not p.is_file():
            fail("tampered", f"{folder}/{name} is missing; upload the whole bundle (release-staged says what is there)")
    data = (folder / "manifest.json").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if bundle_sha and digest != bundle_sha:
        fail("tampered", f"manifest.json's sha256 is {digest}, not the bundle's {bundle_sha}")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as e:
        fail("tampered", f"manifest.json is not JSON: {e}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fail("tampered", f"manifest.json's format is not {FORMAT}")
    kid = manifest.get("key_id")
    pub = root / "trust" / f"{kid}.pub"
    if not isinstance(kid, str) or not KEY_ID.fullmatch(kid) or not pub.is_file():
        fail(
            "untrusted",
            f"the bundle is signed by key {kid!r}, which this device does not trust; trust its public key first",
        )
    raw = parse_public_key(pub.read_text())
    if key_id(raw) != kid:
        fail("untrusted", f"{pub} holds a key whose id is {key_id(raw)}, not {kid}; trust the key again")
    sig_text = (folder / "manifest.sig").read_text(errors="replace").strip()
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        sig = b""
    if not ed25519.verify_any(raw, data, sig):
        fail(
            "untrusted",
            f"manifest.sig is not key {kid}'s signature of manifest.json: the manifest or its signature was altered",
        )
    return manifest, data, sig_text


def check_files(folder: Path, manifest: dict, extra_ok=()) -> dict:
    """Every file of ``manifest["files"]`` in ``folder`` with its size and sha256, and no other file (but
    the signed pair and the top-level names ``extra_ok``); kind ``tampered`` naming the file otherwise."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        fail("tampered", "manifest.json lists no files")
    for rel, want in sorted(files.items()):
        path = _inside(folder, safe_relpath(rel))
        if not isinstance(want, dict) or not path.is_file():
            fail("tampered", f"{rel} is listed in manifest.json but missing from the bundle; upload it again")
        if path.stat().st_size != want.get("size") or agent.sha256(path) != want.get("sha256"):
            fail(
                "tampered", f"{rel} differs from manifest.json (size or sha256): the file was altered; upload it again"
            )
    for dirpath, dirnames, filenames in os.walk(str(folder)):
        rel_dir = Path(dirpath).relative_to(folder).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in extra_ok]
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in files or rel in SIGNED or rel in extra_ok:
                continue
            what = "an unfinished upload" if name.endswith(".part") else "not listed in manifest.json"
            fail("tampered", f"{rel} is in the bundle but {what}; remove it (extra files are refused)")
    return files


RUNTIMES = ("onnxruntime", "openvino", "tensorrt")


def check_manifest(manifest: dict, files: dict) -> dict:
    """The parts of a (verified) manifest the device uses: ``artifact`` (runtime, files, source) and
    ``golden`` (inputs, outputs, atol, rtol), every path one of the verified ``files``; bad_input otherwise."""
    art, golden = manifest.get("artifact"), manifest.get("golden")
    if not isinstance(art, dict) or art.get("runtime") not in RUNTIMES or not isinstance(art.get("files"), list):
        fail("bad_input", f"manifest.json's artifact must name a runtime of {RUNTIMES} and its files")
    if not isinstance(golden, dict) or not all(isinstance(golden.get(k), (int, float)) for k in ("atol", "rtol")):
        fail("bad_input", "manifest.json's golden must give inputs, outputs, atol and rtol")
    paths = [*art["files"], art.get("source") or "source.onnx", golden.get("inputs"), golden.get("outputs")]
    paths += [art["calibration_cache"]] if art.get("calibration_cache") else []
    for rel in paths:
        if rel not in files:
            fail("bad_input", f"manifest.json names {rel!r}, which is not one of its files")
    return art


# ---- the release folder

#: names a release folder holds beside the bundle's files (re-verification allows them)
INSTALLED_EXTRAS = ("build", "installed.json")
LOCK_WAIT_S = 120


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(str(tmp), str(path))


def root_of(req: dict) -> Path:
    value = req.get("root")
    if not isinstance(value, str) or not value:
        fail("bad_input", f"request key 'root' must be the device's release folder, not {value!r}")
    return Path(value)


ACTIVATING = "activating.json"  # {release, previous} while a switch awaits its health check


def _recover(root: Path) -> None:
    """Undo what a killed command left (called with the lock held, so no other command is mid-way):
    partial installs, and an activation whose health check never finished: its previous release
    (or none) is made current again."""
    for stale in list((root / "releases").glob(".partial-*")) + list((root / "builds").glob("*")):
        shutil.rmtree(str(stale), ignore_errors=True)
    marker = root / ACTIVATING
    if marker.is_file():
        try:
            pending = json.loads(marker.read_text())
        except ValueError:
            pending = {}
        if current(root) == pending.get("release"):
            point(root, pending.get("previous"))
            agent.log(
                f"the activation of {pending.get('release')} was interrupted before its health check finished: "
                f"{pending.get('previous') or 'no release'} is current again"
            )
        marker.unlink()


@contextlib.contextmanager
def locked(root: Path, wait: bool = True):
    """Hold ``<root>/lock`` (kind ``busy`` after LOCK_WAIT_S); with ``wait`` false, yield False at once
    when another command holds it (and True when this one does)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(str(root / "lock"), "a") as f:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not wait:
                    yield False
                    return
                if time.monotonic() > deadline:
                    fail("busy", f"{root}/lock is held by another release command for over {LOCK_WAIT_S} s")
                time.sleep(0.2)
        _recover(root)
        yield True


def current(root: Path) -> str | None:
    link = root / "current"
    return os.path.basename(os.readlink(str(link))) if link.is_symlink() else None


def point(root: Path, release: str | None) -> None:
    """Switch ``current`` to ``releases/<release>`` (None: remove it) in one rename."""
    link = root / "current"
    if release is None:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        return
    tmp = root / ".current.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"releases/{release}", str(tmp))
    os.replace(str(tmp), str(link))


def state(root: Path) -> dict:
    try:
        return json.loads((root / "state.json").read_text())
    except (OSError, ValueError):
        return {"history": []}


def installed(root: Path, release: str) -> dict:
    path = root / "releases" / checked_name(release, RELEASE_ID, "release") / "installed.json"
    if not path.is_file():
        fail("bad_input", f"release {release} is not installed on this device (no {path}); install it first")
    return json.loads(path.read_text())


def reverify(root: Path, release: str) -> dict:
    """An installed release checked again as at install (signature, every file, the built artifact)."""
    info, folder = installed(root, release), root / "releases" / release
    manifest, _, _ = read_signed(folder, root, info["bundle_sha256"])
    check_files(folder, manifest, INSTALLED_EXTRAS)
    if agent.sha256(folder / info["artifact"]) != info["artifact_sha256"]:
        fail("tampered", f"{folder / info['artifact']} changed since it was installed; install the release again")
    return info
