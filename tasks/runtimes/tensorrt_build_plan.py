"""The trtexec build of one precision for one TensorRT target, from the config, the pipeline's
models (:mod:`tasks.layout`) and the target's fingerprint: what ``build@<target>`` runs on the device,
and what a release bundle records as its recipe so that a device can build the engine again."""

from __future__ import annotations

from tasks.config import Config
from tasks.layout import LAYOUT, Layout
from tasks.runtimes.base import BuildError
from tasks.runtimes.tensorrt_recipe import Profile, Sources, TrtPlan, plan, timing_cache_path


def target_plan(cfg: Config, target_name: str, precision: str, fingerprint: dict, layout: Layout = LAYOUT) -> TrtPlan:
    """The :class:`TrtPlan` of ``precision`` on ``target_name`` (a tensorrt target) whose probe recorded
    ``fingerprint``; raises :class:`BuildError` when the probe found no TensorRT there."""
    target = cfg.target[target_name]
    version = fingerprint.get("tensorrt")
    if not version:
        raise BuildError(
            f"{target_name}: the probe found no TensorRT on the device (looked for trtexec at "
            f"{target.tensorrt.trtexec}); install TensorRT or set target.{target_name}.tensorrt.trtexec"
        )
    cache = layout.quantize_dir(precision) / "calibration.cache"
    sources = Sources(
        fp32_onnx=layout.onnx,
        precision_onnx=layout.precision_onnx(precision, "tensorrt"),
        calib_cache=cache if cache.is_file() else None,
        fp16_glue_onnx=layout.fp16_glue_onnx(precision) if precision.startswith("int8-") else None,
    )
    gpu = (fingerprint.get("gpu") or [None])[0]  # trtexec builds on device 0
    # one cache per TensorRT version and GPU: TensorRT refuses a cache of another version (a JetPack upgrade)
    tcache = timing_cache_path(target.tensorrt.timing_cache, version, gpu)
    inp = cfg.model.input
    profile = (
        Profile(
            inp.name, tuple(inp.shape), max(cfg.bench.batch_sizes), max(*cfg.bench.batch_sizes, cfg.eval.batch_size)
        )
        if inp.dynamic_batch
        else None
    )
    return plan(
        version,
        precision,
        target.tensorrt,
        sources,
        tcache if tcache.startswith("/") else f"../../{tcache}",
        profile,
        target=target_name,
        gpu=gpu,
    )
