"""The device side of a release (contract 2) on real bundles signed here with ``cryptography`` and a tiny
ONNX model run by the real ONNX Runtime: install, activate, health rollback, rollback, pruning, rebuild
on a fingerprint mismatch, refusals before any build; once through the agent's real zipapp."""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tasks.agent import client, release
from tasks.agent.agent import AgentError
from tasks.config.schema import Target
from tests.e2e import ROOT
from tests.tasks.quant.conftest import conv_model_with_constant_weights, save

ORT_VERSION = importlib.metadata.version("onnxruntime")
RECIPE = {
    "runtime": "onnxruntime",
    "precision": "fp32",
    "threads": 1,
    "io_names": {"inputs": ["x"], "outputs": ["y"]},
    "choices": None,
    "emulated": False,
}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def public_line(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"ed25519 {base64.b64encode(raw).decode()}"


def sign(folder: Path, manifest: dict, key: Ed25519PrivateKey) -> str:
    """Write manifest.json (canonical) and manifest.sig; the bundle sha."""
    data = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_text(base64.b64encode(key.sign(data)).decode() + "\n")
    return hashlib.sha256(data).hexdigest()


def make_bundle(folder: Path, onnx: Path, key, version: str, compatible=None, scale_golden: float = 1.0) -> str:
    """A contract-1 bundle of ``onnx`` for ONNX Runtime (artifact = the model as is); its sha."""
    folder.mkdir(parents=True)
    (folder / "artifact").mkdir()
    (folder / "golden").mkdir()
    shutil.copyfile(onnx, folder / "artifact" / "model.onnx")
    shutil.copyfile(onnx, folder / "source.onnx")
    x = np.random.default_rng(1).normal(size=(4, 2, 8, 8)).astype(np.float32)
    np.save(folder / "golden" / "inputs.npy", x)
    y = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    np.savez(folder / "golden" / "outputs.npz", y=(y * scale_golden).astype(np.float32))
    files = {
        p.relative_to(folder).as_posix(): {"sha256": _sha(p), "size": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    manifest = {
        "format": "edgeforge-release/1",
        "model": "conv",
        "version": version,
        "class": "local",
        "created_at": "2026-12-07T00:00:00Z",
        "checkpoint_sha256": "0" * 64,
        "key_id": hashlib.sha256(raw).hexdigest()[:16],
        "files": files,
        "artifact": {
            "runtime": "onnxruntime",
            "runtime_version": ORT_VERSION,
            "precision": "fp32",
            "files": ["artifact/model.onnx"],
            "source": "source.onnx",
            "calibration_cache": None,
            "recipe": RECIPE,
            "compatible": compatible or {"runtime": "onnxruntime", "onnxruntime_version": ORT_VERSION},
            "sha256": files["artifact/model.onnx"]["sha256"],
        },
        "golden": {
            "inputs": "golden/inputs.npy",
            "outputs": "golden/outputs.npz",
            "samples": 4,
            "atol": 1e-4,
            "rtol": 1e-3,
            "max_outside": 0.0,
        },
        "metrics": {"metric": "top1", "value": 0.9, "latency_p50_ms": 0.1},
    }
    return sign(folder, manifest, key)


@pytest.fixture(scope="module")
def onnx(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("release-model")
    save(conv_model_with_constant_weights(), d / "fp32.onnx")
    return d / "fp32.onnx"


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


class Fleet:
    """One device's release root, and bundles made and staged by name."""

    def __init__(self, tmp: Path, onnx: Path, key) -> None:
        self.tmp, self.onnx, self.key, self.root = tmp, onnx, key, tmp / "device" / "release"
        self.bundles: dict[str, str] = {}
        release.cmd_trust({"root": str(self.root), "public_key": public_line(key)})

    def bundle(self, version: str, key=None, **kw) -> Path:
        folder = self.tmp / "host" / version
        self.bundles[version] = make_bundle(folder, self.onnx, key or self.key, version, **kw)
        return folder

    def stage(self, folder: Path) -> str:
        sha = _sha(folder / "manifest.json")
        staged = release.cmd_staged({"root": str(self.root), "bundle": sha})
        shutil.copytree(folder, staged["dir"], symlinks=True, dirs_exist_ok=True)
        return sha

    def install(self, version: str, **kw) -> dict:
        folder = self.tmp / "host" / version
        if not folder.exists():
            self.bundle(version, **kw)
        return release.install.cmd_install({"root": str(self.root), "bundle": self.stage(folder)})

    def activate(self, rid: str, **kw) -> dict:
        return release.cmd_activate({"root": str(self.root), "release": rid, **kw})

    def status(self) -> dict:
        return release.cmd_status({"root": str(self.root)})

    def releases(self) -> list:
        d = self.root / "releases"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.fixture
def fleet(tmp_path, onnx, key) -> Fleet:
    return Fleet(tmp_path, onnx, key)


def test_good_bundle_installs_activates_and_a_second_time_changes_nothing(fleet):
    res = fleet.install("1.0.0")
    rid = f"1.0.0-{fleet.bundles['1.0.0'][:12]}"
    assert res["release"] == rid and res["already"] is False and res["rebuilt"] is False
    assert res["artifact"] == "artifact/model.onnx" and res["smoke"]["samples"] == 4
    assert res["smoke"]["outside"] == {"y": 0.0}
    assert not (fleet.root / "staging" / fleet.bundles["1.0.0"]).exists()
    act = fleet.activate(rid, keep=3)
    assert act["release"] == rid and act["previous"] is None and act["already"] is False
    assert (fleet.root / "current").resolve() == (fleet.root / "releases" / rid).resolve()
    st = fleet.status()
    assert st["current"]["release"] == rid and st["current"]["version"] == "1.0.0"
    assert st["current"]["sha256"] == fleet.bundles["1.0.0"] and st["current"]["since"] == act["activated_at"]
    assert st["current"]["manifest"]["version"] == "1.0.0" and st["current"]["signature"]
    # the same release again: nothing changes
    assert fleet.install("1.0.0")["already"] is True
    again = fleet.activate(rid)
    assert again["already"] is True and again["activated_at"] == act["activated_at"]
    assert fleet.status()["history"] == st["history"] and len(st["history"]) == 1


def _tamper(folder: Path) -> None:
    (folder / "golden" / "inputs.npy").write_bytes(b"\x93NUMPY tampered")


def _extra(folder: Path) -> None:
    (folder / "artifact" / "backdoor.so").write_bytes(b"\x7fELF")


def _wrong_signature(folder: Path) -> None:
    sig = bytearray(base64.b64decode((folder / "manifest.sig").read_text()))
    sig[5] ^= 1
    (folder / "manifest.sig").write_text(base64.b64encode(bytes(sig)).decode() + "\n")


def _symlink(folder: Path) -> None:
    target = folder / "artifact" / "model.onnx"
    shutil.move(target, folder.parent / "outside.onnx")
    target.symlink_to(folder.parent / "outside.onnx")


@pytest.mark.parametrize(
    "spoil, kind, words",
    [
        (_tamper, "tampered", "golden/inputs.npy differs"),
        (_extra, "tampered", "artifact/backdoor.so is in the bundle but not listed"),
        (_wrong_signature, "untrusted", "is not key"),
        (None, "untrusted", "does not trust"),
        (_symlink, "tampered", "symlink"),
    ],
    ids=["tampered-file", "extra-file", "wrong-signature", "untrusted-key", "symlink"],
)
def test_a_spoiled_bundle_is_refused_before_any_build_and_nothing_changes(fleet, spoil, kind, words):
    v1 = fleet.install("1.0.0")["release"]
    fleet.activate(v1)
    before = (fleet.releases(), fleet.status())
    # a fingerprint mismatch: were it verified late, the agent would rebuild first
    other = Ed25519PrivateKey.generate() if spoil is None else None
    folder = fleet.bundle("2.0.0", key=other, compatible={"runtime": "onnxruntime", "onnxruntime_version": "0.0"})
    if spoil:
        spoil(folder)
    with pytest.raises(AgentError) as e:
        release.install.cmd_install({"root": str(fleet.root), "bundle": fleet.stage(folder)})
    assert e.value.kind == kind and words in str(e.value)
    assert not (fleet.root / "builds").exists()
    assert (fleet.releases(), fleet.status()) == before


def test_a_failing_smoke_test_is_refused(fleet):
    fleet.bundle("3.0.0", scale_golden=1.5)  # golden outputs altered, and signed as such
    with pytest.raises(AgentError) as e:
        fleet.install("3.0.0")
    assert e.value.kind == "smoke" and "output y" in str(e.value)
    assert fleet.releases() == [] and fleet.status()["current"] is None


def test_a_fingerprint_mismatch_rebuilds_from_source_and_says_why(fleet):
    res = fleet.install("1.1.0", compatible={"runtime": "onnxruntime", "onnxruntime_version": "0.0"})
    assert res["rebuilt"] is True and res["artifact"] == "build/model.onnx"
    assert res["reason"] == f"onnxruntime_version: bundle 0.0, device {ORT_VERSION}"
    info = json.loads((fleet.root / "releases" / res["release"] / "installed.json").read_text())
    assert info["rebuilt"] is True and info["reason"] == res["reason"] and info["recipe"] == RECIPE
    assert fleet.activate(res["release"])["health"]["smoke"]["samples"] == 4


def test_a_failing_health_check_rolls_back_to_the_previous_release(fleet):
    v1 = fleet.install("1.0.0")["release"]
    fleet.activate(v1, activate_command="true")
    v2 = fleet.install("2.0.0")["release"]
    with pytest.raises(AgentError) as e:
        fleet.activate(v2, activate_command='echo "$EDGEFORGE_RELEASE" > activated', health_command="echo sick; exit 3")
    assert e.value.kind == "health" and "health_command exited 3" in str(e.value) and "sick" in str(e.value)
    assert f"{v1} is active again" in str(e.value)
    assert fleet.status()["current"]["release"] == v1
    assert (fleet.root / "activated").read_text().strip() == v1  # the restored release's activate_command ran
    with pytest.raises(AgentError) as e:
        fleet.activate(v2, activate_command="sleep 5", timeout_s=0.5)
    assert e.value.kind == "health" and "timeout" in str(e.value)
    assert fleet.status()["current"]["release"] == v1 and [h["release"] for h in fleet.status()["history"]] == [v1]


def test_an_activation_killed_before_its_health_check_ends_is_undone_by_the_next_command(fleet):
    v1 = fleet.install("1.0.0")["release"]
    fleet.activate(v1)
    v2 = fleet.install("2.0.0")["release"]
    req = {"root": str(fleet.root), "release": v2, "health_command": "sleep 60"}
    code = f"import json, sys; from tasks.agent import release; release.cmd_activate(json.loads({json.dumps(json.dumps(req))}))"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while os.path.basename(os.readlink(fleet.root / "current")) != v2:  # switched, health check running
            assert proc.poll() is None and time.monotonic() < deadline, "the activation never switched"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    st = fleet.status()
    assert st["current"]["release"] == v1 and not st["busy"]
    assert not (fleet.root / "activating.json").exists()
    assert [h["release"] for h in st["history"]] == [v1]
    assert fleet.activate(v2)["previous"] == v1  # and the release itself is intact: it activates later


def test_a_first_activation_that_fails_leaves_nothing_current(fleet):
    v1 = fleet.install("1.0.0")["release"]
    with pytest.raises(AgentError, match="no release is active"):
        fleet.activate(v1, health_command="false")
    assert not (fleet.root / "current").exists() and not (fleet.root / "current").is_symlink()


def test_rollback_restores_the_previous_and_keep_prunes(fleet):
    with pytest.raises(AgentError) as e:
        release.cmd_rollback({"root": str(fleet.root)})
    assert e.value.kind == "no_previous"
    ids = []
    for v in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
        ids.append(fleet.install(v)["release"])
        last = fleet.activate(ids[-1], keep=1)
    assert last["previous"] == ids[2] and last["pruned"] == [ids[1]]
    assert fleet.releases() == sorted(ids[2:])  # keep 1, but never current nor the previous one
    back = release.cmd_rollback({"root": str(fleet.root)})
    assert back["release"] == ids[2] and back["previous"] == ids[3]
    st = fleet.status()
    assert st["current"]["release"] == ids[2] and st["history"][-1]["by"] == "rollback"
    assert release.cmd_rollback({"root": str(fleet.root), "to": ids[3]})["release"] == ids[3]


def test_an_installed_release_changed_on_disk_is_not_activated(fleet):
    rid = fleet.install("1.0.0")["release"]
    (fleet.root / "releases" / rid / "artifact" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(AgentError) as e:
        fleet.activate(rid)
    assert e.value.kind == "tampered" and not (fleet.root / "current").is_symlink()


def test_names_outside_root_are_refused(fleet):
    for req in ({"bundle": "../../etc"}, {"bundle": "a" * 63}):
        with pytest.raises(AgentError) as e:
            release.cmd_staged({"root": str(fleet.root), **req})
        assert e.value.kind == "bad_input"
    with pytest.raises(AgentError) as e:
        fleet.activate("../releases")
    assert e.value.kind == "bad_input"
    with pytest.raises(AgentError):
        release.cmd_trust({"root": str(fleet.root), "public_key": "ed25519 AAAA"})


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_the_zipapp_serves_the_release_commands(tmp_path, onnx, key, transport, request):
    """The agent as uploaded (agent-<sha12>.pyz), through the client on a local target and over a real sshd
    on loopback: trust, stage (host.put of every file, resumed), install, activate, status."""
    pyz, digest = client.agent_file()
    assert client.agent_zipapp() == pyz.read_bytes() and hashlib.sha256(pyz.read_bytes()).hexdigest()[:12] == digest
    target = Target()
    if transport == "ssh":
        sshd = request.getfixturevalue("sshd")
        target = Target(
            transport="ssh",
            host=sshd.host,
            port=sshd.port,
            key_file=str(sshd.key_path),
            known_hosts=str(sshd.known_hosts),
            workdir=str(tmp_path / "device"),
            python=sys.executable,
            connect_timeout_s=5.0,
        )
    folder = tmp_path / "bundle"
    sha = make_bundle(folder, onnx, key, "1.0.0")
    with client.device(transport, target) as dev:
        root = dev.path("release")
        assert dev.call("release-trust", {"root": root, "public_key": public_line(key)})["key_id"]
        staged = dev.call("release-staged", {"root": root, "bundle": sha})
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.name != "model.onnx":
                dev.host.put(p, f"{staged['dir']}/{p.relative_to(folder).as_posix()}")
        again = dev.call("release-staged", {"root": root, "bundle": sha})
        assert "artifact/model.onnx" not in again["files"] and again["files"]["source.onnx"] == _sha(onnx)
        with pytest.raises(client.AgentError) as e:
            dev.call("release-install", {"root": root, "bundle": sha})
        assert e.value.kind == "tampered" and "artifact/model.onnx" in str(e.value)
        dev.host.put(folder / "artifact" / "model.onnx", f"{staged['dir']}/artifact/model.onnx")
        res = dev.call("release-install", {"root": root, "bundle": sha})
        act = dev.call("release-activate", {"root": root, "release": res["release"], "keep": 3})
        st = dev.call("release-status", {"root": root})
        assert st["current"]["release"] == act["release"] == res["release"]
        assert (Path(dev.workdir) / f"agent-{digest}.pyz").is_file()


@pytest.mark.parametrize("module", client.DEVICE_MODULES)
def test_device_modules_are_python38_and_stdlib_only_at_import(module):
    tree = ast.parse((client.AGENT_DIR / f"{module}.py").read_text(), feature_version=(3, 8))
    top = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    top += [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert all(n.split(".")[0] in sys.stdlib_module_names | {"__future__"} for n in top), top
    everywhere = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    everywhere |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not everywhere & {"tasks", "onnx", "torch", "numpy"}  # numpy: through agent._import only


def _python38() -> str | None:
    """A working Python 3.8 (pyenv's shim may exist without one selected)."""
    found = [shutil.which("python3.8"), *sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))]
    for py in filter(None, found):
        if subprocess.run([str(py), "-c", "pass"], capture_output=True).returncode == 0:
            return str(py)
    return None


@pytest.mark.skipif(_python38() is None, reason="no Python 3.8 here (JetPack 5's Python)")
def test_a_python38_device_without_cryptography_verifies_with_the_stdlib(tmp_path, onnx, key):
    """JetPack 5's Python 3.8 with nothing installed: the zipapp runs, the stdlib Ed25519 verifier refuses a
    wrong signature and accepts the right one (the install then stops for want of numpy, after verifying)."""
    py, (pyz, _) = _python38(), client.agent_file()
    root = tmp_path / "release"
    assert subprocess.run([py, "-c", "import cryptography"], capture_output=True).returncode != 0

    def call(command: str, req: dict) -> dict:
        r = subprocess.run([py, str(pyz), command, json.dumps(req)], capture_output=True, text=True, timeout=120)
        return json.loads(r.stdout.strip().splitlines()[-1])

    assert call("release-trust", {"root": str(root), "public_key": public_line(key)})["ok"]
    folder = tmp_path / "bundle"
    sha = make_bundle(folder, onnx, key, "1.0.0")
    shutil.copytree(folder, root / "staging" / sha)
    sig = root / "staging" / sha / "manifest.sig"
    good = sig.read_text()
    _wrong_signature(root / "staging" / sha)
    bad = call("release-install", {"root": str(root), "bundle": sha})
    assert bad["kind"] == "untrusted" and "is not key" in bad["error"]
    sig.write_text(good)
    res = call("release-install", {"root": str(root), "bundle": sha})
    assert res["kind"] == "missing_runtime" and ("numpy" in res["error"] or "onnxruntime" in res["error"]), res
    assert not (root / "releases").exists() or not any((root / "releases").iterdir())


def test_a_signed_manifest_naming_an_unlisted_file_is_refused(fleet):
    """Signed or not, the device loads nothing the manifest's file list (and so its hashes) does not cover."""
    folder = fleet.bundle("1.0.0")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["golden"]["inputs"] = "../../../inputs.npy"
    sha = sign(folder, manifest, fleet.key)
    staged = release.cmd_staged({"root": str(fleet.root), "bundle": sha})
    shutil.copytree(folder, staged["dir"], dirs_exist_ok=True)
    with pytest.raises(AgentError) as e:
        release.install.cmd_install({"root": str(fleet.root), "bundle": sha})
    assert e.value.kind == "bad_input" and "../../../inputs.npy" in str(e.value) and fleet.releases() == []
