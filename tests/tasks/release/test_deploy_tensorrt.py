"""A TensorRT engine is tied to the TensorRT version it was built with: a release validated on one
device reaches a device of the same class with another TensorRT (another JetPack), which rebuilds
the engine itself from the bundle's ONNX with the bundle's trtexec recipe, smoke-tests it on the
golden inputs, and reports its build log and the new engine's sha256.

TensorRT cannot run here: each device is the tests' real sshd with a FAKE ``trtexec`` (it replays
real trtexec logs and writes an engine that is its ONNX) and FAKE ``tensorrt``/``pycuda`` Python
packages that run such engines with ONNX Runtime (tests/fakes/), claiming 10.3.0 on the device the
release was validated on and 10.4.0 on the other."""

from __future__ import annotations

import sys
from pathlib import Path

from tasks import benchmark, build, evaluate, export, parity, probe, quantize, report
from tasks.config import load_config
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.release import deploy, keys, make, manifest, store
from tests.conftest import write_params
from tests.fakes import TRT_PYTHON, install_trtexec
from tests.tasks.test_devices import ssh_target


def _device(sshd, tmp_path: Path, name: str, version: str) -> dict:
    trtexec = install_trtexec(tmp_path / f"trtexec-{name}", version)
    py = tmp_path / f"python-{name}"  # the device's python, with the FAKE TensorRT packages importable
    py.write_text(
        f'#!/bin/sh\nPYTHONPATH={TRT_PYTHON} EDGEFORGE_FAKE_TRT_VERSION={version} exec {sys.executable} "$@"\n'
    )
    py.chmod(0o755)
    return ssh_target(sshd, tmp_path / name, runtime="tensorrt", python=str(py), tensorrt={"trtexec": str(trtexec)})


def test_an_engine_from_another_tensorrt_is_rebuilt_on_the_device(params, model_file, prepared, sshd, tmp_path):
    params["target"]["orin_a"] = _device(sshd, tmp_path, "orin_a", "10.3.0")
    params["target"]["orin_b"] = _device(sshd, tmp_path, "orin_b", "10.4.0")
    params["build"].update(targets=["orin_a"], precisions=["fp32"])
    params["release"].update(devices={"orin_a": "orin_a", "orin_b": "orin_a"}, canary="orin_a")
    write_params(params)
    export.main([])
    parity.main([])
    probe.main(["--target", "orin_a"])
    quantize.main(["--precision", "fp32"])
    argv = ["--target", "orin_a", "--precision", "fp32"]
    for stage in (build, benchmark, evaluate):
        stage.main(argv)
    report.main([])
    keys.generate(".edgeforge/release/signing_ed25519.pem", ".edgeforge/release/signing_ed25519.pub")
    make.main([])
    cfg = load_config()
    bundle = store.bundle_dir(cfg, "orin_a")
    m = manifest.read_manifest(bundle)
    assert m["artifact"]["runtime"] == "tensorrt" and m["artifact"]["compatible"]["tensorrt_version"] == "10.3.0"
    assert "{source}" in " ".join(m["artifact"]["recipe"]["argv"])
    # no Jetson here (no L4T): the bundle says why it carries no container recipe, and still ships
    assert m["container"]["dockerfile"] is None and "L4T" in m["container"]["error"]
    engine_sha = read_json(LAYOUT.build_metrics("orin_a", "fp32"))["sha256"]

    line = keys.public_key_line(cfg)
    for d in ("orin_a", "orin_b"):
        deploy.trust(cfg, d, line)
    same = deploy.deploy(cfg, "orin_a", bundle, lambda _m: None)
    assert same.status == "activated" and same.rebuilt is False and same.artifact_sha256 == engine_sha, same.reason

    other = deploy.deploy(cfg, "orin_b", bundle, lambda _m: None)
    assert other.status == "activated" and other.rebuilt is True, other
    assert "10.3.0" in other.reason and "10.4.0" in other.reason
    assert other.build_log and "TensorRT version" in other.build_log  # the device's trtexec log came back
    assert other.artifact_sha256 and other.artifact_sha256 != engine_sha
    st = deploy.status(cfg, "orin_b")["current"]
    assert st["rebuilt"] is True and st["version"] == m["version"]
    engine = tmp_path / "orin_b" / "release" / "current" / st["artifact"]
    assert sha256_file(engine) == other.artifact_sha256
