"""MLflow logging of one pipeline run: a parent run (config, export, parity) and one child
run per target x precision with the same metric names everywhere, so the UI's compare view
lines FP32 against FP16 (and INT8) without setup. No secret reaches params: keys that look
secret are dropped before logging."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.io import sha256_file

SECRET = re.compile(r"pass(word|phrase)?|secret|token|credential|api_?key", re.I)


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if SECRET.search(str(k)):
            continue
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = str(v)[:500]
    return out


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def tracking_uri(cfg: Config) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.report.tracking_uri


def log_pipeline(cfg: Config, summary: dict) -> dict:
    import mlflow

    from tasks import benchmark, build, evaluate, export, parity, probe, quantize

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.report.experiment)
    ckpt = Path(cfg.model.checkpoint)
    common_tags = {
        "checkpoint_sha256": sha256_file(ckpt) if ckpt.is_file() else "missing",
        "git_commit": git_commit(),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", ""),
    }
    with mlflow.start_run(run_name="pipeline", tags={**common_tags, "edgeforge.kind": "pipeline"}) as parent:
        mlflow.log_params(flatten(dataclasses.asdict(cfg)))
        mlflow.log_metric(f"reference_{summary['reference']['metric']}", summary["reference"]["value"])
        mlflow.log_metric("export_nodes_after", summary["export"]["nodes_after"])
        mlflow.log_artifact(str(export.OUT), "export")
        for f in (export.METRICS, parity.METRICS):
            mlflow.log_artifact(str(f), "metrics")
        for r in summary["rows"]:
            with mlflow.start_run(run_name=r["key"], nested=True, tags={
                **common_tags, "edgeforge.kind": "build", "artifact_sha256": r["artifact_sha256"],
                "runtime_version": r["runtime_version"], "verdict": r["verdict"],
                "device_fingerprint_sha256": r.get("device_fingerprint_sha256") or "",
            }):
                mlflow.log_params({"target": r["target"], "precision": r["precision"], "runtime": r["runtime"],
                                   "calibrator": r.get("calibrator") or "none"})
                metrics = {
                    r["metric"]: r["value"], "metric_drop": r["drop"], "worst_class_drop": r["worst_class_drop"],
                    "latency_p50_ms": r["latency_p50_ms"], "latency_p90_ms": r["latency_p90_ms"],
                    "latency_p99_ms": r["latency_p99_ms"], "latency_cv": r["latency_cv"],
                    "throughput": r["throughput"], "size_mb": r["size_mb"],
                    "build_seconds": r["build_seconds"], "accepted": float(r["accepted"]),
                }
                metrics.update({k: v for k, v in r["details"].items() if isinstance(v, (int, float))})
                for key in ("first_inference_ms", "load_ms", "top1_agreement", "parity_max_abs",
                            "parity_vs_torch_max_abs", "gflops", "efficiency", "trtexec_median_ms"):
                    if r.get(key) is not None:
                        metrics[key] = r[key]
                if r["speedup_vs_torch"] is not None:
                    metrics["speedup_vs_torch"] = r["speedup_vs_torch"]
                if r.get("kept_fp32") is not None:
                    metrics["kept_fp32_layers"] = r["kept_fp32"]
                    mlflow.set_tag("kept_fp32", ",".join(r["kept_fp32_layers"]) or "(none)")
                mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
                bdir = build.out_dir(r["key"])
                mlflow.log_artifacts(str(bdir), "build")
                for f in ("sensitivity.png", "sensitivity.json"):
                    if (quantize.out_dir(r["precision"]) / f).is_file():
                        mlflow.log_artifact(str(quantize.out_dir(r["precision"]) / f), "sensitivity")
                for f in (build.metrics_path(r["key"]), benchmark.metrics_path(r["key"]), evaluate.metrics_path(r["key"])):
                    mlflow.log_artifact(str(f), "metrics")
                png = stage.ARTIFACTS / "report" / "parity" / f"{r['key']}.png"
                if png.is_file():
                    mlflow.log_artifact(str(png), "parity")
                if probe.out_path(r["target"]).is_file():  # what the device was when it built this
                    mlflow.log_artifact(str(probe.out_path(r["target"])), "device")
        run_id = parent.info.run_id
    stage.log("report", f"logged MLflow run {run_id} ({len(summary['rows'])} child runs) to {uri}")
    return {"tracking_uri": uri, "experiment": cfg.report.experiment, "parent_run_id": run_id}
