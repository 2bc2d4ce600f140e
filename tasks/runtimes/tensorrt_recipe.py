"""TensorRT build recipes: the ``trtexec`` command that builds an engine of one precision for the
device's TensorRT version, and the check of what that build printed. Pure Python: TensorRT is
never imported; the device agent runs ``TrtPlan.argv`` with the remote build folder as its
working directory.

Recipes (``precision`` -> ONNX model uploaded as ``model.onnx`` + precision flags):

TensorRT 8.2 - 10.x, weakly typed (a precision flag *allows* kernels of that precision):

- ``fp32`` (``weakly-typed``): the FP32 ONNX, no flag.
- ``fp16`` (``weakly-typed``): the FP32 ONNX + ``--fp16``.
- ``int8-<calibrator>``, ``tensorrt.int8=qdq`` (``explicit-qdq``): the Q/DQ ONNX + ``--int8 --fp16``.
  TensorRT 8.x needs the INT8 flag for any quantized layer ("To enable the use of any quantized
  operations, the INT8 flag must be set in the builder configuration", Developer Guide 8.x,
  Working with INT8); Q/DQ placement then fixes which layers run INT8. Layers outside Q/DQ pairs
  (unfused activations, residual adds, softmax) run FP32 unless ``--fp16`` allows FP16 too, the
  usual ``--int8 --fp16`` pairing (trtexec's ``--best``), so the INT8 engine is not slowed by
  FP32 glue layers.
- ``int8-mixed``, ``int8=qdq`` (``explicit-qdq``): the Q/DQ ONNX + ``--int8`` only. Its
  un-quantized layers are the ones ``quant`` kept FP32 because they cost accuracy; ``--fp16``
  would let the builder run them FP16, a precision the sensitivity search never measured.
- ``int8-<calibrator>``, ``int8=calib`` (``implicit``): the FP32 ONNX + ``--int8 --fp16
  --calib=calibration.cache`` (``--fp16`` as in ``explicit-qdq``, so both recipes of one precision
  differ only in how INT8 layers are chosen). trtexec loads the cache into its
  ``RndInt8Calibrator`` (an ``IInt8EntropyCalibrator2`` fed random data, samples/common/
  sampleEngines.cpp); TensorRT ignores a cache whose header names another version or algorithm and
  then calibrates on that random data, so the header must read ``TRT-<device version>-
  EntropyCalibration2`` (refused otherwise). ``int8-mixed`` is refused: implicit INT8 can keep
  layers FP32 only through ``--layerPrecisions``/``--precisionConstraints``, which this recipe
  does not write.

TensorRT 11 is strongly typed only (``strongly-typed``; "TensorRT 11.x removes all precision
flags (--fp16, --int8, --bf16, --fp8, --int4, --best)" and "removes the --int8 and --calib flags",
Migrating trtexec Usage from TensorRT 10.x to 11.x; ``[E] Unknown option: --fp16`` in
tests/fixtures/trtexec/trt11.0_b200_stronglytyped_build_and_fp16_int8_unknown_option_fail.log):
precision comes from the ONNX itself, no precision flag. ``fp32``: the FP32 ONNX; ``fp16``: the
FP16-weight ONNX; ``int8-*``: the Q/DQ ONNX; ``int8=calib`` is refused. ``--stronglyTyped`` is not
passed ("no longer needed: it is always enabled", same page).

Flags by version (trtexec ``--help`` text in NVIDIA/TensorRT samples/common/sampleOptions.cpp and
the options each fixture log prints under ``=== Build Options ===``):

- always: ``--onnx=model.onnx --saveEngine=model.engine --timingCacheFile=<remote cache>``
  (the 8.2 log prints ``timingCacheFile:``), ``--profilingVerbosity=detailed`` and
  ``--exportLayerInfo=layers.json`` (the engine inspector and ``ProfilingVerbosity.DETAILED``:
  TensorRT 8.2.1 API reference, ``EngineInspector``/``IBuilderConfig``). Some 8.x trtexec return
  before the layer report when ``--buildOnly`` is set (trtexec.cpp of those releases), so
  ``layers.json`` is best effort;
- build only: ``--buildOnly`` before 8.6 (8.4 log: ``Build only: Disabled``), ``--skipInference``
  from 8.6 (8.6 log: ``Skip inference: Disabled`` under Build Options; 11.0 fixture uses it);
- workspace: ``--workspace=N`` (MiB) before 8.4, ``--memPoolSize=workspace:NMiB`` from 8.4 (8.4
  fixture); ``--workspace`` was removed in 10 (Migrating trtexec Usage from 8.x to 10.x);
- ``--builderOptimizationLevel=0..5``: 8.6+ (first printed by the 8.6 log); refused before;
- DLA: ``--useDLACore=N --allowGPUFallback`` (layers DLA cannot run go to the GPU; DLA runs FP16
  and INT8 layers only). Refused for TensorRT 11.0 - 11.4.0: "DLA was unavailable in TensorRT 11.0
  through 11.3 ... TensorRT 11.4.0 supported DLA only on Windows on ARM" (Working with DLA, 11.4.1);
- TensorRT older than 8.2 is refused (no engine inspector, and no fixture to check against).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tasks.runtimes import trtexec_log
from tasks.runtimes.base import BuildError

ONNX_NAME = "model.onnx"
CALIB_NAME = "calibration.cache"
MIN_VERSION = (8, 2)
MEMPOOL_FROM = (8, 4)
SKIP_INFERENCE_FROM = (8, 6)
OPT_LEVEL_FROM = (8, 6)
STRONGLY_TYPED_FROM = (11, 0)
DLA_GAP = ((11, 0, 0), (11, 4, 1))  # [from, to): no DLA on any Jetson in these releases
CALIB_ALGORITHM = "EntropyCalibration2"  # trtexec's RndInt8Calibrator is an IInt8EntropyCalibrator2
INT8_MODES = ("qdq", "calib")


class RecipeError(BuildError):
    """No ``trtexec`` command can build this precision with these settings on this TensorRT."""


class TensorRTSettings(Protocol):
    """What :func:`plan` reads from ``target.tensorrt`` (``tasks.config.schema.TensorRT``)."""

    trtexec: str
    workspace_mib: int | None
    dla_core: int | None
    int8: str
    builder_optimization_level: int | None
    extra_args: list[str]


@dataclass(frozen=True)
class Sources:
    """Local models a build may upload: ``fp32_onnx`` (the verified export), ``precision_onnx``
    (``quantize@<precision>``'s model: FP16 weights or Q/DQ INT8) and its TensorRT calibration
    cache (``None`` when there is none)."""

    fp32_onnx: Path
    precision_onnx: Path
    calib_cache: Path | None = None


@dataclass
class TrtPlan:
    """One engine build. ``argv`` runs in the remote build folder, where ``uploads`` (remote file
    name -> local file) are put first; trtexec writes ``engine``, ``layer_info`` and (streamed
    by the agent) ``log`` there. ``flags``: the precision flags, for metadata."""

    argv: list[str]
    uploads: dict[str, Path]
    engine: str = "model.engine"
    log: str = "build.log"
    layer_info: str = "layers.json"
    recipe: str = "weakly-typed"
    flags: list[str] = field(default_factory=list)
    trt_version: str = ""


def parse_version(version: Any) -> tuple[int, int, int]:
    """``"8.6.1"`` / ``"10.3.0.30"`` / ``"11.0"`` -> ``(major, minor, patch)``."""
    m = (
        re.fullmatch(r"(\d{1,3})\.(\d{1,3})(?:\.(\d{1,4}))?(?:\.\d{1,6})?", str(version).strip())
        if isinstance(version, str)
        else None
    )
    if m is None:
        raise RecipeError(
            f"TensorRT version {version!r} is not like '8.6.1' or '10.3.0.30' (it comes from the "
            "device fingerprint: re-run the probe stage on the target)"
        )
    return int(m[1]), int(m[2]), int(m[3] or 0)


def _fmt(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def _check_settings(s: TensorRTSettings) -> None:
    if s.int8 not in INT8_MODES:
        raise RecipeError(f"target.tensorrt.int8 = {s.int8!r}; allowed: {', '.join(INT8_MODES)}")
    for key, value, low in (
        ("workspace_mib", s.workspace_mib, 1),
        ("dla_core", s.dla_core, 0),
        ("builder_optimization_level", s.builder_optimization_level, 0),
    ):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise RecipeError(f"target.tensorrt.{key} = {value!r}: expected an integer >= {low} or null")
    if s.builder_optimization_level is not None and s.builder_optimization_level > 5:
        raise RecipeError(
            f"target.tensorrt.builder_optimization_level = {s.builder_optimization_level}: TensorRT accepts 0 to 5"
        )
    if not isinstance(s.extra_args, (list, tuple)) or not all(isinstance(a, str) for a in s.extra_args):
        raise RecipeError(f"target.tensorrt.extra_args = {s.extra_args!r}: expected a list of strings")


def _cache_matches(cache: Path, v: tuple[int, int, int]) -> None:
    """Refuse a calibration cache TensorRT would ignore (and replace by random-data calibration)."""
    from tasks.quant.common import QuantError
    from tasks.quant.trt_cache import read_cache_header, trt_version_number

    try:
        number, algorithm = read_cache_header(cache)
    except (OSError, QuantError) as e:
        raise RecipeError(f"cannot read the TensorRT calibration cache {cache}: {e}") from e
    device = trt_version_number(_fmt(v))
    if number != device:
        raise RecipeError(
            f"the calibration cache {cache} was written for TensorRT {trtexec_log.decode_version(number)} "
            f"(header TRT-{number}-{algorithm}) but the device runs TensorRT {_fmt(v)}: TensorRT ignores a cache "
            f"of another version and would calibrate on trtexec's random data. Set quant.trt_version: {_fmt(v)} "
            "and re-run quantize, or use target.tensorrt.int8: qdq"
        )
    if algorithm != CALIB_ALGORITHM:
        raise RecipeError(
            f"the calibration cache {cache} names {algorithm}, but trtexec --calib loads caches into an "
            f"IInt8EntropyCalibrator2 ({CALIB_ALGORITHM}) and ignores other headers (it would calibrate on random "
            "data); build this precision with target.tensorrt.int8: qdq"
        )


def _precision(
    v: tuple[int, int, int], precision: str, s: TensorRTSettings, src: Sources
) -> tuple[str, Path, list[str], dict[str, Path]]:
    """(recipe, ONNX to upload, precision flags, extra uploads)."""
    if precision not in ("fp32", "fp16") and not precision.startswith("int8-"):
        raise RecipeError(f"precision {precision!r}: expected fp32, fp16 or int8-<calibrator>/int8-mixed")
    if v[:2] >= STRONGLY_TYPED_FROM:
        if precision.startswith("int8-") and s.int8 == "calib":
            raise RecipeError(
                f"TensorRT {_fmt(v)} removed implicit INT8 (--int8/--calib, and calibration caches): "
                "set target.tensorrt.int8: qdq (builds the explicit Q/DQ model quant already writes)"
            )
        return "strongly-typed", src.fp32_onnx if precision == "fp32" else src.precision_onnx, [], {}
    if precision == "fp32":
        return "weakly-typed", src.fp32_onnx, [], {}
    if precision == "fp16":
        return "weakly-typed", src.fp32_onnx, ["--fp16"], {}
    if s.int8 == "qdq":
        return "explicit-qdq", src.precision_onnx, ["--int8"] if precision == "int8-mixed" else ["--int8", "--fp16"], {}
    if precision == "int8-mixed":
        raise RecipeError(
            "int8-mixed cannot be built as implicit INT8 (target.tensorrt.int8: calib): its kept-FP32 "
            "layers could only be expressed with --layerPrecisions/--precisionConstraints, which this "
            "recipe does not write; use target.tensorrt.int8: qdq"
        )
    if src.calib_cache is None:
        raise RecipeError(
            f"{precision} with target.tensorrt.int8: calib needs quantize's calibration.cache; none "
            "was given (re-run quantize, or use int8: qdq)"
        )
    _cache_matches(src.calib_cache, v)
    return "implicit", src.fp32_onnx, ["--int8", "--fp16", f"--calib={CALIB_NAME}"], {CALIB_NAME: src.calib_cache}


def _resource_flags(v: tuple[int, int, int], s: TensorRTSettings) -> list[str]:
    flags: list[str] = []
    if s.workspace_mib is not None:
        flags.append(
            f"--memPoolSize=workspace:{s.workspace_mib}MiB"
            if v[:2] >= MEMPOOL_FROM
            else f"--workspace={s.workspace_mib}"
        )
    if s.dla_core is not None:
        if DLA_GAP[0] <= v < DLA_GAP[1]:
            raise RecipeError(
                f"TensorRT {_fmt(v)} has no DLA support (DLA was unavailable in TensorRT 11.0 - 11.3 and "
                "only on Windows on ARM in 11.4.0); unset target.tensorrt.dla_core or use TensorRT "
                "10.x / 11.4.1+ (JetPack 7.2.2+ on AGX Orin)"
            )
        flags += [f"--useDLACore={s.dla_core}", "--allowGPUFallback"]
    if s.builder_optimization_level is not None:
        if v[:2] < OPT_LEVEL_FROM:
            raise RecipeError(
                f"--builderOptimizationLevel needs TensorRT 8.6 or newer; the device runs {_fmt(v)}: "
                "unset target.tensorrt.builder_optimization_level"
            )
        flags.append(f"--builderOptimizationLevel={s.builder_optimization_level}")
    return flags


@dataclass(frozen=True)
class Profile:
    """The optimisation profile of a dynamic-batch input: batch 1 up to ``max_batch``, tuned for
    ``opt_batch``; ``shape`` is one sample's [C, H, W]. Without one, trtexec fixes a dynamic batch
    at 1 and larger batches cannot run on the engine."""

    input: str
    shape: tuple[int, ...]
    opt_batch: int
    max_batch: int

    def flags(self) -> list[str]:
        dims = "x".join(map(str, self.shape))
        return [
            f"--minShapes={self.input}:1x{dims}",
            f"--optShapes={self.input}:{self.opt_batch}x{dims}",
            f"--maxShapes={self.input}:{self.max_batch}x{dims}",
        ]


def plan(
    trt_version: str,
    precision: str,
    settings: TensorRTSettings,
    sources: Sources,
    timing_cache: str,
    profile: Profile | None = None,
) -> TrtPlan:
    """The trtexec build of ``precision`` for the device's ``trt_version``. ``timing_cache``: the
    remote timing cache path (kept on the device and shared by every build). ``profile``: the
    dynamic batch range (None: a static input). Raises :class:`RecipeError` (a ``BuildError``)
    when no recipe fits, saying what to change."""
    v = parse_version(trt_version)
    if v[:2] < MIN_VERSION:
        raise RecipeError(
            f"TensorRT {_fmt(v)} is not supported: EdgeForge builds with TensorRT 8.2 or newer "
            "(upgrade JetPack/TensorRT on the device)"
        )
    _check_settings(settings)
    if not isinstance(timing_cache, str) or not timing_cache:
        raise RecipeError(f"timing cache path {timing_cache!r}: expected a non-empty remote path")
    recipe, onnx_path, flags, extra = _precision(v, precision, settings, sources)
    if not Path(onnx_path).is_file():
        raise RecipeError(
            f"{onnx_path} (the model the {recipe} {precision} build uploads) does not exist: "
            f"run the export/quantize stages first"
        )
    trt = TrtPlan(
        argv=[], uploads={ONNX_NAME: Path(onnx_path), **extra}, recipe=recipe, flags=flags, trt_version=_fmt(v)
    )
    trt.argv = [
        settings.trtexec,
        f"--onnx={ONNX_NAME}",
        f"--saveEngine={trt.engine}",
        *flags,
        *(profile.flags() if profile else []),
        *_resource_flags(v, settings),
        f"--timingCacheFile={timing_cache}",
        "--profilingVerbosity=detailed",
        f"--exportLayerInfo={trt.layer_info}",
        "--skipInference" if v[:2] >= SKIP_INFERENCE_FROM else "--buildOnly",
        *settings.extra_args,
    ]
    return trt


def _hint(log: trtexec_log.TrtexecLog) -> str:
    text = " ".join(log.errors)
    if "Unknown option" in text:
        return (
            "\n  hint: this trtexec rejects an option of the command: the device's TensorRT differs from the "
            "probed one (re-run probe) or target.tensorrt.extra_args holds a flag this version lacks"
        )
    if "Plugin not found" in text or "No importer registered" in text:
        return (
            "\n  hint: TensorRT's ONNX parser lacks an operator of the model: re-export with another opset, "
            "replace the op, or add a plugin (extra_args --staticPlugins=...)"
        )
    return ""


def check_build(log_text: str, exit_code: int, plan: TrtPlan, target: str) -> dict[str, Any]:
    """Decide from trtexec's console output whether the engine was built. Returns metadata:
    ``tensorrt_version``, ``trt_build_seconds`` (trtexec's "Engine built in", s), ``trt_precision``
    (its ``Precision:`` line, e.g. "FP32+FP16"), ``recipe``, ``flags``, ``command`` and
    ``trt_warnings`` (count of [W] lines); prefixed so that they cannot overwrite a stage's own
    ``precision``/``build_seconds``. Raises ``BuildError`` naming the target, quoting the ``[E]``
    lines and the exact command otherwise."""
    log = trtexec_log.parse(log_text)
    if exit_code != 0:
        problem = f"trtexec exited with code {exit_code}"
    elif log.status != "passed":
        problem = "the log has no final &&&& PASSED line"
    elif log.build_seconds is None:
        problem = "trtexec passed but reported no built engine (no 'Engine built in' line)"
    elif plan.trt_version and log.tensorrt_version and log.tensorrt_version != plan.trt_version:
        problem = (
            f"the device's trtexec is TensorRT {log.tensorrt_version}, the recipe was planned for "
            f"{plan.trt_version} (stale fingerprint): re-run probe, then build again"
        )
    else:
        return {
            "tensorrt_version": log.tensorrt_version,
            "trt_build_seconds": log.build_seconds,
            "trt_precision": log.precision,
            "recipe": plan.recipe,
            "flags": list(plan.flags),
            "command": shlex.join(plan.argv),
            "trt_warnings": log.warnings_count,
        }
    raise BuildError(
        f"{target}: TensorRT engine build failed: {problem}; {trtexec_log.errors_text(log)}\n"
        f"  command: {shlex.join(plan.argv)}\n  full log: {plan.log} in the build folder{_hint(log)}"
    )
