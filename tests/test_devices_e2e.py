"""End to end on a real SSH device: `dvc exp run` with the local target and ``ssh_loopback``
(this machine behind the tests' OpenSSH sshd on 127.0.0.1), then the cached re-run, then a
change of what the device reports (its ONNX Runtime version) that must rebuild that device only.

The device's Python is a launcher script in the test's folder; the "upgrade" puts a
``onnxruntime-9.9.9.dist-info`` first on the device's PYTHONPATH, which is what the device's
package metadata then reports (the probe reads versions from package metadata).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tasks.layout import LAYOUT
from tests.e2e import FAST, fresh_repo, kept, ran, sh

pytestmark = pytest.mark.e2e
PRECISIONS = ["fp32", "int8-minmax"]


def launcher(path: Path, pythonpath: Path | None = None) -> None:
    env = f"PYTHONPATH={pythonpath} " if pythonpath else ""
    path.write_text(f'#!/bin/sh\n{env}exec {sys.executable} "$@"\n')
    path.chmod(0o755)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sshd):
    base = tmp_path_factory.mktemp("devices")
    device_python = base / "device-python3"
    launcher(device_python)
    overrides = [
        f"target.ssh_loopback.port={sshd.port}",
        f"target.ssh_loopback.key_file={sshd.key_path}",
        f"target.ssh_loopback.known_hosts={sshd.known_hosts}",
        f"target.ssh_loopback.workdir={base / 'device'}",
        f"target.ssh_loopback.python={device_python}",
    ]
    # `dvc exp run -S` composes params.yaml from conf/ and its own overrides only: pass them all
    overrides += FAST + [f"build.precisions=[{','.join(PRECISIONS)}]"]
    repo = fresh_repo(base / "repo", overrides)
    return repo, overrides, base


def test_exp_run_builds_every_target_and_precision_on_its_device(setup, sshd):
    repo, overrides, base = setup
    args = ["dvc", "exp", "run", "-S", "build.targets=[local,ssh_loopback]"]
    for o in overrides:
        args += ["-S", o]
    r = sh(args, repo)
    stages = set(ran(r.stdout))
    assert {f"{st}@{t}" for st in ("probe", "build", "measure") for t in ("local", "ssh_loopback")} <= stages
    fp = json.loads((repo / "artifacts/probe/ssh_loopback.json").read_text())
    assert fp["onnxruntime"] and fp["arch"] and len(fp["fingerprint_sha256"]) == 64
    for p in PRECISIONS:
        build_dir = repo / LAYOUT.build_dir("ssh_loopback", p)
        meta = json.loads((build_dir / "build.json").read_text())
        assert meta["host"] == f"127.0.0.1:{sshd.port}"
        assert meta["device_fingerprint_sha256"] == fp["fingerprint_sha256"]
        assert (build_dir / meta["artifact"]).is_file()
        ev = json.loads((repo / LAYOUT.evaluate_metrics("ssh_loopback", p)).read_text())
        local = json.loads((repo / LAYOUT.evaluate_metrics("local", p)).read_text())
        assert ev["value"] == pytest.approx(local["value"])  # same runtime, same model, run on the device
        # the device computes what was validated; its verdict is the local one (whether INT8 is accepted
        # at all depends on this CPU's INT8 kernels, so that is not asserted)
        assert ev["parity"]["failed"] == [] and ev["accepted"] == local["accepted"]
        assert ev["accepted"] or "drop" in ev["reason"]
        bench = json.loads((repo / LAYOUT.benchmark_metrics("ssh_loopback", p)).read_text())
        assert bench["latency"]["b1"]["iterations"] >= 10 and "torch" not in bench
    # the device's scratch folders are gone; the agent stays for the next call
    leftovers = list((base / "device" / "jobs").iterdir()) if (base / "device" / "jobs").exists() else []
    assert leftovers == []
    summary = json.loads((repo / "artifacts/report/summary.json").read_text())
    assert {(row["target"], row["precision"]) for row in summary["rows"]} == {
        (t, p) for t in ("local", "ssh_loopback") for p in PRECISIONS
    }


def test_rerun_with_nothing_changed_rebuilds_nothing(setup):
    repo, _, _ = setup
    r = sh(["dvc", "repro"], repo)
    assert ran(r.stdout) == []  # the devices are asked by `probe --refresh`, not on every repro


def test_changed_fingerprint_rebuilds_only_that_device(setup):
    repo, _, base = setup
    site = base / "upgraded-site"
    meta = site / "onnxruntime-9.9.9.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime\nVersion: 9.9.9\n")
    launcher(base / "device-python3", pythonpath=site)
    r = sh([sys.executable, "-m", "tasks.probe", "--refresh"], repo)  # what `make run` does first
    assert "probe@ssh_loopback: the device changed" in r.stderr and "probe@local: unchanged" in r.stderr
    r = sh(["dvc", "repro"], repo)
    stages = set(ran(r.stdout))
    assert json.loads((repo / "artifacts/probe/ssh_loopback.json").read_text())["onnxruntime"] == "9.9.9"
    assert {"probe@ssh_loopback", "build@ssh_loopback", "measure@ssh_loopback"} <= stages
    assert not {s for s in stages if s.endswith("@local")}
    # every build of the device was redone: its fingerprint is among each build's inputs
    assert not {k for k in kept(r.stderr) if k.startswith("build@ssh_loopback")}
    fp = json.loads((repo / "artifacts/probe/ssh_loopback.json").read_text())
    for p in PRECISIONS:
        meta = json.loads((repo / LAYOUT.build_dir("ssh_loopback", p) / "build.json").read_text())
        assert meta["device_fingerprint_sha256"] == fp["fingerprint_sha256"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert any(d["path"] == "artifacts/probe/ssh_loopback.json" for d in lock["build@ssh_loopback"]["deps"])
