"""Core ML here (Linux): real coremltools conversions of a tiny model at each precision, read back from
the zipped package's spec (``MLModel(..., skip_model_load=True)``: no Core ML needed); the zip's
determinism and safety; the names the device model maps; off macOS, built but not run (the stages record
n/a with the reason). Running a model needs macOS (``MLModel.predict``), so inference is not tested here."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tasks import benchmark, evaluate, quantize
from tasks.agent import agent, coreml_model
from tasks.device.support import support
from tasks.io import read_json
from tasks.layout import LAYOUT
from tasks.reporting import summary
from tasks.runtimes import BuildError, coreml_convert, get_runtime
from tasks.runtimes.base import HostSource
from tests.conftest import build_main, write_params

LINUX = {"os": {"system": "Linux", "release": "6.8.0"}}
MAC = {"os": {"system": "Darwin", "release": "24.1.0"}}
NOT_RUN = (
    "Core ML runs only on macOS (this target is Linux); point the target at a Mac over SSH to benchmark and "
    "evaluate the .mlpackage (conf/target/mac_coreml.yaml)"
)


class Tiny(torch.nn.Module):
    """A conv (4x1x3x3 weight) and a linear layer (10x4): two weights for int8 compression."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def export_names(path: Path, batch) -> Path:
    """An ONNX with the export's names and batch (the converter reads only those): input ``pixels``
    ``[batch, 1, 8, 8]``, output ``scores``; ``batch`` an int or a symbol."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 1, 8, 8])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 10])
    graph = helper.make_graph([helper.make_node("Identity", ["pixels"], ["scores"])], "names", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def source(tmp: Path, precision: str, batch="batch") -> HostSource:
    onnx_path = export_names(tmp / f"export-{batch}.onnx", batch)
    return HostSource(precision, onnx_path, onnx_path, lambda: Tiny().eval(), (1, 8, 8), lambda: iter(()), 64)


def spec_of(artifact: Path, into: Path):
    """The Core ML spec of the zipped package, unpacked as the device does (read without Core ML)."""
    ct = coreml_convert.import_coremltools()
    return ct.models.MLModel(str(coreml_model.unpack(artifact, into)), skip_model_load=True).get_spec()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """Each precision converted by the runtime: ``{precision: (Built, spec of the unzipped package)}``."""
    rt, out = get_runtime("coreml"), {}
    for p in ("fp32", "fp16", "int8-minmax"):
        tmp = tmp_path_factory.mktemp(p)
        b = rt.convert(source(tmp, p), tmp / "build")
        out[p] = (b, spec_of(b.artifact, tmp / "unpacked"))
    return out


def test_each_precision_converts_to_its_compute_precision(built):
    fp32, fp16, int8 = (coreml_convert.program_summary(built[p][1]) for p in ("fp32", "fp16", "int8-minmax"))
    assert set(fp32["op_dtypes"]) == {"FLOAT32"} and fp32["int8_weights"] == 0
    # fp16: the input is cast once, every op after it computes in fp16, the output is cast back to fp32
    assert fp16["op_dtypes"]["FLOAT16"] > fp16["op_dtypes"]["FLOAT32"] and fp16["int8_weights"] == 0
    assert int8["op_dtypes"] == fp16["op_dtypes"] and int8["int8_weights"] == 2  # conv and linear weights
    for p, want in (("fp32", "float32"), ("fp16", "float16"), ("int8-minmax", "float16")):
        meta = built[p][0].meta
        assert meta["compute_precision"] == want and meta["format"] == "mlprogram" and meta["source"] == "torch.export"
        assert meta["op_dtypes"] == coreml_convert.program_summary(built[p][1])["op_dtypes"]
        assert built[p][1].WhichOneof("Type") == "mlProgram"
    assert "macOS" in built["int8-minmax"][0].meta["int8_activations"]
    assert "int8_activations" not in built["fp16"][0].meta


def test_the_artifact_is_one_zip_and_nothing_else(built):
    b = built["fp16"][0]
    assert b.artifact.name == "model.mlpackage.zip" and [p.name for p in b.artifact.parent.iterdir()] == [
        b.artifact.name
    ]
    with zipfile.ZipFile(b.artifact) as z:
        names = z.namelist()
    assert names == sorted(names) and "model.mlpackage/Manifest.json" in names


def test_names_the_device_model_maps_come_from_the_export(built, tmp_path):
    for p in built:
        assert coreml_model.io_names(built[p][1]) == ("pixels", ["scores"], 1, 64)  # HostSource.max_batch
    fixed = get_runtime("coreml").convert(source(tmp_path, "fp32", batch=3), tmp_path / "build")
    assert (
        coreml_model.io_names(spec_of(fixed.artifact, tmp_path / "unpacked")) == ("pixels", ["scores"], 3, 3)
        and fixed.meta["batch"] == 3
    )


def test_the_zip_depends_only_on_names_and_contents(tmp_path):
    pkg = tmp_path / "a" / "model.mlpackage"
    (pkg / "Data" / "w").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    (pkg / "Data" / "w" / "weight.bin").write_bytes(b"\x01\x02")
    first = coreml_convert.zip_package(pkg, tmp_path / "one.zip")
    assert first == hashlib.sha256((tmp_path / "one.zip").read_bytes()).hexdigest()
    (pkg / "Manifest.json").touch()  # a newer mtime changes nothing
    import os

    os.utime(pkg / "Data" / "w" / "weight.bin", (0, 0))
    assert coreml_convert.zip_package(pkg, tmp_path / "two.zip") == first
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    (pkg / "Data" / "w" / "weight.bin").write_bytes(b"\x01\x03")
    assert coreml_convert.zip_package(pkg, tmp_path / "three.zip") != first
    out = coreml_model.unpack(tmp_path / "one.zip", tmp_path / "x")
    assert out.name == "model.mlpackage" and (out / "Data" / "w" / "weight.bin").read_bytes() == b"\x01\x02"
    assert coreml_model.unpack(tmp_path / "one.zip", tmp_path / "x") == out  # unpacked once


@pytest.mark.parametrize("member", ["../evil.txt", "/abs.txt", "model.mlpackage/../../evil.txt", "other/x"])
def test_unpack_refuses_members_outside_one_package(tmp_path, member):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("model.mlpackage/Manifest.json", "{}")
        z.writestr(member, "x")
    with pytest.raises(agent.AgentError) as e:
        coreml_model.unpack(bad, tmp_path / "out")
    assert e.value.kind == "bad_input" and not (tmp_path / "out").exists()


def test_off_macos_it_is_converted_not_run(tmp_path):
    rt = get_runtime("coreml")
    assert rt.converts_on_host and rt.not_run_reason(MAC) is None
    assert rt.not_run_reason(LINUX) == NOT_RUN
    with pytest.raises(agent.AgentError) as e:
        agent.MODELS["coreml"](tmp_path / "model.mlpackage.zip", None, {})
    assert e.value.kind == "missing_runtime" and "runs only on macOS; this device is Linux" in str(e.value)
    with pytest.raises(BuildError, match="runs only on macOS"):
        rt.load(tmp_path / "model.mlpackage.zip")
    with pytest.raises(BuildError, match="from the PyTorch model"):
        rt.build(tmp_path / "m.onnx", "fp32", tmp_path, None)


def test_precisions_that_do_not_apply_say_what_to_build():
    for p in ("fp32", "fp16", "int8-minmax"):
        assert support(LINUX, "coreml", p) == support(MAC, "coreml", p) and not support(MAC, "coreml", p).skipped
    for p in ("bf16", "int8-entropy", "int8-percentile", "int8-mixed"):
        assert support(MAC, "coreml", p).skipped.endswith("build fp32 or fp16 or int8-minmax for this target")
    assert "no bf16" in support(MAC, "coreml", "bf16").skipped


class Branchy(Tiny):
    """Data-dependent control flow: torch.export refuses it; a trace follows the example's branch."""

    def forward(self, x):
        return super().forward(x if x.sum() >= 0 else -x)


def test_a_model_torch_export_refuses_is_traced_and_the_record_says_so():
    ml, meta = coreml_convert.convert(Branchy().eval(), (1, 8, 8), "pixels", ["scores"], None, "fp32")
    assert meta["source"] == "torch.jit.trace" and "torch.export" in meta["capture_failures"]
    assert any("trace might not generalize" in w or "Python boolean" in w for w in meta["tracer_warnings"])
    assert coreml_model.io_names(ml.get_spec()) == ("pixels", ["scores"], 1, 64)


def test_a_precision_core_ml_does_not_build_is_refused():
    with pytest.raises(BuildError, match="Core ML builds fp32, fp16, int8-minmax; not 'int8-entropy'"):
        coreml_convert.convert(Tiny().eval(), (1, 8, 8), "pixels", ["scores"], None, "int8-entropy")


def test_the_stages_convert_record_not_run_and_measure_n_a_off_macos(workdir, params, exported, capsys):
    """build@local_coreml on this Linux machine: converted here (real coremltools, the example's digit model)
    and recorded not_run without contacting the device; benchmark and evaluate are then n/a with the reason."""
    params["build"]["precisions"] = ["fp32", "bf16"]
    params["target"]["local_coreml"] = {"transport": "local", "runtime": "coreml", "threads": None}
    write_params(params)
    quantize.main(["--precision", "fp32"])
    build_main(["--target", "local_coreml"])
    rec = read_json(LAYOUT.build_metrics("local_coreml", "fp32"))
    assert rec["not_run"] == NOT_RUN and rec["converted_on_host"] and "checked_on_device" not in rec
    assert rec["input_name"] == "input" and rec["output_names"] == ["logits"]
    assert rec["compute_precision"] == "float32" and rec["artifact"] == "model.mlpackage.zip"
    assert rec["device_choices"]["compute_units"] == "ALL"  # what the Mac's agent would load it with
    assert sorted(p.name for p in LAYOUT.build_dir("local_coreml", "fp32").iterdir()) == ["build.json", rec["artifact"]]
    assert "no bf16" in read_json(LAYOUT.build_metrics("local_coreml", "bf16"))["skipped"]
    line = next(x for x in capsys.readouterr().err.splitlines() if "build@local_coreml-fp32: built" in x)
    assert "model.mlpackage.zip" in line and "on this host" in line and line.endswith(f", not run: {NOT_RUN}")
    benchmark.main(["--target", "local_coreml"])
    evaluate.main(["--target", "local_coreml"])
    for metrics in (LAYOUT.benchmark_metrics, LAYOUT.evaluate_metrics):
        assert (
            read_json(metrics("local_coreml", "fp32"))["skipped"] == f"built (model.mlpackage.zip), not run: {NOT_RUN}"
        )
    assert (
        f"benchmark@local_coreml-fp32: n/a: built (model.mlpackage.zip), not run: {NOT_RUN}" in capsys.readouterr().err
    )
    # the report's row: n/a with the reason, the build's own facts kept (tasks/reporting/summary.py)
    row = summary.row(LAYOUT, "local_coreml", "fp32", summary.torch_baseline(LAYOUT, "local_coreml"))
    assert row["verdict"] == "n/a" and row["skipped"].endswith(NOT_RUN) and row["latency_p50_ms"] is None
    assert row["runtime"] == "coreml" and row["size_mb"] == rec["size_bytes"] / 1e6
    assert row["artifact_sha256"] == rec["sha256"]


def test_the_agent_zipapp_registers_core_ml_and_refuses_it_off_macos(built, tmp_path):
    """The uploaded agent (every DEVICE_MODULE) knows runtime coreml; on Linux its build check says why not."""
    import json
    import subprocess
    import sys

    from tasks.agent import client

    pyz, _ = client.agent_file()
    req = {"runtime": "coreml", "artifact": str(built["fp16"][0].artifact), "threads": None, "choices": {}}
    r = subprocess.run(
        [sys.executable, str(pyz), "build", json.dumps({**req, "sample_shape": [1, 8, 8]})],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    answer = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 1 and answer["kind"] == "missing_runtime" and "runs only on macOS" in answer["error"]
