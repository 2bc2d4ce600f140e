"""Stage ``quantize@<precision>``: the ONNX model every runtime builds ``<precision>`` from.

- ``fp32``: the verified, simplified export as is.
- ``fp16``: FP16 weights and compute (ONNX Runtime's converter); inputs and outputs stay FP32
  unless ``build.fp16_keep_io_types`` is false. TensorRT 11 builds strongly typed from exactly this.
- ``int8-<calibrator>``: activation ranges calibrated on the calibration split (streamed in
  ``quant.batch_size`` batches, ``quant.samples`` images), then the explicit Q/DQ INT8 model
  TensorRT and OpenVINO consume, the same ranges in the layout ONNX Runtime fuses into int8
  kernels (``model.ort.onnx``), the TensorRT calibration cache (for TensorRT <= 10 implicit
  INT8) and the per-tensor ranges as JSON (``calibration.cache``, ``ranges.json``).
- ``int8-mixed``: the same, with the layers that cost accuracy kept FP32, chosen automatically
  within ``quant.max_drop`` (see ``tasks.quantize_mixed``).

Each precision is its own stage, so a build depends only on its own precision's model.
Outputs: ``artifacts/quantize/<precision>/`` (``model.onnx`` + ``quantize.json``) and
``metrics/quantize/<precision>.json``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import onnx

from tasks import stage
from tasks.config import Config
from tasks.io import atomic_dir, sha256_file, write_json


def out_dir(precision: str) -> Path:
    return stage.ARTIFACTS / "quantize" / precision


def metrics_path(precision: str) -> Path:
    return stage.METRICS / "quantize" / f"{precision}.json"


def source(precision: str, runtime: str | None = None) -> Path:
    """The ONNX model that builds of ``precision`` start from. INT8 has two layouts of the same
    ranges: ``model.onnx`` (TensorRT's explicit-quantization placement, for TensorRT and
    OpenVINO) and ``model.ort.onnx`` (the placement ONNX Runtime fuses into int8 kernels)."""
    ort = out_dir(precision) / "model.ort.onnx"
    return ort if runtime == "onnxruntime" and precision.startswith("int8-") else out_dir(precision) / "model.onnx"


def to_fp16(onnx_path: Path, out: Path, keep_io_types: bool) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        half = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=keep_io_types)
    except Exception as e:  # the converter raises bare exceptions on graphs it cannot handle
        raise stage.StageError(f"FP16 conversion of {onnx_path} failed: {e}") from e
    onnx.save(half, str(out))


def calibrate_split(cfg: Config, calibrator: str, onnx_path: Path, calib_dir: Path,
                    log: Callable[[str], None]) -> tuple[dict, int, float]:
    """Activation ranges from ``quant.samples`` images of the calibration split, streamed in
    ``quant.batch_size`` batches. Returns ``(ranges, images used, seconds)``."""
    from tasks.data.split import Split
    from tasks.quant import calibrate

    q = cfg.quant
    split = Split(calib_dir)
    n = min(q.samples, len(split))
    if n < 100:
        log(f"WARNING: calibrating on only {n} images (quant.samples={q.samples}, calib split {len(split)}): "
            "ranges from so few samples may not cover real inputs; use 100 or more")
    t0 = time.perf_counter()
    ranges = calibrate(onnx_path, (x for x, _ in split.batches(q.batch_size, limit=n)), calibrator,
                       input_name=cfg.model.input.name, percentile=q.percentile)
    return ranges, n, time.perf_counter() - t0


def layouts(cfg: Config) -> dict[str, dict]:
    """The Q/DQ layouts written for each INT8 precision, as ``{file: quantize_qdq options}``:
    ``model.onnx`` (TensorRT's placement, for TensorRT and OpenVINO) and ``model.ort.onnx`` (what
    ONNX Runtime fuses into int8 kernels: int8 weights, Q/DQ on outputs too, 7-bit weights
    when ``quant.ort_reduce_range``)."""
    from tasks.quant import ORT_EXTRA_OPTIONS

    return {"model.onnx": {},
            "model.ort.onnx": {"extra_options": ORT_EXTRA_OPTIONS, "reduce_range": cfg.quant.ort_reduce_range}}


def write_layouts(cfg: Config, onnx_path: Path, ranges: dict, out: Path, keep_fp32: Sequence[str] = ()) -> list[str]:
    """Write both :func:`layouts` of the same ranges into ``out``, ``keep_fp32`` nodes left FP32.
    Returns the nodes quantized in ``model.onnx``."""
    from tasks.quant import quantize_qdq

    facts = {f: quantize_qdq(onnx_path, ranges, out / f, per_channel=cfg.quant.per_channel,
                             nodes_to_exclude=list(keep_fp32) or None, **kwargs)
             for f, kwargs in layouts(cfg).items()}
    return facts["model.onnx"]["quantized_nodes"]


def write_calibration(cfg: Config, calibrator: str, ranges: dict, out: Path, quantized_nodes: list[str]) -> dict:
    """Write the TensorRT calibration cache and ``ranges.json`` beside the models in ``out``;
    returns the INT8 facts and hashes for ``quantize.json``."""
    from tasks.quant import write_cache, write_ranges_json

    q = cfg.quant
    write_cache(ranges, out / "calibration.cache", calibrator, trt_version=q.trt_version)
    write_ranges_json(ranges, out / "ranges.json")
    return {
        "calibrator": calibrator, "tensors": len(ranges), "quantized_nodes": quantized_nodes,
        "per_channel": q.per_channel, "ort_reduce_range": q.ort_reduce_range,
        "ort_sha256": sha256_file(out / "model.ort.onnx"), "cache_sha256": sha256_file(out / "calibration.cache"),
        "ranges_sha256": sha256_file(out / "ranges.json"),
    }


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def to_int8(cfg: Config, calibrator: str, onnx_path: Path, calib_dir: Path, out: Path,
            log: Callable[[str], None]) -> dict:
    """Calibrate with ``calibrator`` and write the Q/DQ models, TensorRT cache and ranges into ``out``."""
    ranges, n, calib_s = calibrate_split(cfg, calibrator, onnx_path, calib_dir, log)
    meta = write_calibration(cfg, calibrator, ranges, out, write_layouts(cfg, onnx_path, ranges, out))
    log(f"{calibrator}: {n} images in {calib_s:.1f} s, {len(meta['quantized_nodes'])} nodes quantized")
    return {**meta, "samples": n, "calibration_seconds": calib_s, "peak_rss_mb": peak_rss_mb()}


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
        if precision == "int8-mixed":
            from tasks.quantize_mixed import to_mixed

            meta.update(to_mixed(cfg, onnx_path, calib_dir, out, log))
        else:
            meta.update(to_int8(cfg, precision.removeprefix("int8-"), onnx_path, calib_dir, out, log))
    else:
        raise stage.StageError(f"precision {precision!r} is not supported; allowed values: fp32, fp16, "
                               "int8-minmax, int8-entropy, int8-percentile, int8-mixed")
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
