"""Stage report: the whole pipeline's main() functions in-process, then the summary files and the
MLflow runs (sqlite file under tmp_path) they leave; plus tracking's secret filter and URI."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import benchmark, evaluate, export, parity, quantize, report
from tasks.config import Config
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.records import built_artifact
from tasks.tracking.runs import flatten
from tasks.tracking.uri import tracking_uri
from tests.conftest import ROOT, build_main

PRECISIONS = ("fp32", "fp16", "int8-minmax")


@pytest.fixture
def pipeline(workdir, params, model_file, prepared, monkeypatch, capsys):
    """Every stage after prepare, run through its entry point like `dvc repro` would; returns
    the project folder and what the report printed."""
    for k in ("MLFLOW_TRACKING_URI", "EDGEFORGE_EXP_NAME", "DVC_EXP_NAME"):  # the parent run's name holds the last two
        monkeypatch.delenv(k, raising=False)
    export.main([])
    parity.main([])
    for p in PRECISIONS:
        argv = ["--target", "local", "--precision", p]
        quantize.main(["--precision", p])
        build_main(argv)
        benchmark.main(argv)
        evaluate.main(argv)
    capsys.readouterr()
    report.main([])
    return workdir, capsys.readouterr().out


def test_pipeline_report_and_mlflow_runs(pipeline, cfg, model_file, tmp_path_factory):
    from mlflow import MlflowClient

    pipeline, printed = pipeline
    assert "EdgeForge summary" in printed
    assert "fp32" in printed and "fp16" in printed and "accepted" in printed
    assert "MLflow: experiment 'edgeforge'" in printed
    assert "then open http://127.0.0.1:5000/#/experiments/" in printed  # a link to the runs table

    # summary files
    out = pipeline / LAYOUT.report_dir
    summary = read_json(out / "summary.json")
    md = (out / "summary.md").read_text()
    assert [(r["target"], r["precision"]) for r in summary["rows"]] == [("local", p) for p in PRECISIONS]
    assert "| target | precision |" in md
    assert md.count("| local |") == len(PRECISIONS)
    assert summary["mlflow"]["tracking_uri"] == "sqlite:///mlflow.db"
    # PyTorch eager is measured once (by the FP32 benchmark); every row's speedup divides that figure
    torch_b1 = read_json(LAYOUT.benchmark_metrics("local", "fp32"))["torch"]["b1"]["p50_ms"]
    assert "torch" not in read_json(LAYOUT.benchmark_metrics("local", "fp16"))
    for r in summary["rows"]:
        assert r["speedup_vs_torch"] == pytest.approx(torch_b1 / r["latency_p50_ms"])
    # INT8 rows carry quantize.json's residual-Add count (the example CNN has none)
    assert {r["precision"]: r["residual_adds"] for r in summary["rows"]} == {
        "fp32": None,
        "fp16": None,
        "int8-minmax": 0,
    }
    assert (pipeline / "mlflow.db").is_file()

    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    exp = client.get_experiment_by_name(cfg.report.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]

    # one parent run
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_id == summary["mlflow"]["parent_run_id"]
    assert parent.info.run_name == f"mnist_cnn · workspace · {sha256_file(model_file)[:8]}"
    assert parent.data.tags["checkpoint_sha256"] == sha256_file(model_file)
    assert parent.data.tags["git_commit"]  # "unknown" outside a git checkout
    assert parent.data.params == flatten(dataclasses.asdict(cfg))
    assert parent.data.params["bench.offline_batch_sizes"] == "[4]"
    assert parent.data.params["model.checkpoint"] == "model.pt"
    assert parent.data.params["target.local.runtime"] == "onnxruntime"
    assert parent.data.params["data.eval.limit"] == "96"
    assert parent.data.metrics["reference_accuracy_top1"] == pytest.approx(summary["reference"]["value"])

    # one child run per target x precision
    assert len(children) == len(PRECISIONS)
    by_precision = {r.data.params["precision"]: r for r in children}
    assert set(by_precision) == set(PRECISIONS)
    for p, run in by_precision.items():
        key = f"local-{p}"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"local · {p}" and run.data.tags["edgeforge.key"] == key
        assert run.data.params["target"] == "local"
        assert run.data.params["runtime"] == "onnxruntime"
        built = built_artifact(pipeline / LAYOUT.build_dir("local", p))
        assert run.data.tags["artifact_sha256"] == sha256_file(built)
        assert run.data.tags["checkpoint_sha256"] == sha256_file(model_file)
        ev = read_json(pipeline / LAYOUT.evaluate_metrics("local", p))
        bench = read_json(pipeline / LAYOUT.benchmark_metrics("local", p))
        m = run.data.metrics
        assert m["accuracy_top1"] == pytest.approx(ev["value"])
        assert m["accuracy_top5"] == pytest.approx(ev["details"]["top5"])
        assert m["accuracy_drop"] == pytest.approx(ev["drop"])
        assert m["latency_p50_ms"] == pytest.approx(bench["latency"]["b1"]["p50_ms"])
        assert m["latency_p99_ms"] == pytest.approx(bench["latency"]["b1"]["p99_ms"])
        assert m["first_inference_ms"] == pytest.approx(bench["cold"]["first_inference_ms"])
        assert m["throughput"] == pytest.approx(max(v["throughput"] for v in bench["offline"].values()))
        # the three-way parity of every build: its judged leg, and its histograms as a picture
        assert m["parity_max_abs"] == pytest.approx(ev["parity"]["legs"]["onnx_artifact"]["logits"]["max_abs"])
        assert {a.path for a in client.list_artifacts(run.info.run_id, "parity")} == {f"parity/{key}.png"}
        assert m["gflops"] == pytest.approx(bench["roofline"]["gflops"]["b4"])
        assert m["accepted"] == 1.0
        logged = {a.path for a in client.list_artifacts(run.info.run_id, "build")}
        assert {"build/model.onnx", "build/build.json"} <= logged
        # every stage record of the build, each as the stage wrote it (none overwrites another)
        for kind in ("build", "benchmark", "evaluate"):
            path = f"metrics/{kind}/{p}.json"
            assert {a.path for a in client.list_artifacts(run.info.run_id, f"metrics/{kind}")} == {path}
            got = client.download_artifacts(run.info.run_id, path, str(tmp_path_factory.mktemp("logged")))
            assert Path(got).read_bytes() == (pipeline / "metrics" / kind / "local" / f"{p}.json").read_bytes()
        # which device built it: the fingerprint's hash as a tag, the fingerprint itself logged
        fp = read_json(pipeline / "artifacts/probe/local.json")
        assert run.data.tags["device_fingerprint_sha256"] == fp["fingerprint_sha256"]
        assert {a.path for a in client.list_artifacts(run.info.run_id, "device")} == {"device/local.json"}

    # --show prints the last summary without logging anything
    r = subprocess.run(
        [sys.executable, "-m", "tasks.report", "--show"],
        cwd=pipeline,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "EdgeForge summary" in r.stdout
    assert "local" in r.stdout and "fp32" in r.stdout and "fp16" in r.stdout
    assert "accepted" in r.stdout
    assert summary["mlflow"]["parent_run_id"] in r.stdout
    assert len(client.search_runs([exp.experiment_id])) == 1 + len(PRECISIONS)


def test_show_without_summary_fails_cleanly(workdir, capsys):
    with pytest.raises(SystemExit) as e:
        report.main(["--show"])
    assert e.value.code == 1
    assert "edgeforge report: error:" in capsys.readouterr().err


def test_flatten_drops_secret_keys_at_any_depth():
    d = {
        "a": 1,
        "password": "hunter2",
        "db": {"host": "h", "Password": "x", "nested": {"api_key": "k", "apiKey": "k", "keep": [1, 2]}},
        "auth": {"token": "t", "user": "me", "client_secret": "s", "credentials": {"x": 1}},
        "API_KEY": "k",
        "passphrase": "p",
    }
    flat = flatten(d)
    assert flat == {"a": "1", "db.host": "h", "db.nested.keep": "[1, 2]", "auth.user": "me"}
    assert not any(v in ("hunter2", "k", "t", "s", "p") for v in flat.values())


def test_flatten_truncates_long_values():
    assert flatten({"x": "y" * 1000})["x"] == "y" * 500


def test_tracking_uri_env_overrides_config(monkeypatch):
    cfg = Config()
    cfg.report.tracking_uri = "sqlite:///from-config.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(cfg) == "sqlite:///from-config.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert tracking_uri(cfg) == "sqlite:///from-env.db"


def test_int8_child_run_names_its_calibrator(pipeline):
    from mlflow.tracking import MlflowClient

    workdir, _ = pipeline
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")  # cwd is the project folder
    runs = client.search_runs([client.get_experiment_by_name("edgeforge").experiment_id])
    calibrators = {r.data.params.get("precision"): r.data.params.get("calibrator") for r in runs}
    assert calibrators["int8-minmax"] == "minmax" and calibrators["fp16"] == "none"
