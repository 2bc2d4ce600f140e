"""bf16 as a precision, and builds that do not apply to a device (the skipped record): the decision
from fingerprints of several CPUs, a real OpenVINO bf16 build where this machine computes in bf16,
and a skipped build flowing through benchmark, evaluate and report without error, never a winner."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks import benchmark, evaluate, export, parity, quantize, report
from tasks.agent import agent
from tasks.config import Config
from tasks.config.load import family
from tasks.device.isa import native_bf16
from tasks.device.support import support
from tasks.io import read_json, write_json
from tasks.layout import LAYOUT
from tasks.reporting.format import markdown
from tasks.reporting.selection import winners
from tests.conftest import build_main, write_params

# /proc/cpuinfo flags as the probe records them (only the ones that matter here)
SAPPHIRE_RAPIDS = {  # Intel Xeon with AMX: bf16 and FP16 compute
    "arch": "x86_64",
    "cpu": {
        "model": "Intel Xeon Platinum 8480+",
        "flags": ["avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"],
    },
}
ZEN4 = {  # AMD EPYC Genoa: AVX512_BF16 but no FP16 arithmetic
    "arch": "x86_64",
    "cpu": {"model": "AMD EPYC 9654", "flags": ["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]},
}
AVX2_ONLY = {"arch": "x86_64", "cpu": {"model": "Intel Core i7-8700", "flags": ["avx2", "fma"]}}
GRAVITON3 = {"arch": "aarch64", "cpu": {"model": "Neoverse-V1", "flags": ["asimd", "asimddp", "asimdhp", "bf16"]}}
CORTEX_A72 = {"arch": "aarch64", "cpu": {"model": "Cortex-A72", "flags": ["asimd"]}}  # Raspberry Pi 4
ORIN = {  # Jetson AGX Orin: Cortex-A78AE (FP16 arithmetic, no bf16) + an SM 8.7 GPU
    "arch": "aarch64",
    "cpu": {"model": "ARMv8 Processor rev 1 (v8l)", "flags": ["asimd", "asimddp", "asimdhp", "fphp"]},
    "gpu": [{"name": "Orin", "compute_capability": "8.7"}],
}
GTX1070 = {**AVX2_ONLY, "gpu": [{"name": "NVIDIA GeForce GTX 1070", "compute_capability": "6.1"}]}
CPUS = {
    "sapphire_rapids": SAPPHIRE_RAPIDS,
    "zen4": ZEN4,
    "avx2": AVX2_ONLY,
    "graviton3": GRAVITON3,
    "a72": CORTEX_A72,
    "orin": ORIN,
    "gtx1070": GTX1070,  # a desktop with a Pascal GPU: FP16 at 1/64 of FP32
}
# (runtime, precision) -> the CPUs that run it natively; every other CPU emulates it
NATIVE = {
    ("openvino", "bf16"): {"sapphire_rapids", "zen4", "graviton3"},
    ("openvino", "fp16"): {"sapphire_rapids", "graviton3", "orin"},
    # ORT's CPU provider: FP16 kernels on Arm with FP16 arithmetic only; a GPU (CUDA EP) computes FP16
    ("onnxruntime", "fp16"): {"graviton3", "orin"},
    ("tensorrt", "fp16"): set(CPUS) - {"gtx1070"},
}


@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("runtime,precision", list(NATIVE))
def test_emulated_precisions_are_skipped_or_measured_as_bench_emulated_says(cpu, runtime, precision):
    fp = CPUS[cpu]
    skip, measure = support(fp, runtime, precision, "skip"), support(fp, runtime, precision, "measure")
    if cpu in NATIVE[(runtime, precision)]:
        assert skip == measure and skip.skipped is None and skip.emulated is None
        return
    assert "emulated: no speed-up expected" in skip.skipped and "bench.emulated: measure" in skip.skipped
    assert measure.skipped is None and "emulated: no speed-up expected" in measure.emulated


@pytest.mark.parametrize("cpu", CPUS)
def test_bf16_never_applies_to_onnxruntime_or_tensorrt_and_fp32_int8_always_do(cpu):
    fp = CPUS[cpu]
    for emulated in ("skip", "measure"):
        assert "no bf16 kernels" in support(fp, "onnxruntime", "bf16", emulated).skipped
        assert "local_openvino" in support(fp, "onnxruntime", "bf16", emulated).skipped  # what to do
        assert "no --bf16" in support(fp, "tensorrt", "bf16", emulated).skipped
        for runtime in ("onnxruntime", "openvino", "tensorrt"):
            for precision in ("fp32", "int8-minmax", "int8-mixed"):
                assert support(fp, runtime, precision, emulated) == support(fp, runtime, "fp32", "skip")
                assert support(fp, runtime, precision, emulated).skipped is None


def test_bf16_has_its_own_family_and_tolerance_looser_than_fp16():
    cfg = Config()
    assert family("bf16") == "bf16" and family("fp16") == "fp16"
    bf16, fp16, int8 = (cfg.parity.artifact[f] for f in ("bf16", "fp16", "int8"))
    assert fp16.atol < bf16.atol <= int8.atol and fp16.rtol < bf16.rtol <= int8.rtol


def _tiny_onnx(path) -> None:
    """Conv -> Relu -> Gemm on (N, 1, 28, 28), seeded weights: enough ops for bf16 kernels."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array((rng.standard_normal((10, 8 * 26 * 26)) * 0.01).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "w2"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [w, w2],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_openvino_bf16_build_runs_bf16_where_this_cpu_computes_in_bf16(tmp_path):
    fp = agent.cmd_probe({"trtexec": None})
    if not native_bf16(fp):
        pytest.skip(f"{fp['cpu']['model']} has no bf16 compute (flags {fp['cpu']['flags']}): no native bf16 build")
    src = tmp_path / "tiny.onnx"
    _tiny_onnx(src)
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    builds = {}
    for precision in ("fp32", "bf16"):
        (tmp_path / precision).mkdir()
        art, meta = agent.build_openvino(src, tmp_path / precision, precision)
        builds[precision] = meta
        got = agent.OvModel(art).infer(x)["logits"]  # the hint is read back from the IR
        tol = Config().parity.artifact[family(precision)]
        np.testing.assert_allclose(got, want, atol=tol.atol, rtol=tol.rtol)
    assert builds["bf16"]["inference_precision"] == "bf16" and builds["bf16"]["compute_precisions"].get("BF16")
    # without the hint an fp32 build here would run bf16 too: it is pinned to f32
    assert builds["fp32"]["inference_precision"] == "f32" and "BF16" not in builds["fp32"]["runtime_precisions"]


def _stages(p: str, target: str = "local") -> None:
    argv = ["--target", target, "--precision", p]
    build_main(argv)
    benchmark.main(argv)
    evaluate.main(argv)


def test_skipped_build_flows_through_benchmark_evaluate_and_report_never_a_winner(
    workdir, params, model_file, prepared, monkeypatch, capsys
):
    """bf16 on ONNX Runtime never applies (on every machine); fp16 with a fingerprint of a CPU
    without FP16 compute, measured anyway (bench.emulated: measure), is labelled emulated."""
    for k in ("MLFLOW_TRACKING_URI", "EDGEFORGE_EXP_NAME", "DVC_EXP_NAME"):
        monkeypatch.delenv(k, raising=False)
    params["build"]["precisions"] = ["fp32", "fp16", "bf16"]
    params["report"]["register"] = True
    write_params(params)
    export.main([])
    parity.main([])
    for p in params["build"]["precisions"]:
        quantize.main(["--precision", p])
    # bf16 builds from the FP32 model itself: the runtime applies the precision
    assert (LAYOUT.precision_onnx("bf16").read_bytes()) == LAYOUT.onnx.read_bytes()
    from tasks import probe

    probe.main(["--target", "local"])
    fp = read_json(LAYOUT.fingerprint("local"))
    write_json(LAYOUT.fingerprint("local"), {**fp, **AVX2_ONLY, "gpu": []})  # a CPU without FP16 compute
    for p in params["build"]["precisions"]:
        _stages(p)
    capsys.readouterr()

    skipped = read_json(LAYOUT.build_metrics("local", "bf16"))
    assert set(skipped) == {"skipped", "target", "precision", "runtime"} and "no bf16 kernels" in skipped["skipped"]
    assert [f.name for f in LAYOUT.build_dir("local", "bf16").iterdir()] == ["build.json"]  # no artifact
    assert (
        read_json(LAYOUT.benchmark_metrics("local", "bf16"))
        == skipped
        == read_json(LAYOUT.evaluate_metrics("local", "bf16"))
    )
    assert read_json(LAYOUT.build_metrics("local", "fp16"))["emulated"].endswith("(emulated: no speed-up expected)")

    report.main([])
    printed = capsys.readouterr().out
    summary = read_json(LAYOUT.summary)
    by = {r["precision"]: r for r in summary["rows"]}
    assert by["bf16"]["verdict"] == "n/a" and by["bf16"]["skipped"] == skipped["skipped"]
    assert set(by["bf16"]) >= set(by["fp32"])  # every reader finds the keys of a built row
    assert by["fp16"]["emulated"] and by["fp32"]["emulated"] is None
    assert winners(summary["rows"])["local"]["precision"] != "bf16"
    md = LAYOUT.summary_md.read_text()
    assert md == markdown(summary)
    assert "| local | bf16 | onnxruntime |" in md and f"- local-bf16: n/a: {skipped['skipped']}" in md
    assert "| local | fp16 (emulated) |" in md and "local-bf16: rejected" not in md
    assert "n/a local-bf16: ONNX Runtime's CPU provider has no bf16 kernels" in " ".join(printed.split())
    page = LAYOUT.report_html.read_text()
    assert 'class="row skipped" data-key="local-bf16"' in page and "Not applicable on the device" in page
    pareto = (LAYOUT.pareto_csv).read_text()
    assert "local-fp32" in pareto and "local-bf16" not in pareto
    curves = (LAYOUT.latency_plots / "local.csv").read_text().splitlines()  # dvc.yaml's y names every precision
    assert curves[0] == "percentile,fp32,fp16,bf16" and all(line.endswith(",") for line in curves[1:])

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    parent = client.get_run(summary["mlflow"]["parent_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.data.params["precision"] for c in children) == ["fp16", "fp32"]
    assert {c.data.params["precision"]: c.data.tags.get("emulated") for c in children}["fp16"]
