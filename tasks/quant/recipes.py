"""What the quantize stage makes of each precision, from the config: the FP16 model, INT8 ranges
calibrated on the calibration split, both Q/DQ layouts of those ranges, and the TensorRT
calibration cache. :mod:`tasks.quant.mixed_precision` builds ``int8-mixed`` from the same pieces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx

from tasks.config import Config
from tasks.data.checks import constant_samples
from tasks.data.split import Split
from tasks.io import sha256_file
from tasks.layout import FP16_GLUE_ONNX, ORT_INT8_LAYOUTS, ort_int8_onnx
from tasks.quant.calibrators import calibrate
from tasks.quant.common import QuantError
from tasks.quant.fp16_glue import to_fp16_glue, to_half
from tasks.quant.qdq import ORT_EXTRA_OPTIONS, ORT_U8S8_OPTIONS, quantize_qdq
from tasks.quant.trt_cache import write_cache, write_ranges_json

#: quantize_qdq options of each ONNX Runtime INT8 layout (``tasks.layout.ORT_INT8_LAYOUTS``)
ORT_LAYOUT_OPTIONS: dict[str, dict] = {
    "u8s8": {"extra_options": ORT_U8S8_OPTIONS, "activation_type": "uint8", "reduce_range": False},
    "s8s8r7": {"extra_options": ORT_EXTRA_OPTIONS, "reduce_range": True},
}


def to_fp16(onnx_path: Path, out: Path, keep_io_types: bool) -> None:
    try:
        half = to_half(onnx.load(str(onnx_path)), keep_io_types=keep_io_types)
    except QuantError as e:
        raise QuantError(f"{onnx_path}: {e}") from e
    onnx.save(half, str(out))


def calibrate_split(
    cfg: Config, calibrator: str, onnx_path: Path, calib_dir: Path, log: Callable[[str], None]
) -> tuple[dict, int, float]:
    """Activation ranges from ``quant.samples`` images of the calibration split, streamed in
    ``quant.batch_size`` batches. Returns ``(ranges, images used, seconds)``. An empty split, or
    one whose samples are all blank (one value per image: placeholder data), is refused: INT8
    ranges are never calibrated on anything but real inputs."""
    q = cfg.quant
    split = Split(calib_dir)
    n = min(q.samples, len(split))
    blank, _ = constant_samples(x for x, _ in split.batches(q.batch_size, limit=n))
    if n == 0 or blank == n:
        what = "is empty" if n == 0 else f"holds only blank images ({n} of {n} samples are one value everywhere)"
        raise QuantError(
            f"the calibration split ({calib_dir}) {what}: INT8 ranges calibrated on it would be placeholders, "
            "not the ranges of real inputs. Point data.calib at real images (and data.calib.limit above 0), "
            "then re-run prepare"
        )
    if n < 100:
        log(
            f"WARNING: calibrating on only {n} images (quant.samples={q.samples}, calib split {len(split)}): "
            "ranges from so few samples may not cover real inputs; use 100 or more"
        )
    t0 = time.perf_counter()
    ranges = calibrate(
        onnx_path,
        (x for x, _ in split.batches(q.batch_size, limit=n)),
        calibrator,
        input_name=cfg.model.input.name,
        percentile=q.percentile,
    )
    return ranges, n, time.perf_counter() - t0


def layouts(cfg: Config) -> dict[str, dict]:
    """The Q/DQ layouts written for each INT8 precision, as ``{file: quantize_qdq options}``:
    ``model.onnx`` (TensorRT's placement, for TensorRT and OpenVINO) and one
    ``model.ort.<layout>.onnx`` per ONNX Runtime layout (what ONNX Runtime fuses into int8 kernels:
    int8 weights, Q/DQ on outputs too; u8s8 for CPUs with int8 dot products, s8s8r7 with 7-bit weights
    for x86 without VNNI). Every target's build picks the one its fingerprint calls for; all are written
    (each is cheap), so the quantize stage does not depend on any device."""
    return {"model.onnx": {}, **{ort_int8_onnx(name): ORT_LAYOUT_OPTIONS[name] for name in ORT_INT8_LAYOUTS}}


def write_layouts(cfg: Config, onnx_path: Path, ranges: dict, out: Path, keep_fp32: Sequence[str] = ()) -> dict:
    """Write every one of :func:`layouts` of the same ranges into ``out``, ``keep_fp32`` nodes left FP32.
    Returns the :func:`~tasks.quant.qdq.quantize_qdq` facts of ``model.onnx``."""
    facts = {
        f: quantize_qdq(
            onnx_path,
            ranges,
            out / f,
            per_channel=cfg.quant.per_channel,
            nodes_to_exclude=list(keep_fp32) or None,
            **kwargs,
        )
        for f, kwargs in layouts(cfg).items()
    }
    return facts["model.onnx"]


def write_calibration(cfg: Config, calibrator: str, ranges: dict, out: Path, layout: dict) -> dict:
    """Write the TensorRT calibration cache and ``ranges.json`` beside the models in ``out``;
    returns the INT8 facts and hashes for ``quantize.json``; ``layout``: :func:`write_layouts`'s
    facts (``residual_adds``: how many residual Adds got their residual input quantized, so
    TensorRT can fuse them into their Conv)."""
    q = cfg.quant
    write_cache(ranges, out / "calibration.cache", calibrator, trt_version=q.trt_version)
    write_ranges_json(ranges, out / "ranges.json")
    return {
        "calibrator": calibrator,
        "tensors": len(ranges),
        "quantized_nodes": layout["quantized_nodes"],
        "residual_adds": len(layout["residual_adds"]),
        "per_channel": q.per_channel,
        "ort_sha256": {name: sha256_file(out / ort_int8_onnx(name)) for name in ORT_INT8_LAYOUTS},
        "cache_sha256": sha256_file(out / "calibration.cache"),
        "ranges_sha256": sha256_file(out / "ranges.json"),
    }


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def to_int8(
    cfg: Config, calibrator: str, onnx_path: Path, calib_dir: Path, out: Path, log: Callable[[str], None]
) -> dict:
    """Calibrate with ``calibrator`` and write the Q/DQ models, TensorRT cache and ranges into ``out``,
    and the FP16-glue form of ``model.onnx`` that TensorRT 11 builds strongly typed (the numerics
    ``--int8 --fp16`` gives on 8.x/10.x; ``int8-mixed`` keeps FP32 glue on purpose and has none)."""
    ranges, n, calib_s = calibrate_split(cfg, calibrator, onnx_path, calib_dir, log)
    meta = write_calibration(cfg, calibrator, ranges, out, write_layouts(cfg, onnx_path, ranges, out))
    glue = to_fp16_glue(out / "model.onnx", out / FP16_GLUE_ONNX)
    meta.update(fp16_glue={"file": FP16_GLUE_ONNX, **glue}, fp16_glue_sha256=sha256_file(out / FP16_GLUE_ONNX))
    log(f"{calibrator}: {n} images in {calib_s:.1f} s, {len(meta['quantized_nodes'])} nodes quantized")
    return {**meta, "samples": n, "calibration_seconds": calib_s, "peak_rss_mb": peak_rss_mb()}
