"""Stage ``report``: gather every stage's metrics into one summary (target x precision),
print it, write ``artifacts/report/summary.{json,md}``, and log the pipeline to MLflow (one
parent run, one child run per target x precision; see :mod:`tasks.tracking`).

``python -m tasks.report --show`` prints the last summary without logging anything.
"""
from __future__ import annotations

import os

import sys
from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.io import read_json, write_json

OUT = stage.ARTIFACTS / "report"
COLUMNS = [  # (summary key, header)
    ("target", "target"), ("precision", "precision"), ("runtime", "runtime"), ("top1", "top-1 %"),
    ("drop", "drop pts"), ("worst_class_drop", "worst class drop"), ("parity_max_abs", "max|Δ| vs torch"), ("latency_p50_ms", "p50 ms (b1)"),
    ("latency_p99_ms", "p99 ms (b1)"), ("first_inference_ms", "1st call ms"), ("throughput", "best thrpt/s"), ("speedup_vs_torch", "× torch (b1)"),
    ("size_mb", "size MB"), ("kept_fp32", "FP32 layers"), ("verdict", "verdict"),
]


def _read(path: Path) -> dict:
    if not path.is_file():
        raise stage.StageError(f"{path} is missing: run the stage that writes it (`dvc repro`)")
    return read_json(path)


def torch_baseline(target: str) -> dict:
    """PyTorch eager latency per batch size (``{"b1": stats, ...}``) that the target's FP32
    benchmark measured side by side; empty when it did not (no fp32 build, remote target,
    ``bench.torch_baseline`` off)."""
    from tasks import benchmark

    path = benchmark.metrics_path(stage.key(target, "fp32"))
    return read_json(path).get("torch", {}) if path.is_file() else {}


def row(cfg: Config, target: str, precision: str, torch: dict) -> dict:
    """One summary row; ``torch``: the target's :func:`torch_baseline`."""
    from tasks import benchmark, build, evaluate, quantize

    k = stage.key(target, precision)
    qpath = quantize.metrics_path(precision)
    q = read_json(qpath) if qpath.is_file() else {}
    b, bench, ev = _read(build.metrics_path(k)), _read(benchmark.metrics_path(k)), _read(evaluate.metrics_path(k))
    lat = bench["latency"]
    first = lat.get("b1") or next(iter(lat.values()))
    speed = {bs: torch[bs]["p50_ms"] / v["p50_ms"] for bs, v in lat.items() if bs in torch}
    return {
        "key": k, "target": target, "precision": precision, "runtime": b["runtime"],
        "runtime_version": b["runtime_version"], "artifact_sha256": b["sha256"],
        "device_fingerprint_sha256": b.get("device_fingerprint_sha256"), "host": b.get("host"),
        "size_mb": b["size_bytes"] / 1e6, "build_seconds": b["build_seconds"],
        "top1": ev["top1"], "drop": ev["drop"], "top1_agreement": ev["top1_agreement"],
        "worst_class_drop": ev["worst_class_drop"], "worst_classes": ev["worst_classes"],
        "latency_p50_ms": first["p50_ms"], "latency_p99_ms": first["p99_ms"],
        "latency_cv": first["cv"],
        "first_inference_ms": bench.get("cold", {}).get("first_inference_ms"),
        "load_ms": bench.get("cold", {}).get("load_ms"),
        "throughput": max(v["throughput"] for v in lat.values()),
        "speedup_vs_torch": speed.get("b1", next(iter(speed.values()), None)),
        "unstable": bench.get("unstable", []),
        "calibrator": q.get("calibrator"), "kept_fp32": len(q["kept_fp32"]) if "kept_fp32" in q else None,
        "kept_fp32_layers": [k_["node"] for k_ in q.get("kept_fp32", [])],
        "accepted": ev["accepted"], "verdict": "accepted" if ev["accepted"] else "rejected", "reason": ev["reason"],
    }


def run(cfg: Config) -> dict:
    from tasks import export, parity

    par = _read(parity.METRICS)
    rows = []
    for t in cfg.build.targets:
        torch = torch_baseline(t)
        for p in cfg.build.precisions:
            r = row(cfg, t, p, torch)
            # the ONNX-vs-torch error applies to the FP32 build; others are judged by accuracy
            r["parity_max_abs"] = max(v["max_abs"] for per in par["outputs"].values() for v in per.values()) \
                if p == "fp32" else None
            rows.append(r)
    return {"reference_top1": par["reference_top1"], "export": _read(export.METRICS), "rows": rows}


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}"
    return str(v)


def markdown(summary: dict) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + " |\n" for r in summary["rows"])
    return f"PyTorch FP32 reference top-1: {summary['reference_top1']:.2f}%\n\n" + head + body


def print_table(summary: dict, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    file = file or sys.stdout  # looked up at call time: redirected/captured stdout works in-process

    t = Table(title=f"EdgeForge summary (PyTorch FP32 reference top-1 {summary['reference_top1']:.2f}%)")
    for _, h in COLUMNS:
        t.add_column(h, justify="left" if h in ("target", "precision", "runtime", "verdict") else "right")
    for r in summary["rows"]:
        cells = [_fmt(r.get(k)) for k, _ in COLUMNS]
        cells[-1] = "[green]accepted[/]" if r["accepted"] else f"[red]rejected[/] ({r['reason']})"
        t.add_row(*cells)
    Console(file=file, width=200).print(t)
    if summary.get("mlflow"):
        m = summary["mlflow"]
        print(f"\nMLflow: experiment {m['experiment']!r}, parent run {m['parent_run_id']} in {m['tracking_uri']}\n"
              f"Compare precisions in the UI:  .venv/bin/mlflow ui --backend-store-uri {m['tracking_uri']}\n"
              f"Metrics in the terminal:       .venv/bin/dvc metrics show", file=file)


def main(argv: list[str] | None = None) -> None:
    p = stage.parser("report")
    p.add_argument("--show", action="store_true", help="print the last summary; log nothing")
    args = p.parse_args(argv)
    if args.show:
        with stage.stage_errors("report"):
            print_table(_read(OUT / "summary.json"))
        return
    with stage.stage_errors("report", outputs=[OUT]):
        cfg = stage.load(args)
        summary = run(cfg)
        from tasks.tracking import log_pipeline

        summary["mlflow"] = log_pipeline(cfg, summary)
        write_json(OUT / "summary.json", summary)
        (OUT / "summary.md").write_text(markdown(summary))
        if not os.environ.get("EDGEFORGE_NO_TABLE"):  # `make run` prints it once, after dvc repro
            print_table(summary)


if __name__ == "__main__":
    main()
