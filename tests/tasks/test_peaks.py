"""Peaks: nominal per precision family from fingerprints of several devices (dicts, not this machine),
the agent's measured GEMM peak in the real runtimes (tiny shapes: behaviour, never speed), and the
roofline's refusal to report an efficiency above 100%."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tasks.agent import agent
from tasks.benchmark import executed_family, peaks_for, roofline
from tasks.device import isa
from tasks.device.peaks import FAMILIES, nominal
from tests.conftest import write_params


def _fp(model, vendor, family, model_id, mhz, cores, flags, arch="x86_64", **extra):
    cpu = {"model": model, "vendor": vendor, "family": family, "model_id": model_id, "mhz_nominal": mhz}
    return {"arch": arch, "cpu": {**cpu, "cores": cores, "physical_cores": cores, "flags": flags}, **extra}


AMX_XEON = _fp(
    "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
    "GenuineIntel",
    6,
    143,
    2700,
    4,
    ["amx_bf16", "amx_int8", "avx2", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx512f", "f16c", "fma"],
)
ZEN4 = _fp(
    "AMD EPYC 9654 96-Core Processor",
    "AuthenticAMD",
    25,
    17,
    2400,
    2,
    ["avx2", "avx512_bf16", "avx512_vnni", "avx512f", "f16c", "fma"],
)
AVX2_ONLY = _fp("Intel(R) Core(TM) i7-6700 CPU @ 3.40GHz", "GenuineIntel", 6, 94, 3400, 4, ["avx2", "f16c", "fma"])
ORIN_CPU = _fp(
    "ARMv8 Processor rev 1 (v8l)", "ARM", 8, "0xd42", 2201, 12, ["asimd", "asimddp", "asimdhp", "fphp"], arch="aarch64"
)
NANO_CPU = _fp("ARMv8 Processor rev 1 (v8l)", "ARM", 8, "0xd07", 1479, 4, ["asimd"], arch="aarch64")
AGX_ORIN = {
    **ORIN_CPU,
    "ram_gib": 61.4,
    "gpu": [{"name": "NVIDIA Jetson AGX Orin Developer Kit", "compute_capability": "8.7"}],
}


def _g(fp, runtime="onnxruntime"):
    return {fam: p["gflops"] for fam, p in nominal(fp, runtime).items()}


def test_intel_amx_xeon_peaks_use_amx_for_int8_and_bf16():
    g, peaks = _g(AMX_XEON), nominal(AMX_XEON, "openvino")
    assert g["fp32"] == pytest.approx(4 * 2.7 * 64)  # two 512-bit FMA units on a Platinum
    assert g["int8"] == pytest.approx(4 * 2.7 * 2048) and g["bf16"] == pytest.approx(4 * 2.7 * 1024)
    assert g["fp16"] == pytest.approx(4 * 2.7 * 128)  # AVX512-FP16
    assert peaks["fp32"]["basis"].startswith("4 cores x 2.70 GHz x 64 FP32 FLOP/cycle")
    assert "AMX" in peaks["int8"]["basis"] and isa.has_amx(AMX_XEON) and isa.native_fp16(AMX_XEON)


def test_zen4_runs_avx512_on_256_bit_pipes_with_bf16_and_vnni():
    g, peaks = _g(ZEN4), nominal(ZEN4, "onnxruntime")
    assert g["fp32"] == pytest.approx(2 * 2.4 * 32) and "Zen 4" in peaks["fp32"]["basis"]
    assert g["bf16"] == pytest.approx(2 * 2.4 * 64) and g["int8"] == pytest.approx(2 * 2.4 * 128)
    # F16C only converts: an fp16 model runs at the FP32 rate at best, and the basis says so
    assert g["fp16"] == g["fp32"] and "no native FP16" in peaks["fp16"]["basis"]
    assert isa.has_vnni(ZEN4) and isa.native_bf16(ZEN4) and not isa.native_fp16(ZEN4) and not isa.has_amx(ZEN4)


def test_avx2_only_cpu_has_no_int8_or_bf16_peak():
    g, peaks = _g(AVX2_ONLY), nominal(AVX2_ONLY, "onnxruntime")
    assert g["fp32"] == pytest.approx(4 * 3.4 * 32)
    assert g["int8"] is None and "no int8 dot-product" in peaks["int8"]["basis"]
    assert g["bf16"] is None and not isa.int8_dot(AVX2_ONLY)


def test_arm_with_and_without_dotprod():
    g = _g(ORIN_CPU)
    assert g["fp32"] == pytest.approx(12 * 2.201 * 16)
    assert g["int8"] == pytest.approx(4 * g["fp32"]) and g["fp16"] == pytest.approx(2 * g["fp32"])
    assert g["bf16"] is None and isa.arm_dotprod(ORIN_CPU) and isa.int8_dot(ORIN_CPU)
    g = _g(NANO_CPU)
    assert g["fp32"] == pytest.approx(4 * 1.479 * 16) and g["int8"] is None and not isa.int8_dot(NANO_CPU)


def test_jetson_orin_gpu_peaks_come_from_the_module_table():
    g, peaks = _g(AGX_ORIN, "tensorrt"), nominal(AGX_ORIN, "tensorrt")
    assert g["fp32"] == pytest.approx(16 * 256 * 1.3)  # 5.3 TFLOPS: NVIDIA's figure
    assert g["int8"] == pytest.approx(16 * 4096 * 1.3)  # 85 dense TOPS (170 sparse)
    assert g["fp16"] == g["bf16"] == pytest.approx(16 * 2048 * 1.3)
    assert "Jetson AGX Orin 64GB" in peaks["int8"]["basis"]
    # the same board's CPU for an ONNX Runtime target; a discrete GPU is not in the table
    assert _g(AGX_ORIN)["fp32"] == _g(ORIN_CPU)["fp32"]
    other = {**AGX_ORIN, "gpu": [{"name": "NVIDIA A100", "compute_capability": "8.0"}]}
    assert all(p["gflops"] is None and "not a Jetson module" in p["basis"] for p in nominal(other, "tensorrt").values())


def test_unknown_clock_or_microarchitecture_gives_no_peak_and_says_why():
    no_clock = {**ZEN4, "cpu": {**ZEN4["cpu"], "mhz_nominal": None}}
    peaks = nominal(no_clock, "onnxruntime")
    assert set(peaks) == set(FAMILIES)
    assert all(p["gflops"] is None and p["basis"].startswith("unknown clock") for p in peaks.values())
    odd = {**ZEN4, "cpu": {**ZEN4["cpu"], "vendor": "HygonGenuine", "family": 24}}
    assert all("unknown microarchitecture" in p["basis"] for p in nominal(odd, "onnxruntime").values())
    assert all(p["gflops"] is None for p in nominal({"cpu": {}}, "onnxruntime").values())


def test_probe_reads_vendor_family_model_and_a_stable_clock():
    intel = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\ncpu MHz\t\t: 3100.123\n"
        "physical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\nphysical id\t: 0\ncore id\t\t: 0\n"
    )
    ids = agent._cpu_id(intel)
    assert ids == {
        "vendor": "GenuineIntel",
        "family": 6,
        "model_id": 143,
        "mhz_nominal": 2700,
        "mhz_source": "model name",
        "physical_cores": 1,
    }
    arm = "processor\t: 0\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd42\n"
    ids = agent._cpu_id(arm)
    assert (ids["vendor"], ids["family"], ids["model_id"]) == ("ARM", 8, "0xd42")
    # a VM naming only the vendor, without cpufreq: the invariant TSC's rate (BogoMIPS / 2), never "cpu MHz"
    amd = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
        "cpu MHz\t\t: 2595.999\nflags\t\t: fpu constant_tsc tsc_known_freq avx512f\nbogomips\t: 5191.99\n"
    )
    ids = agent._cpu_id(amd)
    assert (ids["mhz_nominal"], ids["mhz_source"]) == (2596, "TSC (BogoMIPS / 2: the base clock)")
    assert agent._cpu_id(amd.replace(" tsc_known_freq", ""))["mhz_nominal"] is None


def test_gemm_graphs_are_valid_onnx(tmp_path):
    np = pytest.importorskip("numpy")
    for fam in ("fp32", "fp16", "int8"):
        model = onnx.load_from_string(agent.gemm_onnx(16, 2, fam, np))
        onnx.checker.check_model(model, full_check=True)
        assert [n.op_type for n in model.graph.node].count("MatMul") == 2


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_agent_peak_measures_fp32_and_int8_in_the_runtime(runtime, tmp_path):
    req = {"runtime": runtime, "out_dir": str(tmp_path), "sizes": [32], "layers": 1, "budget_s": 0.01}
    res = agent.cmd_peak(req)
    assert res["runtime"] == runtime and res["threads"] >= 1
    for fam in ("fp32", "int8"):
        m = res["measured"][fam]
        assert m["gflops"] > 0 and m["shape"] == [1, 32, 32, 32] and m["runtime"] == runtime
    # every other family is measured or skipped with the reason
    assert all("gflops" in m or m["skipped"] for m in res["measured"].values())


def test_efficiency_above_100_percent_is_an_error_not_a_figure():
    lat = {"b1": {"throughput": 100.0}, "b8": {"throughput": 1000.0}}  # 1 GFLOP/sample: 100 and 1000 GFLOP/s
    roof = roofline(1e9, lat, "int8", {"gflops": 400.0, "basis": "x"}, {"gflops": 2000.0})
    assert roof["efficiency_nominal"] == {"b1": 0.25, "b8": None}
    assert roof["efficiency_measured"] == {"b1": 0.05, "b8": 0.5}
    assert roof["efficiency_error"] == (
        "b8: measured 1000.0 GFLOP/s exceeds the nominal int8 peak 400.0 (x): the peak (a base clock the CPU "
        "boosts above, a GEMM measured under load) or the FLOP count (direct convolution's; Winograd kernels "
        "multiply less) does not hold for this build"
    )
    assert roofline(1e9, lat, "fp32", None, None)["efficiency_error"] is None
    none = roofline(1e9, lat, "bf16", {"gflops": None, "basis": "unknown clock"}, {"skipped": "no bf16 here"})
    assert none["efficiency_nominal"] is None and none["measured_peak"] == {"skipped": "no bf16 here"}


def test_the_peak_of_the_family_the_build_executed_applies():
    assert executed_family("fp16", {"inference_precision": "bf16"}) == "bf16"  # OpenVINO fp16 IR on a bf16 CPU
    assert executed_family("fp32", {"inference_precision": "f32"}) == "fp32"
    assert executed_family("int8-minmax", {"inference_precision": "f32"}) == "int8"
    assert executed_family("fp16", None) == "fp16"
    rec = {"nominal": {"bf16": {"gflops": None, "basis": "unknown clock"}}, "measured": {"bf16": {"gflops": 5.0}}}
    assert peaks_for("bf16", rec, None, "t") == ({"gflops": None, "basis": "unknown clock"}, {"gflops": 5.0})
    assert peaks_for("bf16", None, None, "t") == (None, None)
    nom, _ = peaks_for("bf16", rec, 7.0, "t")
    assert nom == {"gflops": 7.0, "basis": "target.t.peak_gflops.bf16 (user override)"}


def test_peak_stage_writes_nominal_peaks_and_fails_cleanly_without_a_fingerprint(params, capsys):
    from tasks import peak
    from tasks.io import read_json, write_json
    from tasks.layout import LAYOUT

    params["target"]["orin"] = {"transport": "ssh", "runtime": "tensorrt", "host": "orin.local"}
    write_params(params)
    with pytest.raises(SystemExit) as e:
        peak.main(["--target", "orin"])
    assert e.value.code == 1 and not LAYOUT.peak("orin").exists()
    assert "no fingerprint for target 'orin'" in capsys.readouterr().err
    write_json(LAYOUT.fingerprint("orin"), {**AGX_ORIN, "fingerprint_sha256": "abc"})
    peak.main(["--target", "orin"])  # TensorRT: the data-sheet peaks, nothing timed on the device
    rec = read_json(LAYOUT.peak("orin"))
    assert rec["fingerprint_sha256"] == "abc" and rec["runtime"] == "tensorrt"
    assert rec["nominal"]["int8"]["gflops"] == pytest.approx(16 * 4096 * 1.3)
    assert all("no GEMM kernel for tensorrt" in m["skipped"] for m in rec["measured"].values())


def test_the_summary_shows_a_roofline_error_instead_of_a_percentage():
    from tasks.reporting.format import cell, columns, roofline_lines

    bad = {"key": "local-fp32", "efficiency": None, "efficiency_nominal": None, "efficiency_error": "b1: measured"}
    good = {"key": "local-int8", "efficiency": 41.5, "efficiency_nominal": None, "efficiency_error": None}
    summary = {"rows": [bad, good]}
    assert cell(bad, "efficiency") == "error" and cell(good, "efficiency") == "41.50"
    assert roofline_lines(summary) == ["local-fp32: roofline error: b1: measured"]
    # no row has a nominal figure (no stable clock): that column is left out
    assert "efficiency_nominal" not in dict(columns(summary)) and "efficiency" in dict(columns(summary))


@pytest.mark.parametrize("runtime", ["litert", "executorch"])
def test_a_runtime_converted_on_the_host_gets_its_gemms_converted_and_timed_in_it(runtime, params, monkeypatch):
    """ExecuTorch and LiteRT have no ONNX front end on the device: the peak stage converts the agent's FP32
    GEMM with the runtime's own converter (fp32, and int8 calibrated by it), uploads it, and the agent times
    it in the runtime; the families the runtime builds no GEMM of are skipped with the reason."""
    from tasks import peak, probe
    from tasks.io import read_json
    from tasks.layout import LAYOUT
    from tasks.runtimes import gemm

    monkeypatch.setattr(gemm, "SIDE", 32)
    monkeypatch.setattr(gemm, "LAYERS", 1)
    params["target"]["here"] = {"transport": "local", "runtime": runtime}
    write_params(params)
    probe.main(["--target", "here"])
    peak.main(["--target", "here"])
    rec = read_json(LAYOUT.peak("here"))
    assert rec["runtime"] == runtime and rec["runtime_version"]
    for fam in ("fp32", "int8"):
        m = rec["measured"][fam]
        assert m["gflops"] > 0 and m["runtime"] == runtime, m
        assert m["shape"] == [1, 32, 32, 32] and m["runtime_precision"] == f"{fam} (converted)"
    for fam in set(rec["measured"]) - {"fp32", "int8"}:
        assert f"{runtime} builds no GEMM of this family here" in rec["measured"][fam]["skipped"]
    # the GEMM converted computes what the ONNX one does (the agent timed the FLOPs it counts): LiteRT's model
    # itself; ExecuTorch's torch module (its conversion is the build's, checked against ONNX Runtime there)
    check = LAYOUT.peak("here").parent / "check"
    made = gemm.convert("litert", check, side=32, layers=1, families=("fp32",)) if runtime == "litert" else None
    if runtime == "executorch":
        check.mkdir()
        (check / "gemm.onnx").write_bytes(agent.gemm_onnx(32, 1, "fp32", np))
    x = np.random.default_rng(2).standard_normal(gemm.input_shape(runtime, 32)).astype(np.float32)
    want = ort_run(check / "gemm.onnx", x.reshape(32, 32))
    if made:
        got = next(iter(agent.MODELS[runtime](made["fp32"], 1, {}).infer(x).values()))
    else:
        import torch

        got = gemm._torch_gemm(check / "gemm.onnx")(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got.reshape(32, 32), want, rtol=1e-4, atol=1e-4)


def ort_run(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]
