"""Release bundles from a real pipeline run: contents, manifest hashes, the signature, the refusals,
and the version that each release takes."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from tasks.config import load_config
from tasks.data.split import Split
from tasks.io import read_json, sha256_file, write_json
from tasks.layout import LAYOUT
from tasks.release import keys, make, manifest
from tasks.release.bundle import next_version
from tasks.runtimes.local import local_outputs
from tasks.stage import StageError
from tests.tasks.release.pipeline import pipeline_run, project  # noqa: F401

MODEL = "edgeforge-mnist_cnn"


def _release(**kw) -> list[dict]:
    return make.make(load_config("params.yaml"), **kw)


def _pub():
    return keys.load_public(".edgeforge/release/signing_ed25519.pub")


def test_bundle_contents_manifest_and_signature(project):
    (b,) = _release()
    root = project / "releases" / MODEL / "0.1.0" / "local"
    assert b["path"] == root.relative_to(project) and b["class"] == "local" and b["key"] == "local-fp32"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert [f for f in files if not f.startswith(("container/", "triton/"))] == [
        "artifact/model.onnx",
        "golden/inputs.npy",
        "golden/outputs.npz",
        "manifest.json",
        "manifest.sig",
        "source.onnx",
    ]
    data = (root / "manifest.json").read_bytes()
    m = json.loads(data)
    assert data == manifest.canonical(m)  # exactly the canonical bytes
    assert b["sha256"] == manifest.bundle_sha(data) == sha256_file(root / "manifest.json")
    assert b["size"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert manifest.check(root, _pub()) == m
    # every file but the manifest and its signature, with its real hash and size
    assert set(m["files"]) == set(files) - {"manifest.json", "manifest.sig"}
    for rel, meta in m["files"].items():
        assert meta == {"sha256": sha256_file(root / rel), "size": (root / rel).stat().st_size}
    build = read_json(LAYOUT.build_dir("local", "fp32") / "build.json")
    assert sha256_file(root / "artifact/model.onnx") == build["sha256"] == m["artifact"]["sha256"]
    assert sha256_file(root / "source.onnx") == sha256_file(LAYOUT.precision_onnx("fp32", "onnxruntime"))
    assert m["format"] == "edgeforge-release/1" and m["model"] == MODEL and m["version"] == "0.1.0"
    assert m["class"] == "local" and m["created_at"].endswith("Z")
    if importlib.util.find_spec("tasks.release.containers") is None:  # the containers helper's part not merged
        assert m["container"] is None and not any(f.startswith(("container/", "triton/")) for f in files)
    else:  # the container recipe, and the Triton entry serving the artifact itself
        triton = f"triton/{MODEL}"
        c = m["container"]
        assert (c["dockerfile"], c["triton"]) == ("container/Dockerfile", triton) and c["base_image"]
        assert {"container/Dockerfile", "container/README.md", f"{triton}/config.pbtxt"} <= set(files)
        assert sha256_file(root / triton / "1/model.onnx") == m["artifact"]["sha256"]
    assert m["checkpoint_sha256"] == sha256_file(project / "model.pt")
    assert m["key_id"] == keys.key_id(_pub())
    art = m["artifact"]
    assert art["files"] == ["artifact/model.onnx"] and art["source"] == "source.onnx"
    assert art["calibration_cache"] is None
    assert art["compatible"] == {"runtime": "onnxruntime", "onnxruntime_version": build["runtime_version"]}
    assert art["recipe"]["runtime"] == "onnxruntime" and art["recipe"]["precision"] == "fp32"
    assert art["recipe"]["choices"] == {k: v for k, v in build["device_choices"].items() if k != "reasons"}
    fp = read_json(LAYOUT.fingerprint("local"))
    assert m["validated_on"] == {"target": "local", "fingerprint_sha256": fp["fingerprint_sha256"], "fingerprint": fp}
    summary = read_json(LAYOUT.summary)
    row = next(r for r in summary["rows"] if r["key"] == "local-fp32")
    assert m["metrics"]["key"] == "local-fp32" and m["metrics"]["verdict"] == "accepted"
    assert m["metrics"]["value"] == row["value"] and m["metrics"]["latency_p99_ms"] == row["latency_p99_ms"]
    assert len(m["metrics"]["eval_split_sha256"]) == 64
    assert m["mlflow"]["run_id"] == b["run_id"] and m["mlflow"]["experiment"] == "edgeforge"
    assert m["mlflow"]["pipeline_run_id"] == summary["mlflow"]["parent_run_id"]
    # golden data: the first release.golden_samples eval samples and the artifact's outputs on them
    g = m["golden"]
    assert (g["samples"], g["atol"], g["rtol"], g["max_outside"]) == (8, 1e-3, 1e-3, 0.0)
    x = np.load(root / g["inputs"])
    assert x.dtype == np.float32 and np.array_equal(x, Split(LAYOUT.split("eval")).x[:8])
    want = local_outputs(root / "artifact/model.onnx", "onnxruntime", Split(LAYOUT.split("eval")), 4, limit=8)
    with np.load(root / g["outputs"]) as z:
        assert set(z.files) == set(want) == {"logits"}
        np.testing.assert_allclose(z["logits"], want["logits"], rtol=1e-5, atol=1e-5)
        assert z["logits"].dtype == np.float32 and z["logits"].shape[0] == 8


def test_a_flipped_byte_a_wrong_key_or_an_extra_file_is_refused(project, tmp_path):
    _release()
    good = project / "releases" / MODEL / "0.1.0" / "local"

    def copy() -> object:
        d = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(good, d)
        return d

    d = copy()
    blob = bytearray((d / "artifact/model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 1
    (d / "artifact/model.onnx").write_bytes(bytes(blob))
    with pytest.raises(StageError, match="artifact/model.onnx does not match its sha256"):
        manifest.check(d, _pub())
    d = copy()
    data = bytearray((d / "manifest.json").read_bytes())
    data[data.index(b'"samples":8') + 10] = ord("7")
    (d / "manifest.json").write_bytes(bytes(data))
    with pytest.raises(StageError, match="signature .* does not verify"):
        manifest.check(d, _pub())
    d = copy()
    (d / "golden/extra.npy").write_bytes(b"x")
    with pytest.raises(StageError, match="not in the manifest: golden/extra.npy"):
        manifest.check(d, _pub())
    d = copy()
    (d / "source.onnx").unlink()
    with pytest.raises(StageError, match="source.onnx is missing"):
        manifest.check(d, _pub())
    keys.generate(tmp_path / "other.pem", tmp_path / "other.pub")
    with pytest.raises(StageError, match="signed by key"):
        manifest.check(good, keys.load_public(tmp_path / "other.pub"))


def test_versions_bump_and_an_existing_version_is_never_replaced(project):
    assert _release()[0]["version"] == "0.1.0"
    assert _release()[0]["version"] == "0.1.1"
    assert _release(version="1.4.0")[0]["version"] == "1.4.0"
    assert _release()[0]["version"] == "1.4.1"
    before = sha256_file(project / "releases" / MODEL / "0.1.1" / "local" / "manifest.json")
    with pytest.raises(StageError, match=r"release edgeforge-mnist_cnn 0.1.1 exists already.*bump release.version"):
        _release(version="0.1.1")
    assert sha256_file(project / "releases" / MODEL / "0.1.1" / "local" / "manifest.json") == before
    with pytest.raises(StageError, match="not MAJOR.MINOR.PATCH"):
        next_version(load_config("params.yaml"), "1.4")


def test_refusals_leave_no_bundle(project):
    store = project / "releases"
    # no key: nothing is made
    (project / ".edgeforge/release/signing_ed25519.pem").unlink()
    with pytest.raises(StageError, match="no signing key.*edgeforge keygen"):
        _release()
    assert not store.exists()
    keys.generate(".edgeforge/release/signing_ed25519.pem", ".edgeforge/release/signing_ed25519.pub", force=True)
    # the winner rejected since (summary edited as a re-judged run would write it)
    summary = read_json(LAYOUT.summary)
    rejected = json.loads(json.dumps(summary))
    for r in rejected["rows"]:
        r["accepted"], r["verdict"], r["reason"] = False, "rejected", "top1 drop 9.00 points > eval.max_drop 1"
    write_json(LAYOUT.summary, rejected)
    with pytest.raises(StageError, match="winner local-fp32 is not accepted"):
        _release()
    # a winner of a runtime releases cannot ship (ExecuTorch, converted on the host): refused, naming it
    write_json(LAYOUT.summary, summary)
    build_json = LAYOUT.build_dir("local", "fp32") / "build.json"
    saved_rec = build_json.read_bytes()
    write_json(build_json, {**read_json(build_json), "runtime": "executorch"})
    with pytest.raises(StageError, match="winner local-fp32 runs executorch, which releases cannot ship yet"):
        _release()
    assert not store.exists()
    build_json.write_bytes(saved_rec)
    # the build changed since the run chose it
    write_json(LAYOUT.summary, summary)
    art = LAYOUT.build_dir("local", "fp32") / "model.onnx"
    saved = art.read_bytes()
    art.write_bytes(saved + b"\0")
    with pytest.raises(StageError, match="the build changed since the pipeline run"):
        _release()
    art.write_bytes(saved)
    # no pipeline run
    LAYOUT.summary.unlink()
    with pytest.raises(StageError, match=r"summary.json is missing: run the pipeline first \(`make run`\)"):
        _release()
    assert not store.exists() or not any(store.rglob("manifest.json"))


def test_classes_follow_release_devices(project):
    import yaml

    p = yaml.safe_load(open("params.yaml"))
    p["target"]["ssh_a"] = {**p["target"]["local"], "transport": "ssh", "host": "127.0.0.1"}
    p["release"]["devices"] = {"ssh_a": "local"}
    with open("params.yaml", "w") as f:
        yaml.safe_dump(p, f)
    (b,) = _release()
    assert b["class"] == "local"
    with pytest.raises(StageError, match="--classes nope: not a device class"):
        _release(classes=["nope"])


def test_golden_outputs_over_ssh_match_this_process(project, sshd, tmp_path):
    """An SSH class's golden outputs come from its device agent (``infer``), as evaluate gets them."""
    from tasks.config import Config, from_dict
    from tasks.release import golden
    from tests.tasks.test_devices import ssh_target

    p = read_json_yaml("params.yaml")
    p["target"]["dev"] = ssh_target(sshd, tmp_path / "device")
    cfg = from_dict(Config, p)
    build_dir, eval_dir = LAYOUT.build_dir("local", "fp32"), LAYOUT.split("eval")
    remote = golden.golden_outputs(cfg, "dev", build_dir, eval_dir, 5, log=lambda m: None)
    here = golden.golden_outputs(cfg, "local", build_dir, eval_dir, 5)
    assert set(remote) == set(here) == {"logits"} and remote["logits"].shape[0] == 5
    np.testing.assert_allclose(remote["logits"], here["logits"], rtol=1e-5, atol=1e-6)


def read_json_yaml(path: str) -> dict:
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def _row(target: str, precision: str, host: str = "local", accepted: bool = True) -> dict:
    return {
        "key": f"{target}-{precision}",
        "target": target,
        "precision": precision,
        "host": host,
        "runtime": "onnxruntime",  # as the summary's rows carry it
        "accepted": accepted,
    }


def test_classes_share_their_device_winner(cfg):
    """Two build targets on one device: one contest, one winner; each class that names either gets it."""
    import dataclasses

    from tasks.release.bundle import plan

    rows = [_row("local", "fp32"), _row("local_openvino", "fp32"), _row("jet", "fp16", host="10.0.0.2:22")]
    summary = {"rows": rows, "winners": {"local": {"key": "local_openvino-fp32"}, "10.0.0.2:22": {"key": "jet-fp16"}}}
    build = dataclasses.replace(cfg.build, targets=["local", "local_openvino", "jet"])
    c = dataclasses.replace(cfg, build=build)
    # no release.devices: every device once, named after its winner's target
    assert [(p.cls, p.row["key"]) for p in plan(c, summary)] == [
        ("local_openvino", "local_openvino-fp32"),
        ("jet", "jet-fp16"),
    ]
    rel = dataclasses.replace(c.release, devices={"a": "local", "b": "local_openvino", "c": "local"})
    c2 = dataclasses.replace(c, release=rel)
    assert [(p.cls, p.row["key"]) for p in plan(c2, summary)] == [
        ("local", "local_openvino-fp32"),
        ("local_openvino", "local_openvino-fp32"),
    ]
    assert [p.cls for p in plan(c2, summary, ["local"])] == ["local"]
    lost = {"rows": rows, "winners": {"10.0.0.2:22": {"key": "jet-fp16"}}}
    with pytest.raises(StageError, match="class 'local': device 'local' has no winner"):
        plan(c2, lost)
    rel3 = dataclasses.replace(c.release, devices={"a": "elsewhere"})
    with pytest.raises(StageError, match="class 'elsewhere' .* is not in build.targets"):
        plan(dataclasses.replace(c, release=rel3), summary)


def test_artifact_files_are_the_artifact_first_then_its_weights(tmp_path):
    from tasks.records import artifact_files

    for name in ("model.xml", "model.bin", "build.log", "layers.json"):
        (tmp_path / name).write_text(name)
    rec = {
        "target": "t",
        "precision": "fp32",
        "runtime": "openvino",
        "artifact": "model.xml",
        "runtime_version": "1",
        "host": "local",
        "sha256": "0",
        "size_bytes": 1,
        "source_onnx_sha256": "0",
        "build_seconds": 0.1,
    }
    write_json(tmp_path / "build.json", rec)
    assert [p.name for p in artifact_files(tmp_path)] == ["model.xml", "model.bin"]


def _trt_record(build_dir, **extra) -> None:
    rec = {
        "target": "jet",
        "precision": "fp16",
        "runtime": "tensorrt",
        "artifact": "model.engine",
        "runtime_version": "10.3.0",
        "host": "10.0.0.2:22",
        "sha256": "0",
        "size_bytes": 1,
        "source_onnx_sha256": "0",
        "build_seconds": 1.0,
        "trt_plugins": ["/opt/lib/libplug.so"],
        **extra,
    }
    build_dir.mkdir(parents=True, exist_ok=True)
    for name in ("model.engine", "build.log", "layers.json", "model.opset17.onnx"):
        (build_dir / name).write_text(name)
    write_json(build_dir / "build.json", rec)


def test_a_tensorrt_recipe_rebuilds_with_the_bundles_files(project, tmp_path):
    """A TensorRT bundle: the engine alone under artifact/, the model trtexec was given as source.onnx
    (the down-converted one when the build converted it), and argv naming the bundle's files."""
    from tasks.config import Config, from_dict
    from tasks.records import BuildRecord, artifact_files
    from tasks.release import recipe

    p = read_json_yaml("params.yaml")
    p["target"]["jet"] = {**p["target"]["local"], "runtime": "tensorrt", "transport": "ssh", "host": "10.0.0.2"}
    cfg = from_dict(Config, p)
    fp = {"tensorrt": "10.3.0", "gpu": [{"name": "Orin", "compute_capability": "8.7"}], "l4t": "36.4"}
    build_dir = tmp_path / "jet-fp16"
    _trt_record(build_dir)
    made = recipe.rebuild(cfg, BuildRecord.read(build_dir / "build.json"), build_dir, fp)
    assert made.compatible == {
        "runtime": "tensorrt",
        "tensorrt_version": "10.3.0",
        "gpu_compute_capability": "8.7",
        "l4t": "36.4",
    }
    assert made.files == {"source.onnx": LAYOUT.onnx}  # fp16: the FP32 ONNX + --fp16
    r = made.recipe
    assert "--onnx={source}" in r["argv"] and "--fp16" in r["argv"] and "--saveEngine=model.engine" in r["argv"]
    assert not any("model.onnx" in a for a in r["argv"])
    assert (r["engine"], r["log"], r["plugins"]) == ("model.engine", "build.log", ["/opt/lib/libplug.so"])
    # converted to an opset the device's parser reads: that file is the source, and not part of the engine
    _trt_record(build_dir, onnx_opset_conversion={"from": 18, "to": 17, "file": "model.opset17.onnx"})
    made = recipe.rebuild(cfg, BuildRecord.read(build_dir / "build.json"), build_dir, fp)
    assert made.files == {"source.onnx": build_dir / "model.opset17.onnx"}
    assert [f.name for f in artifact_files(build_dir)] == ["model.engine"]


def test_what_deploy_and_fleet_status_read(project, tmp_path):
    """The calls of tasks/release/deploy.py, tasks/tracking/deployments.py and flows/release_cli.py."""
    (b,) = _release()
    cfg = load_config("params.yaml")
    root = project / b["path"]
    m = manifest.read_manifest(root)
    assert manifest.bundle_sha(root) == b["sha256"] == manifest.bundle_sha((root / "manifest.json").read_bytes())
    line = keys.public_key_line(cfg)
    assert line == (project / cfg.release.public_key_file).read_text().strip()
    raw = keys.raw_public(_pub())
    assert manifest.read_manifest(root, raw) == m == manifest.read_manifest(root, line)
    # fleet status: the device's parsed manifest and its signature
    sig = (root / "manifest.sig").read_text()
    assert manifest.signature_ok(cfg, m, sig)
    assert not manifest.signature_ok(cfg, {**m, "version": "9.9.9"}, sig)
    assert not manifest.signature_ok(cfg, None, sig) and not manifest.signature_ok(cfg, m, None)
    (root / "golden/inputs.npy").write_bytes(b"altered")
    assert manifest.read_manifest(root)["version"] == "0.1.0"  # no key: read only, the device verifies
    with pytest.raises(StageError, match="golden/inputs.npy does not match"):
        manifest.read_manifest(root, raw)
    (project / cfg.release.public_key_file).unlink()
    assert not manifest.signature_ok(cfg, m, sig)
