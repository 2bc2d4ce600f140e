"""Device-dependent build and run choices, from the target's fingerprint (``artifacts/probe/<target>.json``).

:func:`choose` returns every choice with the reason for it; the build stage records the result in its
metrics as ``device_choices``, applies it (which ONNX Runtime INT8 model it builds; the session options
and OpenVINO hints its request carries) and the benchmark reuses the build's record, so a build is
measured as it was made. Figures behind the choices: ``bench/ort_int8.py``.
"""

from __future__ import annotations

from typing import Any

from tasks.device import isa

SCENARIOS = ("single_stream", "offline")
#: runtimes whose CPU kernels (XNNPACK) take a thread count and nothing else from the device
CPU_THREADED = ("executorch", "litert")


# Measured with bench/ort_int8.py (AMD EPYC Zen 4 "Genoa", AVX-512 VNNI, 2 cores, ResNet-18, batch 1).
_U8S8_FIGURE = "ResNet-18 batch 1 on Zen 4 with VNNI: u8s8 3.3-3.8x ORT FP32, 7-bit s8s8 1.16x (bench/ort_int8.py)"


def _int8_dot(fp: dict) -> str | None:
    """The int8 dot-product instructions the CPU has that accumulate in int32 (None: none), named."""
    f = isa.flags(fp)
    if isa.has_amx(fp):
        return f"AMX ({', '.join(sorted({'amx_int8', 'amx_bf16'} & f))})"
    if isa.has_vnni(fp):
        return f"VNNI ({', '.join(sorted({'avx512_vnni', 'avx_vnni'} & f))}: VPDPBUSD multiplies u8 x s8 into int32)"
    if isa.arm_dotprod(fp):
        return "Arm dot product (asimddp: UDOT/SDOT into int32)"
    return None


def physical_cores(fp: dict) -> int | None:
    """Cores the runtimes should use: the fingerprint's ``physical_cores`` when the probe gives it,
    else its ``cores`` (logical CPUs)."""
    cpu = fp.get("cpu") or {}
    n = cpu.get("physical_cores") or cpu.get("cores")
    return int(n) if n else None


def ort_int8_layout(fp: dict, reduce_range: bool | None = None) -> tuple[str, str]:
    """``(layout, reason)``: which of :data:`ORT_INT8_LAYOUTS` ONNX Runtime should run on this CPU.
    ``reduce_range`` (``quant.ort_reduce_range``): true/false overrides the device (7-bit s8s8 / u8s8)."""
    if reduce_range is not None:
        layout = "s8s8r7" if reduce_range else "u8s8"
        return layout, f"quant.ort_reduce_range={str(reduce_range).lower()} (user override, not the device)"
    dot = _int8_dot(fp)
    if dot:
        return "u8s8", (
            f"{dot}: ONNX Runtime's fast int8 kernels take uint8 activations and int8 weights and accumulate "
            f"in int32, so full-range 8-bit weights are safe; {_U8S8_FIGURE}"
        )
    if not isa.flags(fp):
        return "s8s8r7", "the fingerprint lists no CPU flags (probe again with this EdgeForge): the safe 7-bit layout"
    if isa.is_arm(fp):
        return "s8s8r7", "Arm without the dot-product extension (asimddp): the conservative 7-bit layout"
    return "s8s8r7", (
        "x86 without VNNI/AMX: ONNX Runtime's int8 kernels add pairs of u8 x s8 products into saturating int16 "
        "(VPMADDUBSW); 7-bit weights avoid the saturation (the bundled example lost 4 points of top-1 with 8-bit)"
    )


def _threads(fp: dict, threads: int | None) -> tuple[int | None, str]:
    if threads:
        return threads, f"target threads={threads} (user setting)"
    n = physical_cores(fp)
    if n is None:
        return None, "the fingerprint gives no core count: the runtime's default"
    return n, f"{n} cores in the fingerprint: one intra-op thread per core"


def _onnxruntime(fp: dict, precision: str, threads: int | None, reduce_range: bool | None) -> dict[str, Any]:
    out: dict[str, Any] = {"reasons": {}}
    reasons = out["reasons"]
    if precision.startswith("int8"):
        out["ort_int8_layout"], reasons["ort_int8_layout"] = ort_int8_layout(fp, reduce_range)
    out["intra_op_threads"], reasons["intra_op_threads"] = _threads(fp, threads)
    out["graph_optimization_level"] = "all"
    reasons["graph_optimization_level"] = (
        "ORT_ENABLE_ALL when the session loads (the build saves the portable ENABLE_EXTENDED graph, which "
        "already has the Q/DQ -> QLinearConv fusions): adds the CPU's NCHWc layout; on Zen 4, ResNet-18 batch 1 "
        "ran 1.5x (FP32) and 1.6x (u8s8) faster than with EXTENDED (bench/ort_int8.py)"
    )
    out["allow_spinning"] = True
    reasons["allow_spinning"] = (
        "ONNX Runtime's default: intra-op workers spin between ops on a device that runs one model; turn it off "
        "only where other processes share the cores"
    )
    return out


def inference_precision(fp: dict, precision: str) -> tuple[str | None, str]:
    """``(OpenVINO INFERENCE_PRECISION_HINT, reason)`` for a build of ``precision``; None: the plugin's own."""
    if precision == "bf16":
        native = isa.native_bf16(fp)
        return "bf16", "bf16 build" + ("" if native else " (no native bf16 in the fingerprint: emulated)")
    if precision == "fp16":
        if isa.native_fp16(fp):
            return "f16", "fp16 build on a CPU with native FP16 compute (AVX512-FP16/AMX-FP16, Arm asimdhp)"
        return None, "no native FP16 compute: the plugin's own float (emulated: no speed-up expected)"
    return "f32", ("fp32/int8: the ops left in float run FP32; without the hint a CPU with bf16 would run them in bf16")


def _openvino(fp: dict, precision: str, threads: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"reasons": {}}
    reasons = out["reasons"]
    out["inference_precision"], reasons["inference_precision"] = inference_precision(fp, precision)
    out["threads"], reasons["threads"] = _threads(fp, threads)
    out["single_stream"] = {"performance_hint": "LATENCY", "num_streams": 1}
    reasons["single_stream"] = "one query at a time: the LATENCY hint, one stream using every core"
    out["offline"] = {"performance_hint": "THROUGHPUT", "num_streams": None}
    reasons["offline"] = (
        "every sample at once: the THROUGHPUT hint (streams chosen by the plugin for this CPU), the batch spread "
        "over OPTIMAL_NUMBER_OF_INFER_REQUESTS asynchronous requests so every stream stays busy, as benchmark_app does"
    )
    return out


def choose(
    fingerprint: dict,
    runtime: str,
    precision: str,
    *,
    threads: int | None = None,
    ort_reduce_range: bool | None = None,
) -> dict[str, Any]:
    """The device-dependent choices for a ``runtime`` build of ``precision`` on the device of ``fingerprint``,
    with ``reasons`` ({choice: why}). ``threads`` (``target.threads``) and ``ort_reduce_range``
    (``quant.ort_reduce_range``) are the user's overrides; None follows the device.

    onnxruntime: ``ort_int8_layout`` (INT8 only: one of :data:`ORT_INT8_LAYOUTS`), ``intra_op_threads``,
    ``graph_optimization_level`` (``all``/``extended``), ``allow_spinning``. openvino:
    ``inference_precision`` (``f32``/``bf16``/``f16``, None = the plugin's own), ``threads``, and per scenario
    (``single_stream``, ``offline``) ``{"performance_hint", "num_streams"}`` (None: the plugin's choice).
    tensorrt: none here (the recipe of the device's TensorRT version decides). coreml: ``compute_units`` (ALL).
    """
    if runtime == "onnxruntime":
        return _onnxruntime(fingerprint, precision, threads, ort_reduce_range)
    if runtime == "openvino":
        return _openvino(fingerprint, precision, threads)
    if runtime in CPU_THREADED:
        t, why = _threads(fingerprint, threads)
        return {"threads": t, "reasons": {"threads": f"{why} ({runtime}'s XNNPACK threadpool)"}}
    if runtime == "coreml":  # no thread setting in Core ML; where ops run is its one choice (agent/coreml_model.py)
        why = "Core ML places each op on the Neural Engine, the GPU or the CPU (ct.ComputeUnit.ALL)"
        return {"compute_units": "ALL", "reasons": {"compute_units": why}}
    return {"reasons": {"runtime": f"{runtime}: its build recipe decides; no CPU-side choices"}}


def run_threads(choices: dict | None, default: int | None = None) -> int | None:
    """The thread count a build's ``device_choices`` settled on (ORT intra-op or OpenVINO threads),
    else ``default`` (``target.threads``: a build recorded before device choices)."""
    c = choices or {}
    return c.get("intra_op_threads") or c.get("threads") or default


def offline_batch_sizes(bench) -> list[int]:
    """The batch sizes ``bench`` (the ``bench`` config) measures as the offline scenario: batch 1 is
    single-stream when that scenario is on."""
    single = getattr(bench, "single_stream", True)
    return [b for b in getattr(bench, "offline_batch_sizes", []) if not (b == 1 and single)]
