"""MLflow logging of one pipeline run: a parent run (config, export, parity, the HTML report)
and one child run per target x precision with the same metric names everywhere, so the UI's
compare view lines FP32 against FP16 (and INT8) without setup. Every run is tagged with the
checkpoint's sha256, the git commit, the DVC experiment and the toolkit's versions; each
target's winner is registered in the model registry (:mod:`tasks.tracking.registry`). No secret
reaches params: keys that look secret are dropped before logging, and credentials in the
tracking URI are masked wherever it is printed or stored."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.io import sha256_file
from tasks.layout import LAYOUT, Layout
from tasks.tracking import ui as tracking_ui
from tasks.tracking.registry import register_winners
from tasks.tracking.uri import redact_uri, resolved_uri, tracking_uri

SECRET = re.compile(r"pass(word|phrase)?|secret|token|credential|api_?key", re.I)
# tag suffix -> distributions that provide it (first installed one wins)
PACKAGES = {
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "openvino": ("openvino",),
    "executorch": ("executorch",),
    "litert": ("ai-edge-litert",),
    "coremltools": ("coremltools",),
    "dvc": ("dvc",),
    "mlflow": ("mlflow", "mlflow-skinny"),
    "edgeforge": ("edgeforge",),
}


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


def experiment_name() -> str:
    """The DVC experiment this pipeline runs in: ``EDGEFORGE_EXP_NAME`` (set by EdgeForge's
    drivers), else ``DVC_EXP_NAME``, else empty."""
    return os.environ.get("EDGEFORGE_EXP_NAME") or os.environ.get("DVC_EXP_NAME") or ""


def toolkit_versions() -> dict[str, str]:
    """``{"version.python": "3.11.9", "version.torch": ..., ...}``; a package that is not
    installed has no tag."""
    out = {"version.python": platform.python_version()}
    for tag, dists in PACKAGES.items():
        for dist in dists:
            try:
                v = importlib.metadata.version(dist)
            except Exception:  # not installed, or broken metadata: a missing tag, never a failed report
                continue
            if v:
                out[f"version.{tag}"] = v
                break
    return out


def run_tags(cfg: Config) -> dict[str, str]:
    """Tags shared by the parent and every child run."""
    ckpt = Path(cfg.model.checkpoint)
    return {
        "checkpoint_sha256": sha256_file(ckpt) if ckpt.is_file() else "missing",
        "git_commit": git_commit(),
        "dvc_experiment": experiment_name(),
        **toolkit_versions(),
    }


def log_report(mlflow, layout: Layout = LAYOUT) -> None:
    """The HTML report and its plots, when the report stage wrote them, under ``report/``."""
    if layout.report_html.is_file():
        mlflow.log_artifact(str(layout.report_html), "report")
    if layout.plots_dir.is_dir():
        mlflow.log_artifacts(str(layout.plots_dir), "report/plots")


@contextlib.contextmanager
def _scoped_uri(mlflow, uri: str) -> Iterator[None]:
    """``mlflow.set_tracking_uri`` and ``set_experiment`` also export ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_EXPERIMENT_ID`` to ``os.environ``; put both back afterwards, or a later call in the
    same process would take the env's URI over its own config's."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_mlflow(cfg: Config) -> None:
    """Import MLflow and, for a database tracking URI, its SQL store (together ~2.7 s on 2 cores of
    an EPYC): :func:`log_pipeline` then starts at once. Logs nothing. The report stage calls this
    while another process draws its figures."""
    import mlflow  # noqa: F401
    from mlflow.store.db.db_types import DATABASE_ENGINES

    if tracking_uri(cfg).split(":", 1)[0].split("+", 1)[0] in DATABASE_ENGINES:  # sqlite:///, postgresql+psycopg2://
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def log_pipeline(cfg: Config, summary: dict) -> dict:
    """Log ``summary`` (the report's rows) as a parent run with one child run per row, then
    register each target's winner when ``report.register``. Returns
    ``{"tracking_uri" (password masked), "experiment", "parent_run_id", "registered": {target:
    {"name", "version", "alias", ...}}, "ui_url" (the experiment's runs in MLflow's UI)}``."""
    import mlflow

    uri = tracking_uri(cfg)
    shown = redact_uri(uri)
    with _scoped_uri(mlflow, resolved_uri(uri)):
        exp = mlflow.set_experiment(cfg.report.experiment)
        tracking_ui.mark_model_training(mlflow.MlflowClient(), exp)
        run_id, registered = _log_runs(mlflow, cfg, summary, shown)
    children = sum(not r.get("skipped") for r in summary["rows"])
    stage.log("report", f"logged MLflow run {run_id} ({children} child runs) to {shown}")
    for t, v in registered.items():
        stage.log(
            "report",
            f"registered {t}'s winner ({v['precision']}) as models:/{v['name']}/{v['version']} (alias @{v['alias']})",
        )
    return {
        "tracking_uri": shown,
        "experiment": cfg.report.experiment,
        "parent_run_id": run_id,
        "registered": registered,
        "ui_url": tracking_ui.runs_url(uri, exp.experiment_id),
    }


def _log_runs(mlflow, cfg: Config, summary: dict, shown_uri: str) -> tuple[str, dict]:
    """The parent run and its children, then the figures of both; registration happens inside the
    parent run, so a refused one marks it FAILED. Returns (parent run id, registered versions)."""
    tags = run_tags(cfg)
    with mlflow.start_run(
        run_name=tracking_ui.parent_run_name(cfg, tags), tags={**tags, "edgeforge.kind": "pipeline"}
    ) as parent:
        mlflow.log_params(flatten(dataclasses.asdict(cfg)))
        mlflow.log_metric(f"reference_accuracy_{summary['reference']['metric']}", summary["reference"]["value"])
        mlflow.log_metric("export_nodes_after", summary["export"]["nodes_after"])
        mlflow.log_artifact(str(LAYOUT.onnx), "export")
        for f in (LAYOUT.export_metrics, LAYOUT.parity_metrics):
            mlflow.log_artifact(str(f), "metrics")
        # a skipped row (not applicable to its device) has nothing to log: no artifact, no figures
        run_ids = {r["key"]: _log_child(mlflow, r, tags) for r in summary["rows"] if not r.get("skipped")}
        log_report(mlflow)
        client = mlflow.MlflowClient()
        for k, child_id in run_ids.items():
            if LAYOUT.parity_png(k).is_file():
                client.log_artifact(child_id, str(LAYOUT.parity_png(k)), "parity")
        registered: dict[str, dict] = {}
        if cfg.report.register:
            registered = register_winners(mlflow.MlflowClient(), cfg, summary["rows"], run_ids, tags, shown_uri)
            mlflow.set_tags(
                {f"registered.{v['alias']}": f"models:/{v['name']}/{v['version']}" for v in registered.values()}
            )
        return parent.info.run_id, registered


def _log_child(mlflow, r: dict, tags: dict[str, str]) -> str:
    """One summary row as a nested run; returns its run id. Its parity PNG is logged by
    :func:`_log_runs`, with the parent's figures."""
    with mlflow.start_run(
        run_name=tracking_ui.child_run_name(r),
        nested=True,
        tags={
            **tags,
            "edgeforge.kind": "build",
            tracking_ui.KEY_TAG: r["key"],
            "artifact_sha256": r["artifact_sha256"],
            "runtime_version": r["runtime_version"],
            "verdict": r["verdict"],
            "device_fingerprint_sha256": r.get("device_fingerprint_sha256") or "",
        },
    ) as child:
        mlflow.log_params(
            {
                "target": r["target"],
                "precision": r["precision"],
                "runtime": r["runtime"],
                "calibrator": r.get("calibrator") or "none",
            }
        )
        # quality figures share the accuracy_ prefix whatever the task's metric (accuracy_top1,
        # accuracy_map50_95, accuracy_miou, ...), so the compare view groups them next to latency_*
        metrics = {
            f"accuracy_{r['metric']}": r["value"],
            "accuracy_drop": r["drop"],
            "accuracy_worst_class_drop": r["worst_class_drop"],
            "latency_p50_ms": r["latency_p50_ms"],
            "latency_p90_ms": r["latency_p90_ms"],
            "latency_p99_ms": r["latency_p99_ms"],
            "latency_cv": r["latency_cv"],
            "throughput": r["throughput"],
            "size_mb": r["size_mb"],
            "build_seconds": r["build_seconds"],
            "accepted": float(r["accepted"]),
        }
        metrics.update({f"accuracy_{k}": v for k, v in r["details"].items() if isinstance(v, (int, float))})
        for key in (
            "first_inference_ms",
            "load_ms",
            "top1_agreement",
            "parity_max_abs",
            "parity_vs_torch_max_abs",
            "gflops",
            "efficiency",
            "efficiency_nominal",
            "trtexec_median_ms",
        ):
            if r.get(key) is not None:
                metrics[key] = r[key]
        if r.get("efficiency_error"):  # achieved above a peak: no efficiency metric, the reason as a tag
            mlflow.set_tag("roofline_error", r["efficiency_error"][:4000])
        for part, ms in (r.get("end_to_end") or {}).items():  # batch 1 image to result: total_ms, preprocess_ms, ...
            if part.endswith("_ms") and ms is not None:
                metrics[f"end_to_end_{part}"] = ms
        if r.get("worst_image_drop") is not None:  # binary segmentation, beside the worst class drop
            metrics["accuracy_worst_image_drop"] = r["worst_image_drop"]
        if r["speedup_vs_torch"] is not None:
            metrics["speedup_vs_torch"] = r["speedup_vs_torch"]
        if r.get("kept_fp32") is not None:
            metrics["kept_fp32_layers"] = r["kept_fp32"]
            mlflow.set_tag("kept_fp32", ",".join(r["kept_fp32_layers"]) or "(none)")
        if r.get("int8_fallbacks") is not None:  # implicit-INT8 TensorRT: layers that silently left INT8
            metrics["int8_fallback_layers"] = r["int8_fallbacks"]
            names = ",".join(r.get("int8_fallback_layers") or r.get("int8_fallback_tensors") or []) or "(none)"
            mlflow.set_tag("int8_fallbacks", names if len(names) <= 4000 else names[:3999] + "…")  # MLflow: 5000 max
        if r.get("emulated"):  # built without native compute for its precision (bench.emulated: measure)
            mlflow.set_tag("emulated", r["emulated"][:4999])
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        mlflow.log_artifacts(str(LAYOUT.build_dir(r["target"], r["precision"])), "build")
        for f in LAYOUT.sensitivity(r["precision"]):
            if f.is_file():
                mlflow.log_artifact(str(f), "sensitivity")
        # one folder per stage record: the three files share one name (<precision>.json)
        for kind, f in (
            ("build", LAYOUT.build_metrics(r["target"], r["precision"])),
            ("benchmark", LAYOUT.benchmark_metrics(r["target"], r["precision"])),
            ("evaluate", LAYOUT.evaluate_metrics(r["target"], r["precision"])),
        ):
            mlflow.log_artifact(str(f), f"metrics/{kind}")
        if LAYOUT.fingerprint(r["target"]).is_file():  # what the device was when it built this
            mlflow.log_artifact(str(LAYOUT.fingerprint(r["target"])), "device")
        return child.info.run_id
