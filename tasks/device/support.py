"""Whether a reduced float precision (``bf16``, ``fp16``) runs natively on a target, from its
fingerprint (``artifacts/probe/<target>.json``), and so whether its build applies.

A precision the device has no native compute for is *emulated*: the runtime converts to FP32 (or
runs another precision) around every op, so no speed-up is to be expected and the figures would
mislead. With ``bench.emulated: skip`` (the default) such a build is not made: its stages write a
skipped record (:class:`tasks.records.SkippedRecord`) that the report shows as "n/a: <why>". With
``bench.emulated: measure`` it is built and measured, recorded as ``emulated`` and labelled so.

Some builds never apply, whatever ``bench.emulated`` says: bf16 on ONNX Runtime (its CPU provider
has no bf16 kernels and no bf16 inference precision, so it would run the FP32 model: a duplicate of
fp32 under another name) and on TensorRT (EdgeForge's TensorRT recipes have no bf16 yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.device.isa import is_arm, native_bf16, native_fp16


def _slow_fp16_gpu(fp: dict[str, Any]) -> str | None:
    """Why a TensorRT fp16 build is emulated: every GPU is SM 6.1 (GTX 10x0, Tesla P4/P40), whose
    FP16 arithmetic runs at 2 results per clock per SM against FP32's 128 (CUDA C++ Programming
    Guide, "Arithmetic Instructions" throughput table; TensorRT's ``platformHasFastFp16()`` is
    false there). Every other GPU TensorRT supports computes FP16 at least as fast as FP32."""
    gpus = [g for g in fp.get("gpu") or [] if isinstance(g, dict)]
    if not gpus or any(str(g.get("compute_capability")).strip() != "6.1" for g in gpus):
        return None
    names = ", ".join(f"{g.get('name')} (SM 6.1)" for g in gpus)
    return f"{names} computes FP16 at 1/64 of its FP32 rate (emulated: no speed-up expected)"


# TensorFlow's float16 quantization guide: "the float16 weights are upsampled to float32 prior to the first
# inference" on the CPU; XNNPACK computes FP16 only when forced (TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16), which
# ai_edge_litert's Python Interpreter does not set
LITERT_FP16 = (
    "LiteRT's CPU interpreter upcasts float16 weights to float32 before the first inference and XNNPACK computes "
    "in FP32 (emulated: a smaller file, no speed-up expected)"
)


@dataclass(frozen=True)
class Support:
    """``skipped``: why the build does not apply and what to do (None: build it); ``emulated``: why
    it is emulated (built anyway: ``bench.emulated: measure``), else None."""

    skipped: str | None = None
    emulated: str | None = None


def _cpu(fp: dict[str, Any]) -> str:
    return (fp.get("cpu") or {}).get("model") or "this device's CPU"


def _emulated_reason(fp: dict[str, Any], runtime: str, precision: str) -> str | None:
    """Why ``precision`` is emulated by ``runtime`` on the device, or None when it runs natively."""
    cpu = _cpu(fp)
    if precision == "bf16":
        if runtime == "openvino" and not native_bf16(fp):
            return (
                f"{cpu} has no native bf16 compute (AVX512_BF16, AMX_BF16 or Arm bf16): OpenVINO runs bf16 in "
                "f32 (emulated: no speed-up expected)"
            )
        return None
    if precision != "fp16":
        return None
    if runtime == "litert":
        return LITERT_FP16
    if runtime == "tensorrt":
        return _slow_fp16_gpu(fp)
    if runtime == "openvino" and not native_fp16(fp):
        return (
            f"{cpu} has no native FP16 compute (AVX512_FP16, AMX_FP16 or Arm FP16): OpenVINO runs fp16 builds "
            "in f32, or in bf16 where the CPU has it (emulated: no speed-up expected)"
        )
    if runtime != "onnxruntime":
        return None
    if fp.get("gpu"):  # ORT's CUDA/TensorRT providers compute FP16 on the GPU
        return _slow_fp16_gpu(fp)
    if is_arm(fp) and native_fp16(fp):  # MLAS has FP16 kernels on Arm with FP16 arithmetic
        return None
    # elsewhere the CPU provider inserts Casts around FP32 kernels, whatever the CPU (AVX512_FP16 too)
    return (
        f"ONNX Runtime's CPU provider has no FP16 kernels on {cpu}: it casts to FP32 around most ops "
        "(emulated: no speed-up expected)"
    )


#: runtimes that build only some precisions: ``{runtime: (precisions, why the others do not apply)}``
ONLY = {
    "executorch": (
        ("fp32", "int8-minmax"),
        "ExecuTorch converts the PyTorch model itself: fp32, and int8-minmax through its own PT2E quantizer "
        "(XNNPACKQuantizer, min/max observers on the calibration split); EdgeForge's other calibrators and "
        "fp16/bf16 are passes over the ONNX model it does not read",
    ),
    "coreml": (
        ("fp32", "fp16", "int8-minmax"),
        "Core ML computes in float32 or float16 (coremltools' compute_precision: no bf16), and its INT8 here is "
        "int8 weights scaled by their own min/max (tasks/runtimes/coreml_convert.py); the other calibrators "
        "calibrate activations, which coremltools does only by running the model (macOS)",
    ),
    "litert": (
        ("fp32", "fp16", "int8-minmax"),
        "LiteRT converts the FP32 export with TFLite's converter: fp32, fp16 (float16 weights) and int8-minmax "
        "(its own min/max calibration on the calibration split); it writes no bf16 model, and the entropy and "
        "percentile calibrators and int8-mixed are passes over the ONNX model it does not read",
    ),
}


def support(fp: dict[str, Any], runtime: str, precision: str, emulated: str = "skip") -> Support:
    """Whether ``precision`` applies to a target running ``runtime`` with fingerprint ``fp``;
    ``emulated``: ``bench.emulated`` (skip or measure), what to do with an emulated precision."""
    if runtime in ONLY and precision not in ONLY[runtime][0]:
        return Support(skipped=f"{ONLY[runtime][1]}: build {' or '.join(ONLY[runtime][0])} for this target")
    if precision == "bf16" and runtime == "onnxruntime":
        return Support(
            skipped="ONNX Runtime's CPU provider has no bf16 kernels (it would run the FP32 model): build bf16 "
            "for an OpenVINO target instead (e.g. build.targets=[local,local_openvino])"
        )
    if precision == "bf16" and runtime == "tensorrt":
        return Support(
            skipped="EdgeForge's TensorRT recipes build fp32, fp16 and int8 only (no --bf16 yet): "
            "build fp16 for this target"
        )
    if runtime == "hailo" and not precision.startswith("int8"):
        return Support(
            skipped="Hailo-8/8L run INT8 (16-bit for some layers) only; the Dataflow Compiler quantizes every "
            "build: build int8-* for this target"
        )
    why = _emulated_reason(fp, runtime, precision)
    if why is None:
        return Support()
    if emulated == "measure":
        return Support(emulated=why)
    return Support(skipped=f"{why}; set bench.emulated: measure to build and measure it anyway")
