"""Deploying releases to a fleet of real SSH devices: three "devices" behind the tests' OpenSSH sshd
on 127.0.0.1, each with its own user key and work folder, running the real device agent (zipapp)
with this machine's ONNX Runtime. A real pipeline run is released (``edgeforge release``), the
public key trusted on each device, and then: the rollout (canary first, through the Prefect flow),
a second deploy that changes nothing, refusals of a tampered bundle, a foreign signature and a
bundle whose smoke test fails (each before anything is activated), a health check that rolls one
device back and halts the rollout, an interrupted deploy that resumes and leaves the previous
release active, the regression gate, rollback, ``fleet status`` and no key material anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flows import cli
from tasks.config import load_config
from tasks.hosts import loopback
from tasks.release import deploy, keys, make, manifest, store
from tasks.tracking.uri import resolved_uri
from tests.e2e import ROOT
from tests.tasks.release.pipeline import pipeline_run, project  # noqa: F401
from tests.tasks.release.test_make import MODEL, _secrets

DEVICES = ("canary", "dev_b", "dev_c")


@pytest.fixture
def fleet(project, sshd, tmp_path) -> Path:
    """``project`` with three SSH devices in params.yaml (release.devices, canary first), the release
    public key trusted on each, and release 0.1.0 made."""
    p = yaml.safe_load(Path("params.yaml").read_text())
    launcher = tmp_path / "device-python3"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    launcher.chmod(0o755)
    for name in DEVICES:
        key = tmp_path / "keys" / f"{name}_ed25519"
        loopback.authorize(key, sshd.workdir)
        p["target"][name] = {
            **p["target"]["local"],
            "transport": "ssh",
            "host": "127.0.0.1",
            "port": sshd.port,
            "key_file": str(key),
            "known_hosts": str(sshd.known_hosts),
            "workdir": str(tmp_path / name),
            "python": str(launcher),
        }
    p["release"]["devices"] = {d: "local" for d in DEVICES}
    p["release"]["canary"] = "canary"
    p["release"]["parallel"] = 2
    Path("params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    make.main([])
    assert cli.main(["fleet", "trust", "--fleet"]) == 0
    return tmp_path


def cfg():
    return load_config()


def current(name: str) -> str | None:
    st = deploy.status(cfg(), name)
    assert "error" not in st, st
    return st["current"] and st["current"]["version"]


def bundle(version: str = "0.1.0") -> Path:
    return store.bundle_dir(cfg(), "local", version)


def copy_as(version: str, change=None, key: Ed25519PrivateKey | None = None, edit=None) -> Path:
    """Release 0.1.0's bundle copied as ``version``; ``change(folder)`` alters its files afterwards and,
    when ``key`` is given, ``edit(manifest)`` its manifest, which ``key`` then signs again."""
    src, dst = bundle(), store.model_dir(cfg()) / version / "local"
    shutil.copytree(src, dst)
    if change:
        change(dst)
    if key is not None:
        m = manifest.read_manifest(dst)
        m["version"] = version
        if edit:
            edit(m)
        manifest.write_signed(dst, m, key)
    return dst


def deployed(name: str, version: str, **kw) -> deploy.Outcome:
    return deploy.deploy(cfg(), name, bundle(version), lambda m: None, **kw)


def signing_key() -> Ed25519PrivateKey:
    return keys.load_private(cfg().release.signing_key_file)


def test_a_release_rolls_out_canary_first_and_the_fleet_reports_it(fleet, capsys):
    from mlflow import MlflowClient

    from flows.release import rollout

    res = rollout(os.getcwd(), {d: str(bundle()) for d in DEVICES}, "canary", 2)
    assert res["order"][0] == "canary" and res["halted_by"] is None and not res["not_started"]
    assert {d: o["status"] for d, o in res["outcomes"].items()} == dict.fromkeys(DEVICES, "activated")
    assert all(current(d) == "0.1.0" for d in DEVICES)
    # each device's own work folder holds its release; `current` is a symlink into releases/
    for d in DEVICES:
        link = fleet / d / "release" / "current"
        assert link.is_symlink() and os.readlink(link).startswith("releases/0.1.0-")

    capsys.readouterr()
    assert cli.main(["fleet", "status"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[:3] for r in rows] == [[d, "local", "0.1.0"] for d in DEVICES]
    assert all(r.endswith("signed") for r in rows)

    again = deployed("dev_b", "0.1.0")
    assert again.status == "unchanged" and again.uploaded_files == 0

    m = manifest.read_manifest(bundle())
    client = MlflowClient(tracking_uri=resolved_uri("sqlite:///mlflow.db"))
    tags = client.get_run(m["mlflow"]["run_id"]).data.tags
    for d in DEVICES:
        rec = json.loads(tags[f"deployed.{d}"])
        assert rec["status"] == "activated" and rec["version"] == "0.1.0"
        mv = client.get_model_version_by_alias(MODEL, f"deployed-{d}")
        assert mv.tags["release_sha256"] == manifest.bundle_sha(bundle())


@pytest.mark.parametrize(
    "spoil, kind",  # the device's own checks (the host's are off): it verifies whatever reaches it
    [
        (
            lambda d: (d / "golden/inputs.npy").write_bytes((d / "golden/inputs.npy").read_bytes()[:-1] + b"\x01"),
            "tampered",
        ),
        ("foreign key", "untrusted"),
    ],
    ids=["tampered-file", "foreign-signature"],
)
def test_a_spoiled_bundle_is_refused_before_anything_changes(fleet, spoil, kind):
    assert deployed("dev_c", "0.1.0").status == "activated"
    if spoil == "foreign key":
        copy_as("0.1.1", key=Ed25519PrivateKey.generate())
    else:  # a release of its own, signed, then altered
        spoil(copy_as("0.1.1", key=signing_key()))
    out = deployed("dev_c", "0.1.1", verify_here=False)
    assert (out.status, out.kind) == ("refused", kind), out
    assert current("dev_c") == "0.1.0"
    assert not [p for p in (fleet / "dev_c/release/releases").iterdir() if p.name.startswith("0.1.1")]
    # the host checks the bundle too, before it uploads anything
    here = deployed("dev_c", "0.1.1")
    assert (here.status, here.kind, here.uploaded_files) == ("refused", "bundle", 0), here


def test_a_failing_smoke_test_is_refused_and_a_failing_health_check_rolls_back_and_halts(fleet, sshd):
    from flows.release import rollout

    for d in DEVICES:
        assert deployed(d, "0.1.0").status == "activated"

    def wrong_outputs(folder: Path) -> None:  # signed properly, but not what the model computes
        with np.load(folder / "golden/outputs.npz") as z:
            outs = {k: z[k] + 5.0 for k in z.files}
        with open(folder / "golden/outputs.npz", "wb") as f:
            np.savez(f, **outs)

    copy_as("0.1.1", wrong_outputs, key=signing_key())
    out = deployed("canary", "0.1.1")
    assert (out.status, out.kind) == ("failed", "smoke") and "previous release stays active" in out.error
    assert current("canary") == "0.1.0"

    # 0.1.2 is fine, but dev_b's health check fails after the switch: it rolls back, and the rollout
    # stops there (dev_c, after it in the order, is never started)
    copy_as("0.1.2", key=signing_key())
    p = yaml.safe_load(Path("params.yaml").read_text())
    p["release"]["health_command"] = "test ! -e unhealthy || { echo overheating; exit 3; }"
    p["release"]["parallel"] = 1
    Path("params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    (fleet / "dev_b/release/unhealthy").write_text("")
    res = rollout(os.getcwd(), {d: str(bundle("0.1.2")) for d in DEVICES}, "canary", 1)
    assert res["outcomes"]["canary"]["status"] == "activated"
    assert res["halted_by"] == "dev_b" and res["not_started"] == ["dev_c"]
    b = res["outcomes"]["dev_b"]
    assert b["status"] == "rolled back" and "overheating" in b["error"] and "is active again" in b["error"]
    assert (current("canary"), current("dev_b"), current("dev_c")) == ("0.1.2", "0.1.0", "0.1.0")


def test_an_interrupted_deploy_leaves_the_previous_release_active_and_resumes(fleet):
    assert deployed("dev_b", "0.1.0").status == "activated"
    new = copy_as("0.1.1", key=signing_key())
    p = yaml.safe_load(Path("params.yaml").read_text())
    p["release"]["health_command"] = "sleep 60"  # long enough to be killed in the middle of it
    Path("params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    code = (
        "from pathlib import Path; from tasks.config import load_config; from tasks.release.deploy import deploy; "
        f"deploy(load_config(), 'dev_b', Path({str(new)!r}))"
    )
    client = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    link = fleet / "dev_b/release/current"
    deadline = time.monotonic() + 60
    try:
        while not os.readlink(link).startswith("releases/0.1.1-"):  # switched: the health check runs
            assert client.poll() is None and time.monotonic() < deadline, "the deploy never switched"
            time.sleep(0.05)
    finally:  # the operator's machine and the device's agent both die
        client.kill()
        client.wait()
        subprocess.run(["pkill", "-KILL", "-f", str(fleet / "dev_b/release")], check=False)
    assert current("dev_b") == "0.1.0"  # the next command restores the release that was healthy

    # an upload cut short resumes: files staged already are not sent again
    p["release"]["health_command"] = None
    Path("params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    third = copy_as("0.1.2", key=signing_key())
    c = cfg()
    files = sorted(manifest.read_manifest(third)["files"])
    from tasks.agent.client import device

    with device("dev_b", c.target["dev_b"]) as dev:
        staged = dev.call("release-staged", {"root": deploy.root(dev), "bundle": manifest.bundle_sha(third)})
        for rel in files[:2]:
            dev.host.put(third / rel, f"{staged['dir']}/{rel}")
    out = deployed("dev_b", "0.1.2")
    assert out.status == "activated" and out.uploaded_files == len(files)  # the rest, the manifest and its signature
    assert current("dev_b") == "0.1.2"


def test_a_candidate_worse_than_the_active_release_is_refused(fleet):
    from mlflow import MlflowClient

    assert deployed("canary", "0.1.0").status == "activated"
    m = manifest.read_manifest(bundle())
    worse_dir = copy_as("0.2.0", key=signing_key(), edit=lambda w: w["metrics"].update(value=w["metrics"]["value"] - 5))
    wm = manifest.read_manifest(worse_dir)
    out = deployed("canary", "0.2.0")
    assert (out.status, out.kind) == ("refused", "gate")
    v, a = wm["metrics"]["value"], m["metrics"]["value"]
    assert f"{v:.2f} vs {a:.2f}" in out.error and "5.00 points lower" in out.error
    assert current("canary") == "0.1.0"
    from tasks.tracking.deployments import record

    record(cfg(), worse_dir, out)
    tags = MlflowClient(tracking_uri=resolved_uri("sqlite:///mlflow.db")).get_run(wm["mlflow"]["run_id"]).data.tags
    assert tags["gate.canary"].startswith("refused: ") and f"{v:.2f}" in tags["gate.canary"]
    assert deployed("canary", "0.2.0", skip_gate=True).status == "activated"


def test_a_bundle_with_a_file_it_does_not_list_is_refused_here(fleet):
    (copy_as("0.1.1", key=signing_key()) / "extra.sh").write_text("rm -rf /\n")
    out = deployed("dev_c", "0.1.1")
    assert (out.status, out.kind, out.uploaded_files) == ("refused", "bundle", 0) and "extra.sh" in out.error


def test_without_the_public_key_here_nothing_is_uploaded(fleet):
    Path(cfg().release.public_key_file).unlink()
    out = deployed("dev_c", "0.1.0")
    assert (out.status, out.kind, out.uploaded_files) == ("refused", "bundle", 0)
    assert "edgeforge keygen" in out.error and "release.public_key_file" in out.error


def test_rollback_restores_the_previous_release(fleet, capsys):
    assert deployed("dev_c", "0.1.0").status == "activated"
    copy_as("0.1.1", key=signing_key())
    assert deployed("dev_c", "0.1.1").status == "activated"
    capsys.readouterr()
    assert cli.main(["rollback", "--target", "dev_c"]) == 0
    assert "rolled back to 0.1.0" in capsys.readouterr().out
    assert current("dev_c") == "0.1.0"


def test_no_private_key_material_in_params_logs_mlflow_or_devices(fleet, capsys):
    assert deployed("canary", "0.1.0").status == "activated"
    cli.main(["fleet", "status"])
    out, err = capsys.readouterr()
    secrets = _secrets(Path(cfg().release.signing_key_file))
    places = [Path("params.yaml"), Path("mlflow.db"), *Path("releases").rglob("*"), *Path("mlruns").rglob("*")]
    places += [p for d in DEVICES for p in (fleet / d).rglob("*")]
    for p in places:
        if p.is_file() and not p.is_symlink():
            assert not any(s in p.read_bytes() for s in secrets), p
    assert not any(s.decode("latin-1") in out + err for s in secrets)
