"""End to end: the Prefect flows over the bundled example's real DVC pipeline, in a fresh copy
of the repository. The pipeline flow runs the example DAG; then the served watcher
(`edgeforge watch --once`, one look of its schedule) picks up checkpoints dropped into the watched
folder, runs each once as a DVC experiment, records a corrupt one as failed without
blocking the others, ignores the same bytes under another name, and runs nothing again after
a restart."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from flows.watch import exp_name
from tasks.io import sha256_file
from tests.e2e import FAST, fresh_repo, sh

pytestmark = pytest.mark.e2e
OVERRIDES = FAST + [
    "build.targets=[local]",
    "build.precisions=[fp32,fp16]",
    "prepare=none",
    "model.checkpoint=checkpoints/seed0.pt",
]
BIN = Path(sys.executable).parent


def checkpoint(path: Path, seed: int, age_s: float = 60) -> Path:
    import torch

    from examples.mnist import MnistCNN

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(MnistCNN().state_dict(), path)
    os.utime(path, (time.time() - age_s, time.time() - age_s))  # settled: not still being copied
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = fresh_repo(tmp_path_factory.mktemp("flows") / "repo", OVERRIDES)
    checkpoint(root / "checkpoints/seed0.pt", 0)
    # the watcher's runs use the same fast settings (watch.overrides, as a user would set them)
    watch = yaml.safe_load((root / "conf/watch/default.yaml").read_text())
    watch.update(overrides=[o for o in OVERRIDES if not o.startswith("model.checkpoint")], interval_s=3)
    (root / "conf/watch/default.yaml").write_text(yaml.safe_dump(watch))
    sh(["git", "commit", "-qam", "watch settings"], root)
    return root


def parent_runs(root: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("edgeforge")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in runs if r.data.tags.get("edgeforge.kind") == "pipeline"]


def test_pipeline_flow_runs_the_example_dag(repo, prefect):
    from flows.pipeline import pipeline

    summary = pipeline(root=str(repo), retry_delay_s=0.1)
    assert sorted(summary["ran"]) == sorted(
        [
            "prepare",
            "checkpoint",
            "export",
            "parity",
            "quantize",
            "probe@local",
            "build@local",
            "measure@local",
            "report",
        ]
    )
    assert not summary["failed"]
    status = sh([str(BIN / "dvc"), "status"], repo).stdout  # DVC recorded every stage
    assert "changed" not in status
    report = json.loads((repo / "artifacts/report/summary.json").read_text())
    assert [r["precision"] for r in report["rows"]] == ["fp32", "fp16"]
    assert (repo / "artifacts/report/report.html").is_file()
    # cached: DVC decides, nothing runs (the flow asked the device first: unchanged)
    assert pipeline(root=str(repo))["ran"] == []


def _wait(predicate, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the watcher exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def test_watcher_runs_each_new_checkpoint_once(repo, tmp_path):
    """Each `edgeforge watch --once` is one look of the served deployment's schedule, in a new
    process (so every look after the first is also a restart)."""
    state_path = repo / ".edgeforge/watch/state.json"
    incoming = repo / "checkpoints/incoming"
    incoming.mkdir(parents=True)
    (incoming / "broken.pt").write_bytes(b"not a checkpoint")
    os.utime(incoming / "broken.pt", (time.time() - 300, time.time() - 300))  # the oldest: processed first
    checkpoint(incoming / "a.pt", 1, age_s=200)
    checkpoint(incoming / "b.pt", 2, age_s=100)
    before = len(parent_runs(repo))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(tmp_path / "prefect")}
    for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(k, None)
    first = subprocess.run(
        [str(BIN / "edgeforge"), "watch", "--once"], cwd=repo, env=env, capture_output=True, text=True, timeout=1200
    )
    assert first.returncode == 1, first.stderr[-3000:]  # one checkpoint failed: reported in the exit code
    outcomes = [ln.split()[0] for ln in first.stdout.splitlines() if ln.startswith(("failed ", "done "))]
    assert outcomes == ["failed", "done", "done"], first.stdout
    state = json.loads(state_path.read_text())
    by_path = {e["path"]: e for e in state.values()}
    assert by_path["checkpoints/incoming/broken.pt"]["status"] == "failed"
    assert "export" in by_path["checkpoints/incoming/broken.pt"]["error"]
    names = {by_path[f"checkpoints/incoming/{n}.pt"]["exp_name"] for n in ("a", "b")}
    exps = sh([str(BIN / "dvc"), "exp", "list"], repo).stdout
    assert all(n in exps for n in names), exps
    runs = parent_runs(repo)
    assert len(runs) == before + 2
    assert names == {r.data.tags["dvc_experiment"] for r in runs[:2]}  # newest first
    # the same bytes under another name, looked at by a new process: nothing runs again
    shutil.copy2(incoming / "a.pt", incoming / "a-again.pt")
    os.utime(incoming / "a-again.pt", (time.time() - 60, time.time() - 60))
    again = subprocess.run(
        [str(BIN / "edgeforge"), "watch", "--once"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
    assert not [ln for ln in again.stdout.splitlines() if ln.startswith(("failed ", "done "))], again.stdout
    assert json.loads(state_path.read_text()) == state and len(parent_runs(repo)) == before + 2


def test_served_watcher_runs_a_dropped_checkpoint_on_its_schedule(repo, tmp_path):
    """`edgeforge watch` as a user leaves it running: it starts its own Prefect server (the temporary
    one has no scheduler), serves the deployment on a 5 s interval, and a checkpoint dropped into
    the folder runs with no other action. SIGTERM (a service manager's stop) stops the watcher and
    the server it started."""
    state_path = repo / ".edgeforge/watch/state.json"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PYTHONUNBUFFERED": "1",
    }
    for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(k, None)
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "edgeforge"), "watch", "--interval", "5"],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: "is being served" in log.read_text(), 180, "the deployment to be served", proc, log)
        url = re.search(r"started a Prefect server for the schedule at (\S+) ", log.read_text()).group(1)
        dropped = checkpoint(repo / "checkpoints/incoming/c.pt", 3, age_s=0)  # a fresh file: settles first
        sha = sha256_file(dropped)

        def ran() -> bool:
            entry = json.loads(state_path.read_text()).get(sha, {}) if state_path.is_file() else {}
            assert entry.get("status") != "failed", entry
            return entry.get("status") == "done"

        _wait(ran, 900, "the scheduled watcher to run the dropped checkpoint", proc, log)
        runs = _api(url, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
        assert any("auto-scheduled" in r["tags"] for r in runs), runs  # created by the server's scheduler
        assert exp_name(sha) in sh([str(BIN / "dvc"), "exp", "list"], repo).stdout
        # in MLflow: a pipeline run for that experiment, a child run per precision, the report
        from mlflow.tracking import MlflowClient

        parent = next(r for r in parent_runs(repo) if r.data.tags.get("dvc_experiment") == exp_name(sha))
        client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(c.data.params["precision"] for c in children) == ["fp16", "fp32"]
        assert "report/report.html" in [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]  # Prefect's runner exits cleanly on SIGTERM
    with pytest.raises(OSError):  # the Prefect server it started is stopped with it
        urllib.request.urlopen(f"{url}/api/health", timeout=2)


def _api(url: str, path: str, body: dict) -> list:
    req = urllib.request.Request(
        f"{url}/api{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_watcher_runs_a_new_registry_version(repo, tmp_path):
    """A checkpoint registered as a version of `watch.registry_model` in the workspace's MLflow
    runs like a dropped one: as a DVC experiment, with the registry named as its source."""
    from mlflow.tracking import MlflowClient

    conf = repo / "conf/watch/default.yaml"
    saved = conf.read_text()
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    ckpt = checkpoint(tmp_path / "model.pt", 5)
    exp = client.create_experiment("checkpoints", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run = client.create_run(exp)
    client.log_artifact(run.info.run_id, str(ckpt), "checkpoint")
    client.create_registered_model("mnist-cnn")
    version = client.create_model_version(
        "mnist-cnn", f"runs:/{run.info.run_id}/checkpoint", run_id=run.info.run_id
    ).version
    conf.write_text(yaml.safe_dump({**yaml.safe_load(saved), "registry_model": "mnist-cnn"}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(tmp_path / "prefect")}
    for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(k, None)
    try:
        out = subprocess.run(
            [str(BIN / "edgeforge"), "watch", "--once"], cwd=repo, env=env, capture_output=True, text=True, timeout=900
        )
    finally:
        conf.write_text(saved)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    sha = sha256_file(ckpt)
    entry = json.loads((repo / ".edgeforge/watch/state.json").read_text())[sha]
    assert entry["status"] == "done" and entry["source"] == f"registry:mnist-cnn/{version}", entry
    assert entry["path"] == f".edgeforge/watch/registry/mnist-cnn/{version}/model.pt"
    assert exp_name(sha) in sh([str(BIN / "dvc"), "exp", "list"], repo).stdout
