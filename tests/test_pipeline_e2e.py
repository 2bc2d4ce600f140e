"""End to end: the real `dvc repro` of the bundled example in a fresh copy of the repository,
then the cached re-run, MLflow's runs, `dvc metrics show`, and `dvc exp run -S` behaviour,
including the per-precision reuse of the device stages (a precision added or removed).

One copy serves every test in this module (the full pipeline takes about a minute here);
the tests run in file order and build on each other's state.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.layout import LAYOUT
from tests.e2e import FAST, fresh_repo, kept, ran, sh

pytestmark = pytest.mark.e2e
PRECISIONS = ["fp32", "fp16", "int8-minmax", "int8-entropy", "int8-percentile", "int8-mixed"]  # the default build list
TARGETS = ["local", "local_openvino"]  # the default targets: every runtime installed here
KEYS = [f"{t}-{p}" for t in TARGETS for p in PRECISIONS]
# the DAG of the example: host stages, then one probe, build and measure stage per target
STAGES = {
    "prepare",
    "checkpoint",
    "export",
    "parity",
    "quantize",
    *(f"{st}@{t}" for st in ("probe", "build", "measure") for t in TARGETS),
    "report",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh git repository holding the project's files (as a clone would), fast params."""
    return fresh_repo(tmp_path_factory.mktemp("e2e") / "repo", FAST)


def mlflow_runs(repo: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("edgeforge")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_repro_runs_every_stage_and_prints_the_summary(repo):
    r = sh(["dvc", "repro"], repo)
    assert sorted(ran(r.stdout)) == sorted(STAGES)  # the whole DAG, each stage once (12 for the example)
    assert "EdgeForge summary" in r.stdout and "mlflow ui" in r.stdout
    for out in (
        LAYOUT.onnx,
        LAYOUT.build_dir("local", "fp32") / "model.onnx",
        LAYOUT.build_dir("local", "fp16") / "model.onnx",
        LAYOUT.build_dir("local_openvino", "int8-minmax") / "model.xml",
        LAYOUT.reference,
        LAYOUT.summary,
        LAYOUT.evaluate_metrics("local", "fp16"),
    ):
        assert (repo / out).is_file(), out
    summary = json.loads((repo / "artifacts/report/summary.json").read_text())
    assert [row["key"] for row in summary["rows"]] == KEYS
    # both runtimes compete on this machine: one winner for the device, and the terminal says why
    (win,) = summary["winners"].values()
    assert list(summary["winners"]) == ["local"] and win["key"] in KEYS and win["key"] in win["why"]
    assert f"winner on local: {win['why']}" in " ".join(r.stdout.split())
    assert (
        summary["reference"]["metric"] == "top1" and summary["reference"]["value"] >= 95.0
    )  # the bundled example's promise
    # FP32 and FP16 are accepted everywhere; whether an INT8 build is depends on the CPU's INT8 kernels
    # (VNNI or not), so an INT8 row is either accepted within eval.max_drop or rejected with its reason
    by = {row["precision"]: row for row in summary["rows"] if row["target"] == "local"}
    assert by["fp32"]["accepted"] and by["fp16"]["accepted"]
    for row in summary["rows"]:
        assert (row["accepted"] and row["drop"] <= 1.0 and not row["reason"]) or (not row["accepted"] and row["reason"])
    mixed = by["int8-mixed"]
    assert mixed["kept_fp32"] is not None and mixed["calibrator"] == "percentile"
    assert (repo / "artifacts/quantize/int8-mixed/sensitivity.png").is_file()
    for row in summary["rows"]:  # three-way parity, single-stream percentiles and offline throughput per build
        assert row["parity_max_abs"] is not None and (repo / f"artifacts/report/parity/{row['key']}.png").is_file()
        bench = json.loads((repo / LAYOUT.benchmark_metrics(row["target"], row["precision"])).read_text())
        assert set(bench["single_stream"]) >= {"p50_ms", "p90_ms", "p99_ms"} and set(bench["offline"]) == {"b8"}
        assert bench["roofline"]["flops_per_sample"] > 0


def test_lock_records_every_stage(repo):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == STAGES
    assert lock["export"]["params"]["params.yaml"]["export"]["opset"] == 18
    assert any(o["path"] == "artifacts/export/model.onnx" and o.get("md5") for o in lock["export"]["outs"])


def test_mlflow_has_a_parent_and_a_child_per_precision(repo):
    runs = mlflow_runs(repo)
    parents = [r for r in runs if r.data.tags.get("edgeforge.kind") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1
    assert sorted(c.data.params["precision"] for c in children) == sorted(PRECISIONS * len(TARGETS))
    for c in children:
        assert {
            "accuracy_top1",
            "accuracy_top5",
            "accuracy_drop",
            "latency_p99_ms",
            "throughput",
            "parity_max_abs",
        } <= set(c.data.metrics)
        assert len(c.data.tags["artifact_sha256"]) == 64
    mixed = next(c for c in children if c.data.tags["edgeforge.key"] == "local-int8-mixed")
    assert "kept_fp32_layers" in mixed.data.metrics and mixed.data.params["calibrator"] == "percentile"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert {a.path for a in client.list_artifacts(mixed.info.run_id, "sensitivity")} == {
        "sensitivity/sensitivity.png",
        "sensitivity/sensitivity.json",
    }


def test_metrics_show_reports_the_same_numbers(repo):
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo).stdout)
    data = shown[""]["data"][LAYOUT.evaluate_metrics("local", "fp32").as_posix()]["data"]
    summary = json.loads((repo / "artifacts/report/summary.json").read_text())
    assert data["value"] == pytest.approx(summary["rows"][0]["value"]) and data["metric"] == "top1"


def test_second_repro_runs_nothing_and_logs_nothing(repo):
    before = len(mlflow_runs(repo))
    r = sh(["dvc", "repro"], repo)
    # nothing changed: no stage runs (the checkpoint file is a dep of export and parity, not an
    # always-changed check), and the devices are not asked (probe --refresh does that)
    assert ran(r.stdout) == []
    assert len(mlflow_runs(repo)) == before


def test_probe_refresh_rewrites_only_a_fingerprint_the_device_no_longer_matches(repo):
    """A recorded fingerprint the device no longer matches (edited here, as if recorded before a
    toolkit upgrade) is rewritten by `probe --refresh` from what the device says now; a matching
    one is left untouched. A rewritten fingerprint is a modified DVC output: `dvc repro` re-runs its
    probe and whatever depends on a changed content (here the content is back to the lock's)."""
    path, other = repo / "artifacts/probe/local_openvino.json", repo / "artifacts/probe/local.json"
    fp, mtime = json.loads(path.read_text()), other.stat().st_mtime_ns
    path.write_text(json.dumps({**fp, "openvino": "0.0.0", "fingerprint_sha256": "0" * 64}))
    r = sh(["python", "-m", "tasks.probe", "--refresh"], repo)
    assert "probe@local: unchanged" in r.stderr + r.stdout
    assert "probe@local_openvino: the device changed (000000000000 -> " in r.stderr + r.stdout
    assert json.loads(path.read_text()) == fp and other.stat().st_mtime_ns == mtime
    assert ran(sh(["dvc", "repro"], repo).stdout) == []


def test_exp_run_with_too_tight_parity_fails_clearly_and_leaves_no_parity_outputs(repo):
    r = sh(["dvc", "exp", "run", "-S", "parity.atol=1e-9"], repo, check=False)
    out = r.stdout + r.stderr
    assert "edgeforge parity: error: parity failed for output 'logits'" in out
    assert "worst element [" in out and "torch=" in out and "onnx=" in out
    assert "Running stage 'build@" not in out
    assert not (repo / "artifacts/parity/reference.npz").exists()
    assert not (repo / "metrics/parity.json").exists()
    sh(["git", "checkout", "params.yaml"], repo)


def test_exp_run_override_reruns_only_affected_stages(repo):
    """A params change re-runs the stages that declare that section and what depends on their
    outputs, nothing else (eval.max_drop: the verdicts and the report; no export, quantize or build)."""
    # `dvc exp run -S` composes params.yaml from conf/ and its own overrides only: FAST goes along
    r = sh(["dvc", "exp", "run", *(a for o in FAST for a in ("-S", o)), "-S", "eval.max_drop=2.0"], repo)
    assert "Stage 'prepare' didn't change, skipping" in r.stdout
    assert set(ran(r.stdout)) == {"report", *(f"measure@{t}" for t in TARGETS)}
    assert yaml.safe_load((repo / "params.yaml").read_text())["eval"]["max_drop"] == 2.0
    assert json.loads((repo / LAYOUT.evaluate_metrics("local", "fp32")).read_text())["max_drop"] == 2.0


def records(precision: str) -> list[Path]:
    """One precision's records: its quantize record, and each target's build, benchmark, evaluate."""
    per_target = (LAYOUT.build_metrics, LAYOUT.benchmark_metrics, LAYOUT.evaluate_metrics)
    return [LAYOUT.quantize_metrics(precision), *(f(t, precision) for t in TARGETS for f in per_target)]


def test_exp_run_adding_a_precision_makes_only_it_and_removing_one_prunes_it(repo):
    """build.precisions changed (bf16 added, int8-percentile removed): quantize and every build@ and
    measure@ stage re-run (the list is among their params), but each keeps the precisions whose
    inputs did not change (tasks/reuse.py), makes only bf16, and removes int8-percentile's
    outputs. The other settings are the previous test's (FAST, eval.max_drop=2.0)."""
    old = [p for p in PRECISIONS if p != "int8-percentile"]
    before = {path: (repo / path).read_bytes() for p in old for path in records(p)}
    new = [*old, "bf16"]
    overrides = [*FAST, "eval.max_drop=2.0", f"build.precisions=[{','.join(new)}]"]
    r = sh(["dvc", "exp", "run", *(a for o in overrides for a in ("-S", o))], repo)
    assert set(ran(r.stdout)) == STAGES - {
        "prepare",
        "checkpoint",
        "export",
        "parity",
        *(f"probe@{t}" for t in TARGETS),
    }
    assert kept(r.stdout + r.stderr) == {
        *(f"quantize@{p}" for p in old),
        *(f"{st}@{t}-{p}" for st in ("build", "benchmark", "evaluate") for t in TARGETS for p in old),
    }
    assert {path: (repo / path).read_bytes() for path in before} == before  # kept byte for byte
    for path in records("bf16"):  # made now, with the digest of its inputs
        assert "inputs_sha256" in json.loads((repo / path).read_text()), path
    gone = [*records("int8-percentile"), LAYOUT.quantize_dir("int8-percentile")]
    gone += [LAYOUT.build_dir(t, "int8-percentile") for t in TARGETS]
    assert [p for p in gone if (repo / p).exists()] == []
    summary = json.loads((repo / LAYOUT.summary).read_text())
    assert [(row["target"], row["precision"]) for row in summary["rows"]] == [(t, p) for t in TARGETS for p in new]
