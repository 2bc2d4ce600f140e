"""The device side of a release (contract 2): ``release-trust``, ``release-staged``, ``release-install``
(tasks/agent/release_install.py), ``release-activate``, ``release-rollback``, ``release-status``.

Each request names ``root``, the device's release folder; every command that changes anything holds
``root/lock`` (fcntl). ``current`` is a symlink to ``releases/<id>``, switched by ``os.replace`` of a new
symlink; an activation whose command, golden inference or health command fails switches it back (or
removes it where nothing was active), so ``current`` is always a verified, installed release or absent.
Stdlib only at import time; numpy and the runtimes are imported by the agent's models when used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

if __package__:
    from . import agent
    from . import release_install as install
    from . import release_store as store
else:  # inside the agent's zipapp: top-level modules
    import agent
    import release_install as install
    import release_store as store

DEFAULT_KEEP = 3
DEFAULT_TIMEOUT_S = 60.0


def cmd_trust(req: dict) -> dict:
    """Trust ``public_key`` (the host's ``.pub`` line) for bundles whose manifest names its key id."""
    root, raw = store.root_of(req), store.parse_public_key(req.get("public_key"))
    kid = store.key_id(raw)
    with store.locked(root):
        (root / "trust").mkdir(exist_ok=True)
        path = root / "trust" / f"{kid}.pub"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(" ".join(req["public_key"].split()) + "\n")
        os.replace(str(tmp), str(path))
    return {"key_id": kid}


def cmd_staged(req: dict) -> dict:
    """The staging folder of ``bundle`` (created) and the whole files in it: what an upload can skip."""
    root = store.root_of(req)
    bundle = store.checked_name(req.get("bundle"), store.BUNDLE_SHA, "bundle")
    with store.locked(root):
        stage = root / "staging" / bundle
        stage.mkdir(parents=True, exist_ok=True)
        files = {}
        for dirpath, _, names in os.walk(str(stage)):
            for name in names:
                p = Path(dirpath) / name
                if not name.endswith(".part") and p.is_file() and not p.is_symlink():
                    files[p.relative_to(stage).as_posix()] = agent.sha256(p)
    return {"dir": os.path.abspath(str(stage)), "files": dict(sorted(files.items()))}


def _sh(command: str, timeout: float, env: dict, cwd: Path, what: str) -> str | None:
    """Run ``command`` with ``sh -c``; None when it succeeds, else why not with its output's tail."""
    try:
        p = subprocess.run(
            ["sh", "-c", command],
            cwd=str(cwd),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        tail = (e.output or b"").decode(errors="replace")[-500:]
        return f"{what} ran past its {timeout:g} s timeout and was killed; its output ended: {tail.strip()!r}"
    if p.returncode != 0:
        tail = p.stdout.decode(errors="replace")[-500:]
        return f"{what} exited {p.returncode}; its output ended: {tail.strip()!r}"
    return None


def _env(root: Path, info: dict) -> dict:
    cur = os.path.abspath(str(root / "current"))
    return {
        **os.environ,
        "EDGEFORGE_RELEASE": info["release"],
        "EDGEFORGE_RELEASE_DIR": cur,
        "EDGEFORGE_ARTIFACT": os.path.join(cur, info["artifact"]),
    }


def _check(root: Path, info: dict, req: dict, health: dict) -> str | None:
    """After the switch: activate_command, golden inference through ``current``, health_command; the cause
    of the first failure, or None."""
    timeout, env = float(req.get("timeout_s") or DEFAULT_TIMEOUT_S), _env(root, info)
    cause = req.get("activate_command") and _sh(req["activate_command"], timeout, env, root, "activate_command")
    if cause:
        return cause
    cur = root / "current"
    try:
        manifest = json.loads((cur / "manifest.json").read_text())
        health["smoke"] = install.smoke(cur, manifest, info["runtime"], cur / info["artifact"])
    except agent.AgentError as e:
        return f"the golden inference through current failed: {e}"
    cause = req.get("health_command") and _sh(req["health_command"], timeout, env, root, "health_command")
    health["command"] = "passed" if req.get("health_command") and not cause else None
    return cause or None


def _prune(root: Path, keep: int, protect: set) -> list:
    """Remove installed releases beyond the ``keep`` newest (by installed_at), never those in ``protect``."""
    found = []
    for d in (root / "releases").iterdir():
        if not d.name.startswith(".") and (d / "installed.json").is_file():
            at = store.installed(root, d.name).get("installed_at") or ""
            found.append((at, (d / "installed.json").stat().st_mtime_ns, d.name))
    kept = {name for _, _, name in sorted(found, reverse=True)[:keep]} | protect
    removed = sorted(name for _, _, name in found if name not in kept)
    for name in removed:
        shutil.rmtree(str(root / "releases" / name))
    return removed


def _activate(root: Path, release: str, req: dict, by: str) -> dict:
    info, t0 = store.reverify(root, release), time.perf_counter()
    state, previous = store.state(root), store.current(root)
    if previous == release:
        since = [h for h in state["history"] if h["release"] == release]
        before = [h["release"] for h in state["history"] if h["release"] != release]
        return {
            "release": release,
            "previous": before[-1] if before else None,
            "activated_at": since[-1]["activated_at"] if since else None,
            "already": True,
            "health": {},
            "pruned": [],
        }
    marker = root / store.ACTIVATING  # a kill before the health check ends: the next command restores previous
    store.write_json(marker, {"release": release, "previous": previous})
    store.point(root, release)
    health = {}
    cause = _check(root, info, req, health)
    if cause:
        store.point(root, previous)
        marker.unlink()
        restored = f"{previous} is active again" if previous else "no release is active (none was before)"
        if previous and req.get("activate_command"):
            again = _sh(
                req["activate_command"],
                float(req.get("timeout_s") or DEFAULT_TIMEOUT_S),
                _env(root, store.installed(root, previous)),
                root,
                "activate_command for the restored release",
            )
            restored += f" ({again})" if again else ""
        store.fail("health", f"release {release} is unhealthy: {cause}; {restored}")
    entry = {
        "release": release,
        "version": info.get("version"),
        "sha256": info["bundle_sha256"],
        "activated_at": store.now(),
        "by": by,
    }
    state["history"].append(entry)
    store.write_json(root / "state.json", state)
    marker.unlink()
    pruned = _prune(root, req.get("keep", DEFAULT_KEEP), {release} | ({previous} if previous else set()))
    health["seconds"] = time.perf_counter() - t0
    return {
        "release": release,
        "previous": previous,
        "activated_at": entry["activated_at"],
        "already": False,
        "health": health,
        "pruned": pruned,
    }


def _checked(req: dict) -> dict:
    """The activation keys' types (bad_input naming the key); commands are strings run by ``sh -c``."""
    for key in ("activate_command", "health_command", "by"):
        if req.get(key) is not None and not isinstance(req[key], str):
            store.fail("bad_input", f"request key {key!r} must be null or a string, not {req[key]!r}")
    t = req.get("timeout_s")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0):
        store.fail("bad_input", f"request key 'timeout_s' must be null or seconds > 0, not {t!r}")
    k = req.get("keep", DEFAULT_KEEP)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        store.fail("bad_input", f"request key 'keep' must be an int >= 1 (releases kept), not {k!r}")
    return req


def cmd_activate(req: dict) -> dict:
    root = store.root_of(_checked(req))
    release = store.checked_name(req.get("release"), store.RELEASE_ID, "release")
    with store.locked(root):
        return _activate(root, release, req, req.get("by") or "activate")


def cmd_rollback(req: dict) -> dict:
    """Back to ``to`` (an installed release), else the latest release in the history before the current one
    that is still installed (kind ``no_previous`` when there is none); checked as an activation is."""
    root = store.root_of(_checked(req))
    with store.locked(root):
        cur, to = store.current(root), req.get("to")
        if to is not None:
            store.installed(root, to)
        else:
            earlier = [h["release"] for h in store.state(root)["history"] if h["release"] != cur]
            earlier = [r for r in earlier if (root / "releases" / r / "installed.json").is_file()]
            if not earlier:
                store.fail("no_previous", f"no release before {cur} is installed here to roll back to")
            to = earlier[-1]
        return _activate(root, to, req, req.get("by") or "rollback")


def cmd_status(req: dict) -> dict:
    """What ``current`` runs (its installed record, manifest and signature) and the history; read only."""
    root = store.root_of(req)
    with store.locked(root, wait=False) as free:  # when no command runs: undo what a killed one left
        busy = not free
    history = store.state(root)["history"]
    releases = root / "releases"
    ids = sorted(d.name for d in releases.iterdir() if not d.name.startswith(".")) if releases.is_dir() else []
    cur, current = store.current(root), None
    if cur:
        info, folder = store.installed(root, cur), releases / cur
        since = [h["activated_at"] for h in history if h["release"] == cur]
        current = {
            "release": cur,
            "version": info.get("version"),
            "sha256": info["bundle_sha256"],
            "model": info.get("model"),
            "class": info.get("class"),
            "since": since[-1] if since else None,
            "artifact": info["artifact"],
            "artifact_sha256": info["artifact_sha256"],
            "rebuilt": info.get("rebuilt"),
            "manifest": json.loads((folder / "manifest.json").read_text()),
            "signature": (folder / "manifest.sig").read_text().strip(),
        }
    return {"current": current, "history": history, "releases": ids, "busy": busy}


COMMANDS = {
    "release-trust": cmd_trust,
    "release-staged": cmd_staged,
    "release-install": install.cmd_install,
    "release-activate": cmd_activate,
    "release-rollback": cmd_rollback,
    "release-status": cmd_status,
}
