"""Deploy a signed release bundle to one device, roll it back, and ask what it runs.

The host only moves files and asks; the device decides (``tasks/agent/release.py``): it verifies
the signature against the public key it holds and every file's hash before it builds or activates
anything, rebuilds the artifact when the bundle's does not fit its fingerprint, smoke-tests the
golden inputs, switches ``current`` atomically and rolls back by itself when the health check
after activation fails. One deploy of one device:

1. ``release-status``: what the device runs. The same release again changes nothing.
2. The regression gate (:mod:`tasks.release.gate`) against the active release's manifest (its
   signature checked here too).
3. ``release-staged``, then an upload of each file the staging folder lacks or holds with another
   hash (an interrupted deploy resumes; each file lands whole, sha256-verified, ``SSHHost.put``).
4. ``release-install`` (verify, rebuild when needed, smoke test), then ``release-activate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks.agent.client import AgentError, device
from tasks.config import Config
from tasks.hosts import HostError
from tasks.io import sha256_file
from tasks.release import gate
from tasks.release.manifest import bundle_sha, read_manifest
from tasks.release.store import release_root
from tasks.stage import StageError
from tasks.stage import message as stage_message

#: agent error kinds -> what the operator does about them
HINTS = {
    "untrusted": "install the release public key on the device: edgeforge fleet trust --target {target}",
    "tampered": "the bundle changed after it was signed: make it again with edgeforge release",
    "smoke": "the device's outputs on the golden inputs are outside the bundle's tolerance; the previous release stays active",
    "health": "the device rolled back to its previous release",
}


@dataclass
class Outcome:
    """What one device's deploy (or rollback) did; ``status``: activated | unchanged | refused |
    failed | rolled back."""

    target: str
    status: str = "pending"
    version: str | None = None
    release: str | None = None
    previous: str | None = None
    error: str | None = None
    kind: str | None = None
    seconds: float = 0.0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    rebuilt: bool | None = None
    reason: str | None = None
    build_log: str | None = None
    artifact_sha256: str | None = None
    activated_at: str | None = None
    gate: dict = field(default_factory=dict)
    manifest: dict | None = field(default=None, repr=False)  # a rollback's restored release
    bundle_sha: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("activated", "unchanged")

    def as_dict(self) -> dict:
        return asdict(self)


def device_class(cfg: Config, target: str) -> str:
    """The build target whose device's winner ``target`` runs (``release.devices``; else itself)."""
    return cfg.release.devices.get(target, target)


def root(dev) -> str:
    """The device's release folder (under the target's work folder)."""
    return release_root(dev.target)


def _upload(dev, bundle: Path, manifest: dict, staged: dict, log: Callable[[str], None]) -> tuple[int, int]:
    """Upload each bundle file the device's staging folder lacks (or holds with another hash);
    ``(files, bytes)`` uploaded. The manifest and its signature go last, once the files are there."""
    have = staged.get("files") or {}
    names = [*sorted(manifest["files"]), "manifest.sig", "manifest.json"]
    n = size = 0
    for rel in names:
        local = bundle / rel
        if have.get(rel) == sha256_file(local):
            continue
        dev.host.put(local, f"{staged['dir']}/{rel}")
        n, size = n + 1, size + local.stat().st_size
    if n:
        log(f"uploaded {n} file(s), {size / 1e6:.2f} MB" + (f" ({len(names) - n} already staged)" if have else ""))
    return n, size


def _agent_failure(out: Outcome, e: AgentError) -> Outcome:
    out.kind, out.error = e.kind, str(e)
    hint = HINTS.get(e.kind)
    if hint:
        out.error += f" ({hint.format(target=out.target)})"
    out.status = "rolled back" if e.kind == "health" else "refused" if e.kind in ("untrusted", "tampered") else "failed"
    return out


def deploy(
    cfg: Config,
    target: str,
    bundle: Path,
    log: Callable[[str], None] = print,
    skip_gate: bool = False,
    verify_here: bool = True,
) -> Outcome:
    """Deploy ``bundle`` (a class's folder of a release) to ``target``. Never raises for what the
    device, the gate or the check here refused: the outcome says it (``status``, ``error``, ``kind``).
    ``verify_here``: check the bundle against ``release.public_key_file`` before uploading anything
    (kind ``bundle`` when it fails); the device verifies it again in any case, against its own key."""
    out, t0 = Outcome(target), time.perf_counter()
    try:
        key = Path(cfg.release.public_key_file).read_text() if verify_here else None
        manifest = read_manifest(bundle, key)
    except FileNotFoundError as e:
        out.status, out.kind = "refused", "bundle"
        out.error = (
            f"{e.filename} is missing: the bundle cannot be checked here (release.public_key_file); "
            "make the key pair with `edgeforge keygen`, or point release.public_key_file at the public key"
        )
        return out
    except (OSError, StageError) as e:
        out.status, out.kind, out.error = "refused", "bundle", stage_message(e)
        return out
    sha, out.version = bundle_sha(bundle), manifest["version"]
    tcfg, rcfg = cfg.target[target], cfg.release
    try:
        with device(target, tcfg, log) as dev:
            r = root(dev)
            current = dev.call("release-status", {"root": r}).get("current")
            if current and current.get("sha256") == sha:
                out.status, out.release = "unchanged", current.get("release")
                log(f"{target}: already runs {manifest['version']} ({out.release}): nothing to do")
                return out
            try:
                out.gate = gate.check(rcfg, manifest, current and current.get("manifest"), skip_gate).as_dict()
            except gate.GateRefused as e:
                out.gate, out.status, out.kind, out.error = e.result.as_dict(), "refused", "gate", str(e)
                return out
            staged = dev.call("release-staged", {"root": r, "bundle": sha})
            out.uploaded_files, out.uploaded_bytes = _upload(dev, bundle, manifest, staged, log)
            log(f"{target}: verifying and installing {manifest['version']} on the device")
            trtexec = tcfg.tensorrt.trtexec if tcfg.runtime == "tensorrt" else None  # probed, and rebuilds with it
            inst = dev.call(
                "release-install", {"root": r, "bundle": sha, "trtexec": trtexec}, timeout=tcfg.command_timeout_s
            )
            out.release, out.rebuilt, out.reason = inst["release"], inst.get("rebuilt"), inst.get("reason")
            out.build_log, out.artifact_sha256 = inst.get("build_log"), inst.get("artifact_sha256")
            if out.rebuilt:
                log(f"{target}: rebuilt on the device: {out.reason}")
            act = dev.call(
                "release-activate",
                {
                    "root": r,
                    "release": out.release,
                    "keep": rcfg.keep,
                    "activate_command": rcfg.activate_command,
                    "health_command": rcfg.health_command,
                    "timeout_s": tcfg.command_timeout_s,
                },
                timeout=tcfg.command_timeout_s,
            )
            out.status, out.previous, out.activated_at = "activated", act.get("previous"), act.get("activated_at")
            log(f"{target}: {manifest['version']} active since {out.activated_at} (previous: {out.previous})")
    except AgentError as e:
        _agent_failure(out, e)
    except HostError as e:
        out.status, out.kind, out.error = "failed", "unreachable" if e.transient else "host", str(e)
    finally:
        out.seconds = time.perf_counter() - t0
    return out


def rollback(cfg: Config, target: str, to: str | None = None, log: Callable[[str], None] = print) -> Outcome:
    """Make the device's previous release (or release id ``to``) the active one again."""
    out, t0 = Outcome(target), time.perf_counter()
    try:
        with device(target, cfg.target[target], log) as dev:
            res = dev.call(
                "release-rollback",
                {
                    "root": root(dev),
                    "to": to,
                    "activate_command": cfg.release.activate_command,
                    "health_command": cfg.release.health_command,
                },
                timeout=cfg.target[target].command_timeout_s,
            )
            cur = dev.call("release-status", {"root": root(dev)})["current"] or {}
        out.status, out.release, out.previous = "activated", res["release"], res.get("previous")
        out.version, out.activated_at = cur.get("version"), res.get("activated_at")
        out.manifest, out.bundle_sha = cur.get("manifest"), cur.get("sha256")
    except AgentError as e:
        _agent_failure(out, e)
        out.status = "failed"
    except HostError as e:
        out.status, out.kind, out.error = "failed", "unreachable" if e.transient else "host", str(e)
    out.seconds = time.perf_counter() - t0
    return out


def status(cfg: Config, target: str) -> dict:
    """The device's answer to ``release-status`` (``{"current", "history", "releases"}``), or
    ``{"error": ...}`` when it cannot be asked."""
    try:
        with device(target, cfg.target[target]) as dev:
            return dev.call("release-status", {"root": root(dev)})
    except (AgentError, HostError) as e:
        return {"error": str(e)}


def trust(cfg: Config, target: str, public_key_line: str) -> str:
    """Install the release public key (``ed25519 <base64>``) on the device; returns its key id."""
    with device(target, cfg.target[target]) as dev:
        return dev.call("release-trust", {"root": root(dev), "public_key": public_key_line})["key_id"]
