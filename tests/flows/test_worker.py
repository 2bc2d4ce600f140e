"""``edgeforge worker`` against a real ``prefect server start`` (its triggers service included), on
tiny real DVC repositories standing in for working copies on separate hosts: a worker runs the
pool's flow runs in its own working copy, two workers take one run each and still never use one
device at once, the watcher submits new checkpoints to the pool and records how their runs ended,
and a worker whose host dies leaves its run Crashed, the next run redoing only the killed stage."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from flows.checkpoint_ref import CheckpointError, resolve
from flows.pool import submit
from tasks.io import sha256_file
from tests.flows.tiny import make, plan, runs, with_conf
from tests.flows.workers import BIN, REPO, Worker, api, server, wait_final, wait_state


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with server(tmp_path_factory.mktemp("prefect") / "server.log") as u:
        yield u


def edgeforge(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "edgeforge"), "-C", str(root), "worker"],
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_worker_refuses_to_start_without_a_server_or_outside_a_working_copy(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile naming a server either
    r = edgeforge(make(tmp_path / "wc"), env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        "edgeforge worker: error: set PREFECT_API_URL to your Prefect server's API (prefect server start "
        "on the server host), e.g. PREFECT_API_URL=http://server:4200/api"
    )
    (tmp_path / "empty").mkdir()
    r = edgeforge(tmp_path / "empty", {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "is not a working copy of the project" in r.stderr and "Traceback" not in r.stderr


def test_two_workers_take_one_run_each_in_their_own_copy_and_share_device_slots(url, tmp_path):
    copies = [make(tmp_path / f"host{i}") for i in (1, 2)]
    for root in copies:  # dev_a and dev_a2 are one device (10.9.0.1) in both copies
        for t in ("dev_a", "dev_a2"):
            plan(root, f"build@{t}", sleep=1.0)
    with Worker(copies[0], url, pool="two") as w1, Worker(copies[1], url, pool="two") as w2:
        w1.wait_ready()
        w2.wait_ready()
        with api(url):
            ids = [submit("two", {"root": "."}) for _ in copies]
        assert [wait_final(i, url) for i in ids] == ["COMPLETED", "COMPLETED"]
    for root in copies:  # each copy ran the whole pipeline once: one run each
        assert sorted(r["stage"] for r in runs(root)) == sorted(
            ["prepare", "build@dev_a", "build@dev_b", "build@dev_a2", "report"]
        )
    device = sorted(
        (r["start"], r["end"]) for root in copies for r in runs(root) if r["stage"] in ("build@dev_a", "build@dev_a2")
    )
    assert len(device) == 4 and all(b[0] >= a[1] for a, b in zip(device, device[1:])), device


def test_watcher_submits_new_checkpoints_to_the_pool_and_records_their_end(url, tmp_path):
    from flows.watch import State, watch

    watcher, host = with_conf(make(tmp_path / "watcher")), with_conf(make(tmp_path / "host"))
    ckpt = watcher / "checkpoints/incoming/a.pt"  # the same path on the worker: shared storage
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    os.utime(ckpt, (time.time() - 60, time.time() - 60))
    with Worker(host, url, pool="watched") as worker, api(url):
        worker.wait_ready()
        [found] = watch(root=str(watcher), pool="watched")
        assert found["status"] == "submitted" and found["path"] == "checkpoints/incoming/a.pt"
        assert wait_final(found["flow_run_id"], url) == "COMPLETED"
        assert watch(root=str(watcher), pool="watched") == []  # seen: not submitted again
    params = yaml.safe_load((host / "params.yaml").read_text())
    assert params["model"]["checkpoint"] == str(ckpt)
    entry = State(watcher / ".edgeforge/watch/state.json").data[sha256_file(ckpt)]
    assert entry["status"] == "done" and entry["flow_run_id"] == found["flow_run_id"]


def test_a_checkpoint_is_refused_when_its_bytes_are_not_the_submitted_ones(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"weights")
    assert resolve(tmp_path, str(tmp_path / "a.pt"), sha256_file(tmp_path / "a.pt")) == "a.pt"
    with pytest.raises(CheckpointError, match="its sha256 is .* the run was submitted for"):
        resolve(tmp_path, "a.pt", "0" * 64)
    with pytest.raises(CheckpointError, match="storage every worker mounts"):
        resolve(tmp_path, "/nowhere/b.pt", None)


def test_a_dead_workers_run_ends_crashed_and_the_next_run_redoes_only_the_killed_stage(url, tmp_path):
    root = make(tmp_path / "host")
    plan(root, "report", sleep=120)
    with api(url):
        worker = Worker(root, url, pool="dies", heartbeat=30, crash_after=32).start()
        try:
            worker.wait_ready()
            run_id = submit("dies", {"root": "."})
            wait_state(run_id, url, lambda s: s.is_running())
            while len(runs(root)) < 4:  # prepare and the builds done: report is running
                time.sleep(0.2)
            time.sleep(1.0)
            worker.kill()  # the worker, its flow run and the stage's processes: the host died
        finally:
            worker.stop()
        state = wait_state(run_id, url, lambda s: s.is_final(), timeout_s=90)
        assert state.type.value == "CRASHED" and "no heartbeat for 32 s" in state.message
        plan(root, "report", sleep=0)
        done = len(runs(root))
        with Worker(root, url, pool="dies", name="again", heartbeat=30, crash_after=32) as again:
            again.wait_ready()
            assert wait_final(submit("dies", {"root": "."}), url) == "COMPLETED"
    assert [r["stage"] for r in runs(root)[done:]] == ["report"]
