"""The openvino runtime on this CPU: IR built from each precision's ONNX, loaded back, run, and
checked against ONNX Runtime on real digits; the build/benchmark/evaluate stages on a target
whose runtime is openvino."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import openvino as ov
import pytest

from tasks import benchmark, evaluate, parity, quantize
from tasks.data.split import Split
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.runtimes import BuildError, BuildOptions, get_runtime
from tests.conftest import build_main, write_params

PRECISIONS = ["fp32", "fp16", "int8-minmax"]


@pytest.fixture
def ov_target(params, exported):
    params["target"]["local_openvino"] = {"transport": "local", "runtime": "openvino", "threads": None}
    params["build"]["targets"] = ["local", "local_openvino"]
    params["build"]["precisions"] = PRECISIONS
    write_params(params)
    for p in PRECISIONS:
        quantize.main(["--precision", p])
    return params


def _ort_logits(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(["logits"], {"input": x})[0]


def test_every_precision_builds_loads_and_agrees_with_onnxruntime(ov_target, prepared):
    x = np.ascontiguousarray(Split(prepared / "eval").x)
    reference = _ort_logits(LAYOUT.precision_onnx("fp32"), x)
    # the plugin's own choice: bf16 on a CPU with AVX-512 BF16 or AMX, else f32
    plugin_default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    for p in PRECISIONS:
        build_main(["--target", "local_openvino", "--precision", p])
        meta = read_json(LAYOUT.build_metrics("local_openvino", p))
        art = LAYOUT.build_dir("local_openvino", p) / meta["artifact"]
        assert meta["runtime"] == "openvino" and art.name == "model.xml"
        assert meta["weights_sha256"] == sha256_file(art.with_suffix(".bin"))
        assert meta["size_bytes"] == art.stat().st_size + art.with_suffix(".bin").stat().st_size
        sess = get_runtime("openvino").load(art)
        assert sess.input_name == "input" and sess.output_names == ["logits"]
        got = np.concatenate([sess.infer(x[i : i + 32])["logits"] for i in range(0, len(x), 32)])
        # fp32 and int8 run their float ops in f32 even where the CPU has bf16 (which the plugin
        # would pick by itself); fp16 runs in the plugin's own lowest float
        assert meta["inference_precision"] == ("f32" if p != "fp16" else plugin_default)
        if p == "fp32":
            np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)
            assert meta["int8_ops"] == 0
        elif p == "fp16":
            np.testing.assert_allclose(got, reference, atol=2e-2, rtol=0)
        else:
            assert meta["int8_ops"] > 0  # really runs int8 kernels, not FP32
            assert np.mean(got.argmax(1) == reference.argmax(1)) >= 0.9
            assert not np.allclose(got, reference, atol=1e-5)


def test_benchmark_and_evaluate_stages_on_an_openvino_target(ov_target, prepared):
    parity.main([])
    argv = ["--target", "local_openvino", "--precision", "int8-minmax"]
    build_main(argv)
    benchmark.main(argv)
    evaluate.main(argv)
    bench = read_json(LAYOUT.benchmark_metrics("local_openvino", "int8-minmax"))
    assert bench["runtime"] == "openvino" and set(bench["latency"]) == {"b1", "b4"}
    ev = read_json(LAYOUT.evaluate_metrics("local_openvino", "int8-minmax"))
    assert ev["samples"] == 96 and ev["metric"] == "top1" and 0 <= ev["value"] <= 100


def test_a_file_openvino_cannot_read_is_a_build_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(BuildError, match="openvino could not convert .*bad.onnx"):
        get_runtime("openvino").build(bad, "fp32", tmp_path, BuildOptions())


def test_int8_build_from_a_model_without_qdq_fails_instead_of_running_fp32(exported, tmp_path):
    with pytest.raises(BuildError, match="no op executing in int8"):
        get_runtime("openvino").build(exported, "int8-minmax", tmp_path, BuildOptions())
