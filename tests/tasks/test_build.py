"""Stage build@<target> (each precision one build) on the local ONNX Runtime target."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tasks import quantize
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.quant.common import QuantError
from tasks.records import built_artifact
from tests.conftest import ROOT, build_main, write_params


def _build(precision: str) -> dict:
    quantize.main(["--precision", precision])
    build_main(["--target", "local", "--precision", precision])
    return read_json(LAYOUT.build_metrics("local", precision))


def _input_elem_type(path) -> int:
    return onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type


def _check_build(workdir, exported, precision: str) -> tuple:
    metrics = _build(precision)
    bdir = workdir / LAYOUT.build_dir("local", precision)
    meta = read_json(bdir / "build.json")
    assert meta == metrics  # the metrics file is the build record
    art = built_artifact(bdir)
    assert art == bdir / "model.onnx" and art.is_file()
    assert meta["target"] == "local" and meta["precision"] == precision
    assert meta["runtime"] == "onnxruntime"
    assert meta["runtime_version"] == ort.__version__
    assert meta["host"] == "local"
    assert meta["sha256"] == sha256_file(art)
    assert meta["size_bytes"] == art.stat().st_size
    assert meta["source_onnx_sha256"] == sha256_file(LAYOUT.precision_onnx(precision))
    # the artifact runs in onnxruntime on a real-shaped batch
    sess = ort.InferenceSession(str(art), providers=["CPUExecutionProvider"])
    x = np.zeros((3, 1, 28, 28), np.float32)
    if sess.get_inputs()[0].type == "tensor(float16)":
        x = x.astype(np.float16)
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert out.shape == (3, 10)
    return meta, art


def test_fp32_and_fp16_builds(workdir, params, exported):
    meta32, art32 = _check_build(workdir, exported, "fp32")
    meta16, art16 = _check_build(workdir, exported, "fp16")
    # the artifact is the graph this ONNX Runtime's optimizer made of the precision's ONNX,
    # computing what the ONNX computes
    assert meta32["optimized"] is True and meta32["providers"][-1] == "CPUExecutionProvider"
    x = np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(art32), run(exported), atol=1e-5)
    np.testing.assert_allclose(run(art16), run(LAYOUT.precision_onnx("fp16")), atol=1e-3)
    assert meta16["sha256"] != meta32["sha256"]
    assert art16.stat().st_size < art32.stat().st_size
    # FP16 keeps float32 inputs/outputs by default
    assert _input_elem_type(art16) == onnx.TensorProto.FLOAT
    assert onnx.load(str(art16)).graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not list((workdir / "artifacts" / "build").glob(".*"))  # no scratch folders left


def test_fp16_float16_io_when_not_keeping_io_types(workdir, params, exported):
    params["build"]["fp16_keep_io_types"] = False
    write_params(params)
    meta, art = _check_build(workdir, exported, "fp16")
    assert _input_elem_type(art) == onnx.TensorProto.FLOAT16
    # the session casts the pipeline's float32 batches to the artifact's float16 input
    from tasks.runtimes import get_runtime

    out = get_runtime("onnxruntime").load(art).infer(np.zeros((2, 1, 28, 28), np.float32))
    assert out["logits"].shape == (2, 10) and out["logits"].dtype == np.float32


def test_unsupported_precision_fails_in_quantize(cfg, exported, tmp_path):
    with pytest.raises(QuantError, match="precision 'int4' is not supported"):
        quantize.run(cfg, "int4", exported, tmp_path)


def test_cli_unknown_target_exits_1_naming_defined_targets(params, workdir):
    r = subprocess.run(
        [sys.executable, "-m", "tasks.build", "--target", "nope", "--precision", "fp32"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert "edgeforge build@nope: error: --target 'nope' is not defined" in r.stderr
    assert "'nope' is not defined; defined targets: local" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (workdir / "artifacts" / "build" / "nope-fp32").exists()


def test_failed_build_leaves_no_outputs(params, workdir, capsys):
    onnx_path = workdir / LAYOUT.precision_onnx("fp32")
    onnx_path.parent.mkdir(parents=True)
    onnx_path.write_bytes(b"not an onnx model")
    # outputs of an earlier build must not survive a failed one
    stale_dir = workdir / LAYOUT.build_dir("local", "fp32")
    stale_dir.mkdir(parents=True)
    (stale_dir / "build.json").write_text("{}")
    stale_metrics = workdir / LAYOUT.build_metrics("local", "fp32")
    stale_metrics.parent.mkdir(parents=True)
    stale_metrics.write_text("{}")

    with pytest.raises(SystemExit) as e:
        build_main(["--target", "local", "--precision", "fp32"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "edgeforge build@local-fp32: error: local: agent build failed:" in err and "Protobuf parsing failed" in err
    assert not stale_dir.exists()
    assert not stale_metrics.exists()
    # the target's folder (build@local's persisted output) may stay, holding no scratch folder either
    assert [p.name for p in (workdir / "artifacts" / "build").iterdir()] == ["local"]
    assert list((workdir / LAYOUT.builds("local")).iterdir()) == []


@pytest.mark.parametrize(
    "cc, int8",
    [
        ("5.3", False),
        ("6.0", False),
        ("6.1", True),
        ("6.2", False),
        ("7.2", True),
        ("8.7", True),
        ("11.0", True),
        ("", None),
    ],
)
def test_int8_capability_by_compute_capability(cc, int8):
    from tasks.build import int8_capable

    assert int8_capable(cc) is int8


NANO = {"name": "NVIDIA Jetson Nano Developer Kit", "compute_capability": "5.3"}  # what the probe records (device tree)
ORIN = {"name": "Jetson AGX Orin Developer Kit", "compute_capability": "8.7"}


def test_int8_on_a_tensorrt_gpu_without_int8_is_refused_before_connecting(params, workdir, capsys, monkeypatch):
    """A Jetson Nano / TX1 (SM 5.3) has no INT8: an int8-* TensorRT build is refused naming the GPU, its
    SM and what to build instead, before the device is even connected to; fp16 there, int8 on an Orin,
    and a device whose GPU the probe could not tell, pass the check (and go on to the device)."""
    from tasks import build
    from tasks.io import write_json
    from tasks.runtimes import BuildError

    params["target"]["nano"] = {**params["target"]["local"], "runtime": "tensorrt"}
    write_params(params)
    connected = []

    def device(name, *args, **kwargs):
        connected.append(name)
        raise BuildError("no device in this test")

    monkeypatch.setattr(build, "device", device)
    cases = [([NANO], "int8-minmax", True), ([NANO], "fp16", False), ([ORIN], "int8-minmax", False)]
    cases += [([], "int8-minmax", False), ([NANO, ORIN], "int8-minmax", False)]
    for gpus, precision, refused in cases:
        write_json(LAYOUT.fingerprint("nano"), {"gpu": gpus, "tensorrt": "8.2.1", "fingerprint_sha256": "0" * 64})
        connected.clear()
        with pytest.raises(SystemExit) as e:
            build.main(["--target", "nano", "--precision", precision])
        err = capsys.readouterr().err
        assert e.value.code == 1 and not LAYOUT.build_dir("nano", precision).exists()
        if refused:
            assert f"edgeforge build@nano-{precision}: error: nano: {precision} needs INT8 kernels, which the " in err
            assert "GPU NVIDIA Jetson Nano Developer Kit (SM 5.3) lacks" in err and "Build fp16 (or fp32)" in err
            assert "build.precisions=[fp32,fp16]" in err and connected == []
        else:
            assert "needs INT8 kernels" not in err and "no device in this test" in err and connected == ["nano"]


def _in_a_dvc_project(workdir) -> None:
    """The repository's dvc.yaml (and the code it declares as deps) in ``workdir``: the stages then
    record each item's inputs digest and keep what did not change (tasks/reuse.py)."""
    import shutil

    shutil.copy(ROOT / "dvc.yaml", workdir / "dvc.yaml")
    for code in ("tasks", "examples"):
        (workdir / code).symlink_to(ROOT / code, target_is_directory=True)


def _records(target: str, precisions) -> dict[str, tuple[bytes, int, bytes]]:
    """Per precision: its metrics record's bytes and mtime, and its build.json's bytes."""
    out = {}
    for p in precisions:
        m = LAYOUT.build_metrics(target, p)
        out[p] = (m.read_bytes(), m.stat().st_mtime_ns, (LAYOUT.build_dir(target, p) / "build.json").read_bytes())
    return out


def test_the_stage_redoes_only_the_precision_whose_inputs_changed(workdir, params, exported, capsys):
    """build@local over every precision, in a DVC project: a second run keeps every build; after
    fp16's model changes, only fp16 is built again, the other builds and records stay as they were."""
    from tasks.reuse import DIGEST_KEY

    _in_a_dvc_project(workdir)
    every = params["build"]["precisions"]
    quantize.main([])
    build_main(["--target", "local"])
    first = _records("local", every)
    for p in every:
        rec = read_json(LAYOUT.build_metrics("local", p))
        assert len(rec.pop(DIGEST_KEY)) == 64 and rec == read_json(LAYOUT.build_dir("local", p) / "build.json")
    capsys.readouterr()

    build_main(["--target", "local"])  # nothing changed: every build kept
    assert _records("local", every) == first
    err = capsys.readouterr().err
    assert all(f"build@local-{p}: unchanged since it was built: kept" in err for p in every)

    params["build"]["fp16_keep_io_types"] = False  # fp16's model changes (float16 inputs)
    write_params(params)
    quantize.main(["--precision", "fp16"])
    capsys.readouterr()
    build_main(["--target", "local"])
    now, err = _records("local", every), capsys.readouterr().err
    assert {p: now[p] for p in every if p != "fp16"} == {p: first[p] for p in every if p != "fp16"}
    assert now["fp16"][0] != first["fp16"][0] and now["fp16"][2] != first["fp16"][2]
    assert "build@local-fp16: unchanged" not in err and "build@local-fp32: unchanged since it was built: kept" in err
    assert _input_elem_type(built_artifact(LAYOUT.build_dir("local", "fp16"))) == onnx.TensorProto.FLOAT16
