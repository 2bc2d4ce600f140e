"""Outgrow one machine, end to end with the real engines on loopback: a Prefect server
(`prefect server start`), two workers (`edgeforge worker`) in two working copies standing in for two
hosts, one MLflow server on a real PostgreSQL database, one DVC remote over SSH (the loopback sshd).

Checkpoint A, processed by worker 1 through the bundled example's real pipeline, is run again by
worker 2: it runs no stage and restores every one from the run-cache worker 1 pushed; the report's MLflow run is in PostgreSQL. (Which worker takes
a run, a killed worker's run ending Crashed and the next run redoing only its stage are tested on a
tiny DVC repository in tests/flows/test_worker.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.pool import submit
from tests.e2e import FAST
from tests.flows import remote
from tests.flows.test_watch_e2e import checkpoint
from tests.flows.workers import Worker, api, server, wait_final
from tests.mlflow_server import backend_store, serve

pytestmark = pytest.mark.e2e
OVERRIDES = FAST + ["build.targets=[local]", "build.precisions=[fp32]", "prepare=none"]


def mlflow_run_ids(store: str) -> set[str]:
    """The run ids in MLflow's PostgreSQL database, read with psycopg (not through MLflow)."""
    import psycopg

    with psycopg.connect(store.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return {row[0] for row in conn.execute("SELECT run_uuid FROM runs")}


def test_a_checkpoint_done_by_one_worker_runs_no_stage_on_another(tmp_path, sshd, monkeypatch):
    monkeypatch.setenv("HOME", str(remote.trust(tmp_path / "home", sshd)))  # the storage host's key
    ckpt = checkpoint(tmp_path / "shared" / "a.pt", seed=1)  # a folder both hosts read (NFS, a bucket mount)
    with backend_store("postgresql", tmp_path) as store, serve(store, tmp_path / "mlflow") as mlflow:
        one, two, _ = remote.two_hosts(tmp_path, sshd, OVERRIDES)
        params = {
            "checkpoint": str(ckpt),
            "overrides": OVERRIDES + [f"report.tracking_uri={mlflow['uri']}"],
            "exp_name": "ckpt-a",
        }
        with server(tmp_path / "prefect.log") as url, api(url):
            with Worker(one, url, pool="team") as w1:
                w1.wait_ready()
                first = submit("team", params)
                assert wait_final(first, url, timeout_s=600) == "COMPLETED", w1.output()[-4000:]
            with Worker(two, url, pool="team") as w2:
                w2.wait_ready()
                again = submit("team", params)
                assert wait_final(again, url, timeout_s=300) == "COMPLETED", w2.output()[-4000:]
            logs_one, logs_two = w1.output(), w2.output()  # each flow run's log, as its worker shows it
        in_postgres = mlflow_run_ids(store)
    assert "pipeline: 9 stage(s) ran, 0 from the run-cache" in logs_one, logs_one[-3000:]
    # worker 2: no stage ran; every one came from worker 1 through the remote
    assert "pipeline: 0 stage(s) ran, 9 from the run-cache" in logs_two, logs_two[-3000:]
    stage_logs = {p.name for p in (two / ".edgeforge" / "logs").rglob("*.log")}
    assert stage_logs == set(), stage_logs
    # both copies hold the same results, and the report's MLflow runs are rows of PostgreSQL
    for rel in ("metrics/evaluate/local/fp32.json", "artifacts/report/summary.json"):
        assert (two / rel).read_bytes() == (one / rel).read_bytes(), rel
    summary = json.loads((two / "artifacts/report/summary.json").read_text())
    assert summary["mlflow"]["parent_run_id"] in in_postgres
    status = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "status"], cwd=two, capture_output=True, text=True, check=True
    )
    assert "up to date" in status.stdout, status.stdout  # every stage recorded in worker 2's dvc.lock
