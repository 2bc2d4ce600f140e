"""Device-dependent choices (tasks.device.choices) follow the fingerprint, and the build applies and records them.

Fingerprints of several CPUs are written out here (the flags their probe reports), so the choice logic is
tested the same on every machine; the stage tests overwrite the probed fingerprint's flags for the same reason.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tasks import benchmark, probe, quantize
from tasks.agent.agent import offline_runner
from tasks.device.choices import choose, offline_batch_sizes, ort_int8_layout, run_threads
from tasks.io import read_json, sha256_file, write_json
from tasks.layout import LAYOUT, ORT_INT8_LAYOUTS, ort_int8_onnx
from tasks.records import BuildRecord
from tasks.runtimes import get_runtime
from tests.conftest import build_main, write_params


def cpu(model: str, cores: int, arch: str, *flags: str, **extra) -> dict:
    return {"arch": arch, "cpu": {"model": model, "cores": cores, "flags": sorted(flags)}, **extra}


X86 = ("avx2", "fma", "f16c")
INTEL_AMX = cpu(
    "Intel(R) Xeon(R) Platinum 8480+", 2, "x86_64", *X86, "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_int8", "amx_bf16",
)  # fmt: skip
ZEN4 = cpu("AMD EPYC 9654 96-Core Processor", 2, "x86_64", *X86, "avx512f", "avx512_vnni", "avx512_bf16")
AVX2_ONLY = cpu("Intel(R) Core(TM) i7-6700 CPU @ 3.40GHz", 8, "x86_64", *X86)
ALDER_LAKE = cpu("12th Gen Intel(R) Core(TM) i5-1235U", 12, "x86_64", *X86, "avx_vnni")
ARM_DOT = cpu("Cortex-A76", 4, "aarch64", "asimd", "asimddp", "fphp", "asimdhp")
ARM_NO_DOT = cpu("Cortex-A72", 4, "aarch64", "asimd")
ORIN = cpu(
    "ARMv8 Processor rev 1 (v8l)", 12, "aarch64", "asimd", "asimddp", "fphp", "asimdhp",
    gpu=[{"name": "Orin", "compute_capability": "8.7"}], tensorrt="10.3.0",
)  # fmt: skip


@pytest.mark.parametrize(
    "fp, layout, why",
    [
        (INTEL_AMX, "u8s8", "amx_int8"),
        (ZEN4, "u8s8", "avx512_vnni"),
        (ALDER_LAKE, "u8s8", "avx_vnni"),
        (ARM_DOT, "u8s8", "asimddp"),
        (ORIN, "u8s8", "asimddp"),
        (AVX2_ONLY, "s8s8r7", "without VNNI"),
        (ARM_NO_DOT, "s8s8r7", "without the dot-product"),
        ({"arch": "x86_64", "cpu": {"cores": 2}}, "s8s8r7", "no CPU flags"),
    ],
)
def test_ort_int8_layout_follows_the_cpus_int8_dot_product(fp, layout, why):
    c = choose(fp, "onnxruntime", "int8-minmax")
    assert c["ort_int8_layout"] == layout and why in c["reasons"]["ort_int8_layout"]
    assert set(c) - {"reasons"} == set(c["reasons"])  # every choice says why
    assert c["graph_optimization_level"] == "all" and c["allow_spinning"] is True


def test_user_overrides_win_over_the_device():
    assert ort_int8_layout(ZEN4, reduce_range=True)[0] == "s8s8r7"
    layout, why = ort_int8_layout(AVX2_ONLY, reduce_range=False)
    assert layout == "u8s8" and "user override" in why
    c = choose(ZEN4, "onnxruntime", "int8-minmax", threads=1)
    assert c["intra_op_threads"] == 1 and "user" in c["reasons"]["intra_op_threads"]


def test_threads_are_one_per_core_and_only_int8_has_a_layout():
    c = choose(AVX2_ONLY, "onnxruntime", "fp32")
    assert "ort_int8_layout" not in c and c["intra_op_threads"] == 8
    with_physical = {**ZEN4, "cpu": {**ZEN4["cpu"], "cores": 4, "physical_cores": 2}}
    assert choose(with_physical, "onnxruntime", "fp32")["intra_op_threads"] == 2
    assert choose({}, "onnxruntime", "fp32")["intra_op_threads"] is None
    assert run_threads(c) == 8 and run_threads(None, 3) == 3
    assert run_threads(choose(ARM_DOT, "openvino", "fp32")) == 4


@pytest.mark.parametrize(
    "fp, precision, expected",
    [
        (ZEN4, "fp32", "f32"),
        (ZEN4, "int8-minmax", "f32"),
        (ZEN4, "bf16", "bf16"),
        (INTEL_AMX, "fp16", "f16"),  # AVX512-FP16
        (ARM_DOT, "fp16", "f16"),  # Arm asimdhp
        (ZEN4, "fp16", None),  # no native FP16: the plugin's own float
        (AVX2_ONLY, "fp16", None),
    ],
)
def test_openvino_inference_precision(fp, precision, expected):
    c = choose(fp, "openvino", precision)
    assert c["inference_precision"] == expected
    if expected is None:
        assert "emulated" in c["reasons"]["inference_precision"]


def test_openvino_hints_per_scenario():
    c = choose(INTEL_AMX, "openvino", "int8-minmax")
    assert c["single_stream"] == {"performance_hint": "LATENCY", "num_streams": 1}
    assert c["offline"]["performance_hint"] == "THROUGHPUT" and c["offline"]["num_streams"] is None
    assert set(c) - {"reasons"} == set(c["reasons"])


def test_tensorrt_has_no_cpu_choices():
    c = choose(ORIN, "tensorrt", "int8-minmax")
    assert set(c) == {"reasons"} and "recipe" in c["reasons"]["runtime"]


def test_offline_batch_sizes_leave_single_stream_batch_1_alone():
    from tasks.config.schema import Bench

    assert offline_batch_sizes(Bench(single_stream=True, offline_batch_sizes=[1, 8])) == [8]
    assert offline_batch_sizes(Bench(single_stream=False, offline_batch_sizes=[1, 8])) == [1, 8]


def _fingerprint_as(target: str, like: dict) -> None:
    """The probed fingerprint of ``target`` with the CPU (arch, flags) of ``like``, re-hashed as probe does."""
    path = LAYOUT.fingerprint(target)
    if not path.is_file():
        probe.main(["--target", target])
    fp = read_json(path)
    fp["arch"], fp["cpu"] = like["arch"], {**fp["cpu"], "flags": like["cpu"]["flags"]}
    fp["fingerprint_sha256"] = probe.fingerprint_hash(fp)
    write_json(path, fp)


def _activation_zero_point_types(model: onnx.ModelProto) -> set[int]:
    """Element types of the zero points of activation QuantizeLinear nodes."""
    inits = {i.name: i for i in model.graph.initializer}
    return {inits[n.input[2]].data_type for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2}


def _max_abs_int8_weight(model: onnx.ModelProto) -> int:
    return max(
        int(np.abs(numpy_helper.to_array(i).astype(np.int32)).max())
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and len(i.dims) > 1
    )


def test_quantize_writes_every_ort_layout_and_the_build_picks_the_devices(workdir, params, exported):
    params["bench"]["offline_batch_sizes"] = [4]
    write_params(params)
    quantize.main(["--precision", "int8-minmax"])
    out = LAYOUT.quantize_dir("int8-minmax")
    u8s8, s8s8r7 = (onnx.load(str(out / ort_int8_onnx(n))) for n in ORT_INT8_LAYOUTS)
    assert _activation_zero_point_types(u8s8) == {onnx.TensorProto.UINT8}
    assert _activation_zero_point_types(s8s8r7) == {onnx.TensorProto.INT8}
    assert _max_abs_int8_weight(s8s8r7) <= 64 < _max_abs_int8_weight(u8s8)  # 7-bit vs full-range weights
    hashes = read_json(LAYOUT.quantize_metrics("int8-minmax"))["ort_sha256"]
    assert hashes == {n: sha256_file(out / ort_int8_onnx(n)) for n in ORT_INT8_LAYOUTS}

    for like, layout in ((ZEN4, "u8s8"), (AVX2_ONLY, "s8s8r7")):
        _fingerprint_as("local", like)
        build_main(["--target", "local", "--precision", "int8-minmax"])
        rec = read_json(LAYOUT.build_metrics("local", "int8-minmax"))
        assert rec["device_choices"]["ort_int8_layout"] == layout
        assert "reasons" in rec["device_choices"] and rec["device_choices"]["graph_optimization_level"] == "all"
        assert rec["source_onnx_sha256"] == sha256_file(out / ort_int8_onnx(layout))
        assert (
            BuildRecord.read(LAYOUT.build_dir("local", "int8-minmax") / "build.json").extra["device_choices"]
            == (rec["device_choices"])
        )

    benchmark.main(["--target", "local", "--precision", "int8-minmax"])  # runs the build as it was made
    assert (
        read_json(LAYOUT.benchmark_metrics("local", "int8-minmax"))["threads"]
        == rec["device_choices"]["intra_op_threads"]
    )

    params["quant"]["ort_reduce_range"] = False  # the user's override beats the (AVX2-only) device
    write_params(params)
    build_main(["--target", "local", "--precision", "int8-minmax"])
    assert read_json(LAYOUT.build_metrics("local", "int8-minmax"))["device_choices"]["ort_int8_layout"] == "u8s8"


def test_openvino_build_records_its_hints_and_the_offline_batch_uses_every_stream(workdir, params, exported):
    params["target"]["local_openvino"] = {**params["target"]["local"], "runtime": "openvino"}
    write_params(params)
    quantize.main(["--precision", "fp32"])
    _fingerprint_as("local_openvino", ZEN4)
    build_main(["--target", "local_openvino", "--precision", "fp32"])
    choices = read_json(LAYOUT.build_metrics("local_openvino", "fp32"))["device_choices"]
    assert choices["single_stream"]["performance_hint"] == "LATENCY" and choices["inference_precision"] == "f32"
    benchmark.main(["--target", "local_openvino", "--precision", "fp32"])
    rec = read_json(LAYOUT.benchmark_metrics("local_openvino", "fp32"))
    assert set(rec["latency"]) == {"b1", "b4"} and rec["offline"]["b4"]["throughput"] > 0
    assert rec["threads"] == choices["threads"]
    art = LAYOUT.build_dir("local_openvino", "fp32") / "model.xml"
    sess = get_runtime("openvino").load(art, choices["threads"], choices)
    assert str(sess.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert int(sess.compiled.get_property("NUM_STREAMS")) == 1
    offline = offline_runner("openvino", art, choices["threads"], choices)
    assert str(offline.__self__.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    x = np.random.default_rng(0).random((5, 1, 28, 28), np.float32)
    assert offline(x) is None and len(offline.__self__._queue) >= 1  # every chunk ran
    assert offline_runner("onnxruntime", art, None, choices) is None
