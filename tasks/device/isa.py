"""Capabilities from a fingerprint's CPU flags (``fp["cpu"]["flags"]``, the names Linux's
/proc/cpuinfo uses; the agent keeps those in ``CPU_FLAGS``). Every function takes the whole
fingerprint dict and answers False where the flags are missing."""

from __future__ import annotations

from typing import Any


def flags(fp: dict[str, Any]) -> set[str]:
    return set((fp.get("cpu") or {}).get("flags") or [])


def is_arm(fp: dict[str, Any]) -> bool:
    return str(fp.get("arch") or "").lower() in ("aarch64", "arm64") or "asimd" in flags(fp)


def has_avx512(fp: dict[str, Any]) -> bool:
    return "avx512f" in flags(fp)


def has_fma(fp: dict[str, Any]) -> bool:
    """x86 fused multiply-add (FMA3: Haswell / Zen and later)."""
    return "fma" in flags(fp) or has_avx512(fp)


def has_vnni(fp: dict[str, Any]) -> bool:
    """x86 int8 dot-product instructions (AVX512-VNNI or AVX-VNNI): u8 x s8 multiply-accumulate."""
    return bool({"avx512_vnni", "avx_vnni"} & flags(fp))


def has_amx(fp: dict[str, Any]) -> bool:
    """Intel AMX tile matrix units (int8 or bf16)."""
    return bool({"amx_int8", "amx_bf16"} & flags(fp))


def arm_dotprod(fp: dict[str, Any]) -> bool:
    """Arm SDOT/UDOT (int8 dot product, "asimddp")."""
    return "asimddp" in flags(fp)


def arm_i8mm(fp: dict[str, Any]) -> bool:
    """Arm SMMLA/UMMLA (int8 matrix multiply-accumulate)."""
    return "i8mm" in flags(fp)


def int8_dot(fp: dict[str, Any]) -> bool:
    """An int8 multiply-accumulate instruction exists (VNNI, AMX or Arm dot-product): U8S8 with
    full-range weights is the fast path; without it, 7-bit weights avoid x86 VPMADDUBSW saturation."""
    return has_vnni(fp) or has_amx(fp) or arm_dotprod(fp)


def native_bf16(fp: dict[str, Any]) -> bool:
    """bf16 arithmetic in hardware: AVX512_BF16, AMX-BF16, or Arm BF16 (BFDOT/BFMMLA)."""
    return bool({"avx512_bf16", "amx_bf16"} & flags(fp)) or (is_arm(fp) and "bf16" in flags(fp))


def native_fp16(fp: dict[str, Any]) -> bool:
    """fp16 arithmetic in hardware: AVX512-FP16, AMX-FP16, or Arm FP16 vectors (asimdhp). F16C only
    converts: fp16 there is emulated (no speed-up expected)."""
    return bool({"avx512_fp16", "amx_fp16"} & flags(fp)) or (is_arm(fp) and "asimdhp" in flags(fp))
