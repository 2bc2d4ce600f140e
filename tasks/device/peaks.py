"""Nominal compute peaks per precision family from a device fingerprint, with their basis as text.

CPU: physical cores x nominal clock (``cpu.mhz_nominal``: the model name's GHz or cpufreq's maximum,
never the volatile current MHz) x FLOP (int8: OP) per cycle per core of the microarchitecture's
vector or matrix units. The clock is a nominal figure: cores may sustain more (turbo) or less (AVX
offsets, heat), which is why the ``peak`` stage also *measures* a peak; efficiency is reported
against both. Without a clock, or for a microarchitecture not in the rules below, a family's peak
is None with the reason (nothing is invented).

Jetson GPUs (TensorRT targets): per-module streaming-multiprocessor counts and maximum GPU clocks
from NVIDIA's module data sheets, times the architecture's dense per-SM rates.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.device import isa

FAMILIES = ("fp32", "bf16", "fp16", "int8")

#: Intel AMX per core per cycle (Intel, "Intel Advanced Matrix Extensions (Intel AMX) Overview" /
#: Sapphire Rapids Architecture Day 2021: 2048 INT8 operations and 1024 BF16 operations per cycle)
AMX_INT8_OPS, AMX_BF16_FLOPS = 2048, 1024

#: Arm core parts ("CPU part", MIDR) -> (name, FP32 FLOP/cycle/core from their NEON FMA pipes)
ARM_CORES = {
    "0xd03": ("Cortex-A53", 4, "one 64-bit NEON FMA pipe"),
    "0xd05": ("Cortex-A55", 8, "one 128-bit NEON FMA pipe"),
    "0xd07": ("Cortex-A57", 16, "two 128-bit NEON FMA pipes"),
    "0xd08": ("Cortex-A72", 16, "two 128-bit NEON FMA pipes"),
    "0xd09": ("Cortex-A73", 16, "two 128-bit NEON FMA pipes"),
    "0xd0a": ("Cortex-A75", 16, "two 128-bit NEON FMA pipes"),
    "0xd0b": ("Cortex-A76", 16, "two 128-bit NEON FMA pipes"),
    "0xd0c": ("Neoverse N1", 16, "two 128-bit NEON FMA pipes"),
    "0xd0d": ("Cortex-A77", 16, "two 128-bit NEON FMA pipes"),
    "0xd41": ("Cortex-A78", 16, "two 128-bit NEON FMA pipes"),
    "0xd42": ("Cortex-A78AE", 16, "two 128-bit NEON FMA pipes"),
    "0xd49": ("Neoverse N2", 16, "two 128-bit NEON/SVE2 FMA pipes"),
    "0xd40": ("Neoverse V1", 32, "four 128-bit NEON FMA pipes (two 256-bit SVE)"),
    "0xd4f": ("Neoverse V2", 32, "four 128-bit NEON/SVE2 FMA pipes"),
    "0xd44": ("Cortex-X1", 32, "four 128-bit NEON FMA pipes"),
    "0xd48": ("Cortex-X2", 32, "four 128-bit NEON FMA pipes"),
    "0x004": ("NVIDIA Carmel", 16, "two 128-bit NEON FMA pipes"),
}

#: Jetson GPU per SM per clock, dense (no structured sparsity): (fp32 on CUDA cores, fp16 and bf16
#: and int8 on tensor cores). Ampere GA10B: 128 CUDA cores and 4 third-generation tensor cores per SM;
#: Volta GV10B: 64 CUDA cores and 8 tensor cores per SM (no bf16).
JETSON_ARCH = {
    "ampere": {"fp32": 256, "fp16": 2048, "bf16": 2048, "int8": 4096},
    "volta": {"fp32": 128, "fp16": 1024, "bf16": None, "int8": 2048},
}
#: (name keywords, minimum RAM GiB, module, architecture, SMs, max GPU MHz): NVIDIA Jetson AGX Orin
#: Series, Orin NX Series, Orin Nano Series, AGX Xavier Series and Xavier NX Series module data sheets
#: (CUDA/tensor core counts, maximum GPU frequency). The products reproduce NVIDIA's headline GPU figures:
#: AGX Orin 64GB 5.3 FP32 TFLOPS and 170 sparse INT8 TOPS (85 dense); Orin Nano 8GB 40 sparse TOPS;
#: AGX Xavier 11 FP16 TFLOPS and 22 INT8 TOPS.
JETSON_MODULES = (
    (("agx", "orin"), 40, "Jetson AGX Orin 64GB", "ampere", 16, 1300),
    (("agx", "orin"), 0, "Jetson AGX Orin 32GB", "ampere", 14, 930),
    (("orin", "nx"), 12, "Jetson Orin NX 16GB", "ampere", 8, 918),
    (("orin", "nx"), 0, "Jetson Orin NX 8GB", "ampere", 8, 765),
    (("orin", "nano"), 6, "Jetson Orin Nano 8GB", "ampere", 8, 625),
    (("orin", "nano"), 0, "Jetson Orin Nano 4GB", "ampere", 4, 625),
    (("xavier", "nx"), 0, "Jetson Xavier NX", "volta", 6, 1100),
    (("xavier",), 0, "Jetson AGX Xavier", "volta", 8, 1377),
)


def _peak(gflops: float | None, basis: str) -> dict[str, Any]:
    return {"gflops": gflops, "basis": basis}


def _x86_fp32(fp: dict[str, Any]) -> tuple[int, str] | str:
    """FP32 FLOP/cycle/core and why, or the reason there is none."""
    cpu = fp.get("cpu") or {}
    vendor, family, model = cpu.get("vendor"), cpu.get("family"), cpu.get("model_id")
    name = str(cpu.get("model") or "")
    if vendor == "AuthenticAMD" and isinstance(family, int):
        if family >= 26:
            return 64, "Zen 5: two 512-bit FMA pipes (server/desktop; mobile Zen 5 has 256-bit ones: half)"
        if family == 25 and isa.has_avx512(fp):
            return 32, "Zen 4: two 256-bit FMA pipes, AVX-512 double-pumped on them"
        if family == 25 or (family == 23 and isinstance(model, int) and model >= 0x30):
            return 32, "Zen 2/3: two 256-bit FMA pipes"
        if family == 23:
            return 16, "Zen/Zen+: two 128-bit FMA pipes (256-bit AVX split in two)"
    if vendor == "GenuineIntel" and isa.has_avx512(fp):
        if "Xeon" in name and not re.search(r"Silver|Bronze", name):
            return 64, "AVX-512 with two 512-bit FMA units assumed (Xeon Scalable Gold/Platinum, Sapphire Rapids on)"
        return 32, "AVX-512 with one 512-bit FMA unit assumed (Xeon Silver/Bronze and client cores)"
    if vendor == "GenuineIntel" and isa.has_fma(fp) and "avx2" in isa.flags(fp):
        return 32, "AVX2: two 256-bit FMA units (Haswell and later)"
    return f"no FMA rule for {vendor or 'an unknown vendor'} family {family} model {model} ({name or 'no model name'})"


def _arm_fp32(fp: dict[str, Any]) -> tuple[int, str] | str:
    part = str((fp.get("cpu") or {}).get("model_id") or "").lower()
    if part in ARM_CORES:
        core, per_cycle, pipes = ARM_CORES[part]
        return per_cycle, f"{core}: {pipes}"
    return f"Arm core part {part or '(none)'} is not in EdgeForge's table (tasks/device/peaks.py ARM_CORES)"


def _half(fp: dict[str, Any], fam: str, fp32: int) -> tuple[int | None, str]:
    """bf16 or fp16: AMX tiles, else native vectors at twice the FP32 rate, else (fp16) the FP32 rate."""
    arm = isa.is_arm(fp)
    amx, native = ("amx_bf16", isa.native_bf16(fp)) if fam == "bf16" else ("amx_fp16", isa.native_fp16(fp))
    how = {
        "bf16": "Arm BFDOT" if arm else "AVX512_BF16 VDPBF16PS",
        "fp16": "Arm FP16 vectors (asimdhp)" if arm else "AVX512-FP16",
    }[fam]
    if amx in isa.flags(fp):
        return AMX_BF16_FLOPS, f"{AMX_BF16_FLOPS} {fam.upper()} FLOP/cycle (AMX tiles, Intel's BF16 figure)"
    if native:
        return 2 * fp32, f"{2 * fp32} {fam.upper()} FLOP/cycle ({how}: two 16-bit products per FP32 lane)"
    if fam == "bf16":
        return None, "no native BF16 arithmetic (no AVX512_BF16, AMX or Arm BF16): bf16 does not run here"
    return fp32, f"{fp32} FLOP/cycle: no native FP16 arithmetic, FP16 runs at best at the FP32 rate"


def _per_cycle(fp: dict[str, Any], fp32: int, fp32_why: str) -> dict[str, tuple[int | None, str]]:
    """Per family: (FLOP or OP per cycle per core, or None; why)."""
    out = {"fp32": (fp32, f"{fp32} FP32 FLOP/cycle ({fp32_why})")}
    out["bf16"], out["fp16"] = _half(fp, "bf16", fp32), _half(fp, "fp16", fp32)
    if "amx_int8" in isa.flags(fp):
        out["int8"] = (AMX_INT8_OPS, f"{AMX_INT8_OPS} INT8 OP/cycle (AMX tiles, Intel's figure)")
    elif isa.has_vnni(fp):
        out["int8"] = (4 * fp32, f"{4 * fp32} INT8 OP/cycle (VNNI VPDPBUSD: 4 u8xs8 products per FP32 lane)")
    elif isa.arm_i8mm(fp):
        out["int8"] = (8 * fp32, f"{8 * fp32} INT8 OP/cycle (I8MM SMMLA: 32 MACs per 128-bit op, at the FMA rate)")
    elif isa.arm_dotprod(fp):
        out["int8"] = (4 * fp32, f"{4 * fp32} INT8 OP/cycle (SDOT: 4 int8 products per FP32 lane)")
    else:
        out["int8"] = (None, "no int8 dot-product instruction (VNNI, AMX, Arm dot-product): no single rate to count")
    return out


def cpu_peaks(fp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{family: {"gflops": float | None, "basis": str}}`` for the fingerprint's CPU (GOP/s for int8)."""
    cpu = fp.get("cpu") or {}
    rule = _arm_fp32(fp) if isa.is_arm(fp) else _x86_fp32(fp)
    if isinstance(rule, str):
        return {fam: _peak(None, f"unknown microarchitecture: {rule}") for fam in FAMILIES}
    cores, mhz = cpu.get("physical_cores"), cpu.get("mhz_nominal")
    what = "cores"
    if not cores:
        cores, what = cpu.get("cores"), "logical CPUs (physical cores unknown; SMT siblings share vector units)"
    out = {}
    for fam, (per_cycle, why) in _per_cycle(fp, *rule).items():
        if per_cycle is None:
            out[fam] = _peak(None, why)
        elif not mhz or not cores:
            out[fam] = _peak(None, f"unknown clock (no GHz in the CPU model name, no cpufreq maximum, no TSC): {why}")
        else:
            g = cores * mhz / 1000 * per_cycle
            src = f" ({cpu['mhz_source']})" if cpu.get("mhz_source") else ""
            out[fam] = _peak(g, f"{cores} {what} x {mhz / 1000:.2f} GHz{src} x {why}")
    return out


def jetson_module(fp: dict[str, Any]) -> tuple | None:
    gpus = fp.get("gpu") or []
    name = str(gpus[0].get("name") if gpus else "").lower()
    ram = fp.get("ram_gib") or 0
    for words, min_ram, *module in JETSON_MODULES:
        if all(w in name for w in words) and ram >= min_ram:
            return tuple(module)
    return None


def gpu_peaks(fp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Jetson module's GPU peaks (dense, at its maximum GPU clock: lower nvpmodel modes lower it)."""
    module = jetson_module(fp)
    if module is None:
        gpus = fp.get("gpu") or []
        why = f"GPU {gpus[0].get('name')!r} is not a Jetson module in EdgeForge's table" if gpus else "no GPU found"
        return {fam: _peak(None, why) for fam in FAMILIES}
    name, arch, sms, mhz = module
    out = {}
    for fam in FAMILIES:
        rate = JETSON_ARCH[arch][fam]
        unit = "CUDA cores" if fam == "fp32" else "tensor cores, dense"
        out[fam] = (
            _peak(
                sms * rate * mhz / 1000, f"{name}: {sms} SMs x {mhz / 1000:.3g} GHz x {rate} {fam} OP/clk/SM ({unit})"
            )
            if rate
            else _peak(None, f"{name}: {arch} tensor cores have no {fam}")
        )
    return out


def nominal(fp: dict[str, Any], runtime: str) -> dict[str, dict[str, Any]]:
    """The peaks the ``runtime`` computes on: the GPU for TensorRT, else the CPU."""
    return gpu_peaks(fp) if runtime == "tensorrt" else cpu_peaks(fp)
