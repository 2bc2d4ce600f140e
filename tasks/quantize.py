"""Stage ``quantize@<precision>``: the ONNX model every runtime builds ``<precision>`` from.

- ``fp32``: the verified, simplified export as is.
- ``fp16``: FP16 weights and compute (ONNX Runtime's converter); inputs and outputs stay FP32
  unless ``build.fp16_keep_io_types`` is false. TensorRT 11 builds strongly typed from exactly this.
- ``int8-<calibrator>``: activation ranges calibrated on the calibration split (streamed in
  ``quant.batch_size`` batches, ``quant.samples`` images), then the explicit Q/DQ INT8 model
  every runtime consumes, the TensorRT calibration cache (for TensorRT <= 10 implicit INT8) and
  the per-tensor ranges as JSON (``calibration.cache``, ``ranges.json`` beside ``model.onnx``).

Each precision is its own stage, so a build depends only on its own precision's model.
Outputs: ``artifacts/quantize/<precision>/`` (``model.onnx`` + ``quantize.json``) and
``metrics/quantize/<precision>.json``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import onnx

from tasks import stage
from tasks.config import Config
from tasks.io import atomic_dir, sha256_file, write_json


def out_dir(precision: str) -> Path:
    return stage.ARTIFACTS / "quantize" / precision


def metrics_path(precision: str) -> Path:
    return stage.METRICS / "quantize" / f"{precision}.json"


def source(precision: str) -> Path:
    """The ONNX model that builds of ``precision`` start from."""
    return out_dir(precision) / "model.onnx"


def to_fp16(onnx_path: Path, out: Path, keep_io_types: bool) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        half = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=keep_io_types)
    except Exception as e:  # the converter raises bare exceptions on graphs it cannot handle
        raise stage.StageError(f"FP16 conversion of {onnx_path} failed: {e}") from e
    onnx.save(half, str(out))


def to_int8(cfg: Config, calibrator: str, onnx_path: Path, calib_dir: Path, out: Path,
            log: Callable[[str], None]) -> dict:
    """Calibrate with ``calibrator`` and write the Q/DQ model, TensorRT cache and ranges into ``out``."""
    import resource

    from tasks.data.split import Split
    from tasks.quant import calibrate, quantize_qdq, write_cache, write_ranges_json

    q = cfg.quant
    split = Split(calib_dir)
    n = min(q.samples, len(split))
    if n < 100:
        log(f"WARNING: calibrating on only {n} images (quant.samples={q.samples}, calib split {len(split)}): "
            "ranges from so few samples may not cover real inputs; use 100 or more")
    t0 = time.perf_counter()
    ranges = calibrate(onnx_path, (x for x, _ in split.batches(q.batch_size, limit=n)), calibrator,
                       input_name=cfg.model.input.name, percentile=q.percentile)
    calib_s = time.perf_counter() - t0
    facts = quantize_qdq(onnx_path, ranges, out / "model.onnx", per_channel=q.per_channel)
    write_cache(ranges, out / "calibration.cache", calibrator, trt_version=q.trt_version)
    write_ranges_json(ranges, out / "ranges.json")
    log(f"{calibrator}: {n} images in {calib_s:.1f} s, {len(facts['quantized_nodes'])} nodes quantized")
    return {
        "calibrator": calibrator, "samples": n, "calibration_seconds": calib_s, "tensors": len(ranges),
        "quantized_nodes": facts["quantized_nodes"], "per_channel": q.per_channel,
        "cache_sha256": sha256_file(out / "calibration.cache"), "ranges_sha256": sha256_file(out / "ranges.json"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(cfg: Config, precision: str, onnx_path: Path, out: Path, log: Callable[[str], None] = print,
        calib_dir: Path | None = None) -> dict:
    t0 = time.perf_counter()
    model = out / "model.onnx"
    meta: dict = {"precision": precision, "source_onnx_sha256": sha256_file(onnx_path)}
    if precision == "fp32":
        shutil.copyfile(onnx_path, model)
    elif precision == "fp16":
        to_fp16(onnx_path, model, cfg.build.fp16_keep_io_types)
        meta["keep_io_types"] = cfg.build.fp16_keep_io_types
    elif precision.startswith("int8-"):
        if calib_dir is None:
            raise stage.StageError("INT8 needs the calibration split (calib_dir)")
        meta.update(to_int8(cfg, precision.removeprefix("int8-"), onnx_path, calib_dir, out, log))
    else:
        raise stage.StageError(f"precision {precision!r} is not supported; allowed values: fp32, fp16, "
                               "int8-minmax, int8-entropy, int8-percentile")
    meta.update(sha256=sha256_file(model), size_bytes=model.stat().st_size, seconds=time.perf_counter() - t0)
    write_json(out / "quantize.json", meta)
    log(f"{precision}: {meta['size_bytes'] / 1e6:.2f} MB in {meta['seconds']:.2f} s")
    return meta


def main(argv: list[str] | None = None) -> None:
    p = stage.parser("quantize")
    p.add_argument("--precision", required=True, help="precision to prepare (one of build.precisions)")
    args = p.parse_args(argv)
    name = f"quantize@{args.precision}"
    with stage.stage_errors(name, outputs=[out_dir(args.precision), metrics_path(args.precision)]):
        cfg = stage.load(args)
        if args.precision not in cfg.build.precisions:
            raise stage.StageError(f"--precision {args.precision!r} is not in build.precisions "
                                   f"({', '.join(cfg.build.precisions)})")
        from tasks.export import OUT as ONNX
        from tasks.prepare import OUT as PREP

        with atomic_dir(out_dir(args.precision)) as tmp:
            meta = run(cfg, args.precision, ONNX, tmp, lambda m: stage.log(name, m), calib_dir=PREP / "calib")
        write_json(metrics_path(args.precision), meta)


if __name__ == "__main__":
    main()
