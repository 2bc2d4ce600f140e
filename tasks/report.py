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
COLUMNS = [  # (summary key, header); "value" is the task metric, its header comes from model.task
    ("target", "target"), ("precision", "precision"), ("runtime", "runtime"), ("value", "metric"),
    ("drop", "drop pts"), ("worst_class_drop", "worst class drop"), ("parity_max_abs", "max|Δ| vs ONNX"),
    ("latency_p50_ms", "p50 ms (b1)"), ("latency_p99_ms", "p99 ms (b1)"), ("first_inference_ms", "1st call ms"),
    ("throughput", "offline/s"), ("efficiency", "% peak"), ("speedup_vs_torch", "× torch (b1)"),
    ("size_mb", "size MB"), ("kept_fp32", "FP32 layers"), ("verdict", "verdict"),
]


def columns(summary: dict) -> list[tuple[str, str]]:
    label = summary.get("reference", {}).get("label", "metric")
    return [(k, label if k == "value" else h) for k, h in COLUMNS]


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
    # no application latency (a TensorRT device without its Python packages): trtexec's figures only
    first = lat.get("b1") or next(iter(lat.values()), dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "cv", "throughput")))
    speed = {bs: torch[bs]["p50_ms"] / v["p50_ms"] for bs, v in lat.items() if bs in torch}
    offline = bench.get("offline", {bs: {"throughput": v["throughput"]} for bs, v in lat.items()})
    best = max(offline, key=lambda bs: offline[bs]["throughput"]) if offline else next(iter(lat), None)
    roof = bench.get("roofline") or {}
    par = ev.get("parity")
    reasons = [x for x in (ev["reason"], bench.get("reason", "")) if x]
    accepted = bool(ev["accepted"]) and bench.get("accepted", True)
    return {
        "key": k, "target": target, "precision": precision, "runtime": b["runtime"],
        "runtime_version": b["runtime_version"], "artifact_sha256": b["sha256"],
        "device_fingerprint_sha256": b.get("device_fingerprint_sha256"), "host": b.get("host"),
        "size_mb": b["size_bytes"] / 1e6, "build_seconds": b["build_seconds"],
        "metric": ev["metric"], "value": ev["value"], "reference_value": ev["reference_value"], "drop": ev["drop"],
        "details": ev.get("details", {}), "top1_agreement": ev.get("top1_agreement"),
        "worst_class_drop": ev["worst_class_drop"], "worst_classes": ev["worst_classes"],
        "parity_max_abs": max(s_["max_abs"] for s_ in par["legs"]["onnx_artifact"].values()) if par else None,
        "parity_vs_torch_max_abs": max(s_["max_abs"] for s_ in par["legs"]["torch_artifact"].values()) if par else None,
        "latency_p50_ms": first["p50_ms"], "latency_p90_ms": first["p90_ms"], "latency_p99_ms": first["p99_ms"],
        "latency_cv": first["cv"],
        "first_inference_ms": bench.get("cold", {}).get("first_inference_ms"),
        "load_ms": bench.get("cold", {}).get("load_ms"),
        "throughput": offline[best]["throughput"] if offline else first["throughput"], "throughput_batch": best,
        "gflops": (roof.get("gflops") or {}).get(best),
        "efficiency": 100 * roof["efficiency"][best] if roof.get("efficiency") else None,
        "speedup_vs_torch": speed.get("b1", next(iter(speed.values()), None)),
        "unstable": bench.get("unstable", []),
        "trtexec_median_ms": _trtexec_median(bench),
        "calibrator": q.get("calibrator"), "kept_fp32": len(q["kept_fp32"]) if "kept_fp32" in q else None,
        "kept_fp32_layers": [k_["node"] for k_ in q.get("kept_fp32", [])],
        "accepted": accepted, "verdict": "accepted" if accepted else "rejected", "reason": "; ".join(reasons),
    }


def _trtexec_median(bench: dict) -> float | None:
    """trtexec's own median latency at batch 1 (TensorRT targets), beside EdgeForge's p50."""
    t = (bench.get("trtexec") or {}).get("b1") or {}
    lat = t.get("latency") or {}
    return lat.get("median") if isinstance(lat, dict) else None


def run(cfg: Config) -> dict:
    from tasks import export, parity
    from tasks.metrics.task import primary

    par = _read(parity.METRICS)
    rows = [row(cfg, t, p, torch_baseline(t)) for t in cfg.build.targets for p in cfg.build.precisions]
    metric, label = primary(cfg.model.task)
    return {"reference": {"metric": metric, "label": label, "value": par["reference_value"]},
            "export": _read(export.METRICS), "rows": rows}


def plot_parity(summary: dict) -> None:
    """``artifacts/report/parity/<key>.png``: the three-way |difference| histograms of each build."""
    from tasks import evaluate
    from tasks.metrics.three_way import plot

    for r in summary["rows"]:
        par = _read(evaluate.metrics_path(r["key"])).get("parity")
        if par:
            plot(par, OUT / "parity" / f"{r['key']}.png", f"{r['key']}: three-way parity (|difference| histograms)")


def title(summary: dict) -> str:
    ref = summary["reference"]
    return f"PyTorch FP32 reference {ref['label']}: {ref['value']:.2f}"


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}"
    return str(v)


def markdown(summary: dict) -> str:
    cols = columns(summary)
    head = "| " + " | ".join(h for _, h in cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(k)) for k, _ in cols) + " |\n" for r in summary["rows"])
    reasons = "".join(f"- {r['key']}: rejected: {r['reason']}\n" for r in summary["rows"] if not r["accepted"])
    return title(summary) + "\n\n" + head + body + ("\n" + reasons if reasons else "")


def print_table(summary: dict, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    file = file or sys.stdout  # looked up at call time: redirected/captured stdout works in-process

    t = Table(title=f"EdgeForge summary ({title(summary)})")
    cols = columns(summary)
    for _, h in cols:
        t.add_column(h, justify="left" if h in ("target", "precision", "runtime", "verdict") else "right")
    for r in summary["rows"]:
        cells = [_fmt(r.get(k)) for k, _ in cols]
        cells[-1] = "[green]accepted[/]" if r["accepted"] else "[red]rejected[/]"
        t.add_row(*cells)
    console = Console(file=file, width=200)
    console.print(t)
    for r in summary["rows"]:  # the reasons under the table: in a cell they would squeeze every column
        if not r["accepted"]:
            console.print(f"[red]rejected[/] {r['key']}: {r['reason']}", highlight=False, soft_wrap=True)
    if summary.get("mlflow"):
        m = summary["mlflow"]
        ui = f".venv/bin/mlflow ui --backend-store-uri {m['tracking_uri']}"
        if m.get("ui_url"):  # the link opens the runs table, not MLflow's GenAI overview (tasks.tracking_ui)
            ui = f"open {m['ui_url']}" if m["tracking_uri"].startswith(("http://", "https://")) else \
                f"{ui}, then open {m['ui_url']}"
        print(f"\nMLflow: experiment {m['experiment']!r}, parent run {m['parent_run_id']} in {m['tracking_uri']}\n"
              f"Compare precisions in the UI:  {ui}\n"
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
        plot_parity(summary)
        from tasks import report_html  # report.html and plots/, before MLflow so that it can log them

        report_html.write(summary, OUT, model=report_html.model_name(cfg))
        from tasks.tracking import log_pipeline

        summary["mlflow"] = log_pipeline(cfg, summary)
        write_json(OUT / "summary.json", summary)
        (OUT / "summary.md").write_text(markdown(summary))
        if not os.environ.get("EDGEFORGE_NO_TABLE"):  # `make run` prints it once, after dvc repro
            print_table(summary)


if __name__ == "__main__":
    main()
