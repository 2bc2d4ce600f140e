"""The report's summary: one row per target x precision, read from the stages' records (build,
benchmark, evaluate, quantize), with the FP32 reference and the export facts. A build that does not
apply to its device (a skipped record) is a row with ``skipped`` (why), verdict ``n/a`` and no figures:
never accepted, never rejected."""

from __future__ import annotations

from typing import Any

from tasks.config import Config
from tasks.io import read_json
from tasks.layout import Layout, key
from tasks.metrics.task import label, primary
from tasks.records import (
    BenchmarkRecord,
    BuildRecord,
    EvaluateRecord,
    QuantizeRecord,
    RecordError,
    SkippedRecord,
)

_NO_LATENCY = dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "cv", "throughput"))


def _read(path) -> dict[str, Any]:
    if not path.is_file():
        raise RecordError(f"{path} is missing: run the stage that writes it (`dvc repro`)")
    return read_json(path)


def torch_baseline(layout: Layout, target: str) -> dict[str, dict]:
    """PyTorch eager latency per batch size (``{"b1": stats, ...}``) that the target's FP32
    benchmark measured side by side; empty when it did not (no fp32 build, remote target,
    ``bench.torch_baseline`` off)."""
    path = layout.benchmark_metrics(target, "fp32")
    if SkippedRecord.read_if_skipped(path):  # fp32 built but not run on the device (records.not_run_build)
        return {}
    rec = BenchmarkRecord.read_if(path)
    return (rec.torch or {}) if rec else {}


def trtexec_median(bench: BenchmarkRecord) -> float | None:
    """trtexec's own median latency at batch 1 (TensorRT targets), beside EdgeForge's p50."""
    lat = ((bench.trtexec or {}).get("b1") or {}).get("latency") or {}
    return lat.get("median") if isinstance(lat, dict) else None


def int8_fallbacks(build: BuildRecord) -> dict[str, Any]:
    """``int8_fallbacks`` (how many layers left INT8: the ONNX layers TensorRT's build log names,
    or the tensors it names when none is an ONNX node's), ``int8_fallback_layers`` and
    ``int8_fallback_tensors`` of an implicit-INT8 TensorRT build; ``None`` and empty lists for builds
    that record none (not INT8, explicit Q/DQ, other runtimes)."""
    layers = list(build.extra.get("int8_fallback_layers") or [])
    tensors = list(build.extra.get("int8_fallback_tensors") or [])
    recorded = "int8_fallback_tensors" in build.extra
    return {
        "int8_fallbacks": (len(layers) or len(tensors)) if recorded else None,
        "int8_fallback_layers": layers,
        "int8_fallback_tensors": tensors,
    }


# a skipped row's figures: every key a built row has, without a value (readers index some of them)
_SKIPPED_NONE = (
    *("runtime_version", "artifact_sha256", "device_fingerprint_sha256", "host", "size_mb", "build_seconds"),
    *("metric", "value", "reference_value", "drop", "top1_agreement", "worst_class_drop", "worst_image_drop"),
    *("parity_max_abs", "parity_vs_torch_max_abs", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms"),
    *("latency_cv", "first_inference_ms", "load_ms", "throughput", "throughput_batch", "gflops", "efficiency"),
    *("speedup_vs_torch", "trtexec_median_ms", "calibrator", "residual_adds", "kept_fp32", "int8_fallbacks"),
    *("efficiency_nominal", "efficiency_error", "end_to_end_ms", "end_to_end_parts_ms", "end_to_end", "emulated"),
)
_SKIPPED_EMPTY = ("worst_classes", "worst_images", "kept_fp32_layers", "int8_fallback_layers", "int8_fallback_tensors")


def skipped_row(k: str, rec: SkippedRecord) -> dict[str, Any]:
    """The row of a build that does not apply to its device: ``skipped`` (why), verdict ``n/a``."""
    return {
        **dict.fromkeys(_SKIPPED_NONE),
        **{name: [] for name in _SKIPPED_EMPTY},
        "key": k,
        "target": rec.target,
        "precision": rec.precision,
        "runtime": rec.runtime,
        "details": {},
        "unstable": [],
        "skipped": rec.skipped,
        "accepted": False,
        "verdict": "n/a",
        "reason": "",
    }


def row(layout: Layout, target: str, precision: str, torch: dict[str, dict]) -> dict[str, Any]:
    """One summary row; ``torch``: the target's :func:`torch_baseline`."""
    k = key(target, precision)
    skipped = SkippedRecord.read_if_skipped(layout.build_metrics(target, precision))
    if skipped:
        return skipped_row(k, skipped)
    q = QuantizeRecord.read_if(layout.quantize_metrics(precision))
    b = BuildRecord.read(layout.build_metrics(target, precision))
    not_run = SkippedRecord.read_if_skipped(layout.benchmark_metrics(target, precision))
    if not_run:  # built, but its device cannot run it (records.not_run_build): the build's facts, no figures
        size = {"size_mb": b.size_bytes / 1e6, "build_seconds": b.build_seconds, "runtime_version": b.runtime_version}
        return {**skipped_row(k, not_run), **size, "artifact_sha256": b.sha256, "host": b.host}
    bench = BenchmarkRecord.read(layout.benchmark_metrics(target, precision))
    ev = EvaluateRecord.read(layout.evaluate_metrics(target, precision))
    lat = bench.latency
    # no application latency (a TensorRT device without its Python packages): trtexec's figures only
    first = lat.get("b1") or next(iter(lat.values()), _NO_LATENCY)
    speed = {bs: torch[bs]["p50_ms"] / v["p50_ms"] for bs, v in lat.items() if bs in torch}
    offline = (
        bench.offline if bench.offline is not None else {bs: {"throughput": v["throughput"]} for bs, v in lat.items()}
    )
    best = max(offline, key=lambda bs: offline[bs]["throughput"]) if offline else next(iter(lat), None)
    roof = bench.roofline or {}
    par = ev.parity
    cold = bench.cold or {}
    kept = q.kept_fp32 if q else None
    fallback = int8_fallbacks(b)
    accepted = ev.accepted and bench.accepted
    return {
        "key": k,
        "target": target,
        "precision": precision,
        "runtime": b.runtime,
        "runtime_version": b.runtime_version,
        "artifact_sha256": b.sha256,
        "device_fingerprint_sha256": b.device_fingerprint_sha256,
        "host": b.host,
        "size_mb": b.size_bytes / 1e6,
        "build_seconds": b.build_seconds,
        "metric": ev.metric,
        "value": ev.value,
        "reference_value": ev.reference_value,
        "drop": ev.drop,
        "details": ev.details,
        "top1_agreement": ev.top1_agreement,
        "worst_class_drop": ev.worst_class_drop,
        "worst_classes": ev.worst_classes,
        "worst_image_drop": ev.worst_image_drop,
        "worst_images": ev.worst_images or [],
        "parity_max_abs": max(s["max_abs"] for s in par["legs"]["onnx_artifact"].values()) if par else None,
        "parity_vs_torch_max_abs": max(s["max_abs"] for s in par["legs"]["torch_artifact"].values()) if par else None,
        "latency_p50_ms": first["p50_ms"],
        "latency_p90_ms": first["p90_ms"],
        "latency_p99_ms": first["p99_ms"],
        "latency_cv": first["cv"],
        # batch 1 from image to decoded result (the median whole call; None on a device, where the
        # parts' sum is a lower bound), beside the compute-only p50, and its parts
        "end_to_end_ms": (bench.end_to_end or {}).get("total_ms"),
        "end_to_end_parts_ms": (bench.end_to_end or {}).get("sum_of_parts_ms"),
        "end_to_end": bench.end_to_end,
        "first_inference_ms": cold.get("first_inference_ms"),
        "load_ms": cold.get("load_ms"),
        "throughput": offline[best]["throughput"] if offline else first["throughput"],
        "throughput_batch": best,
        "gflops": (roof.get("gflops") or {}).get(best),
        # % of the measured peak (the runtime's own GEMM) and of the nominal one, at the best batch size;
        # None above 100%: efficiency_error says which peak the achieved figure exceeded
        "efficiency": _percent(roof.get("efficiency_measured"), best),
        "efficiency_nominal": _percent(roof.get("efficiency_nominal"), best),
        "efficiency_error": roof.get("efficiency_error"),
        "speedup_vs_torch": speed.get("b1", next(iter(speed.values()), None)),
        "unstable": bench.unstable,
        "trtexec_median_ms": trtexec_median(bench),
        "calibrator": q.calibrator if q else None,
        "residual_adds": q.residual_adds if q else None,  # INT8: Adds TensorRT can fuse into their Conv
        "kept_fp32": len(kept) if kept is not None else None,
        "kept_fp32_layers": [k_["node"] for k_ in kept or []],
        **fallback,
        "emulated": b.extra.get("emulated"),  # built without native compute (bench.emulated: measure)
        "accepted": accepted,
        "verdict": "accepted" if accepted else "rejected",
        "reason": "; ".join(x for x in (ev.reason, bench.reason) if x),
    }


def _percent(fractions: dict | None, bs: str | None) -> float | None:
    v = (fractions or {}).get(bs)
    return 100 * v if v is not None else None


def calibration(cfg: Config, layout: Layout) -> dict[str, Any] | None:
    """The calibration split's coverage, recorded by the INT8 precisions' quantize stages (one
    split, the same for all): ``{"line": one-line summary, "warnings": [...]}``; None without INT8."""
    from tasks.data.coverage import summary_line

    for p in cfg.build.precisions:
        q = QuantizeRecord.read_if(layout.quantize_metrics(p)) if p.startswith("int8-") else None
        if q is not None and q.coverage:
            return {"line": summary_line(q.coverage), "warnings": list(q.coverage["warnings"])}
    return None


def summarize(cfg: Config, layout: Layout) -> dict[str, Any]:
    """``{"reference": {metric, label, value}, "export": export metrics, "rows": [row, ...],
    "calibration": :func:`calibration`, "winner_by": report.winner_by, "winners": {device:
    {"key", "why"}}}``."""
    from tasks.reporting.selection import why, winners

    par = _read(layout.parity_metrics)
    rows = [row(layout, t, p, torch_baseline(layout, t)) for t in cfg.build.targets for p in cfg.build.precisions]
    # a skipped row also gets (empty) any key a built row has that _SKIPPED_NONE does not name yet
    built = dict.fromkeys(k for r in rows if not r.get("skipped") for k in r)
    rows = [{**built, **r} if r.get("skipped") else r for r in rows]
    # the metric parity scored with (Dice for a one-channel segmentation model), else the task's
    metric = par.get("metric") or primary(cfg.model.task)[0]
    return {
        "reference": {
            "metric": metric,
            "label": label(metric),
            "value": par["reference_value"],
            "parts": "keypoint" if cfg.model.task == "keypoints" else "class",  # what per_class is per
        },
        "export": _read(layout.export_metrics),
        "rows": rows,
        "calibration": calibration(cfg, layout),
        "winner_by": cfg.report.winner_by,
        "winners": {
            d: {"key": w["key"], "why": why(rows, w, cfg.report.winner_by)}
            for d, w in winners(rows, cfg.report.winner_by).items()
        },
    }
