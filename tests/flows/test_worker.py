"""``edgeforge worker`` against a real ``prefect server start`` (its triggers service included), on
tiny real DVC repositories standing in for working copies on separate hosts: a worker runs the
pool's flow runs in its own working copy, two workers take one run each and still never use one
device at once, the watcher submits new checkpoints to the pool and records how their runs ended,
and a worker whose host dies leaves its run Crashed, the next run redoing only the killed stage."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
import yaml

from flows.checkpoint_ref import CheckpointError, resolve
from flows.pool import submit
from tasks.io import sha256_file
from tests.flows.tiny import make, plan, runs, with_conf
from tests.flows.workers import Worker, api, server, wait_final, wait_state

# every worker here: the last one started sets the automation's --crash-after for all runs
OPTIONS = dict(heartbeat=30, crash_after=32)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with server(tmp_path_factory.mktemp("prefect") / "server.log") as u:
        yield u


@pytest.fixture(scope="module")
def dead(url, tmp_path_factory):
    """A run whose host dies mid-stage: a worker killed (with everything under it) while the run's
    report stage runs, as the module starts. Its heartbeats stop then, and Prefect's heartbeat is
    30 s at least: the other tests run meanwhile, the last one checks what came of it."""
    from flows.watch import watch

    base = tmp_path_factory.mktemp("dead")
    watcher, root = with_conf(make(base / "watcher")), with_conf(make(base / "host"))
    checkpoint = dropped(watcher / "checkpoints/incoming/a.pt")
    plan(root, "report", sleep=120)
    with api(url):
        worker = Worker(root, url, pool="dies", **OPTIONS).start()
        try:
            worker.wait_ready()
            [submitted] = watch(root=str(watcher), pool="dies")
            deadline = time.time() + 120
            # report started: every build is done and has given its device slot back
            while not list(root.glob(".edgeforge/logs/*/report.log")):
                assert time.time() < deadline, worker.output()[-2000:]
                time.sleep(0.2)
            time.sleep(1.0)
            worker.kill()  # the worker, its flow run and the stage's processes: the host died
        finally:
            worker.stop()
    return SimpleNamespace(watcher=watcher, root=root, checkpoint=checkpoint, flow_run_id=submitted["flow_run_id"])


def dropped(path, data: bytes = b"weights"):
    """A checkpoint copied into the watched folder a minute ago (settled: not being written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (time.time() - 60, time.time() - 60))
    return path


def test_worker_refuses_to_start_without_a_server_or_outside_a_working_copy(tmp_path, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cli import main

    for var in ("PREFECT_API_URL", "PREFECT_LOGGING_LEVEL", "PREFECT_SERVER_ANALYTICS_ENABLED"):
        monkeypatch.setenv(var, "")  # restored after the test: main() sets the last two
        monkeypatch.delenv(var)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # no profile naming a server either
        assert main(["-C", str(make(tmp_path / "wc")), "worker"]) == 2
    assert capsys.readouterr().err == (
        "edgeforge worker: error: set PREFECT_API_URL to your Prefect server's API (prefect server start "
        "on the server host), e.g. PREFECT_API_URL=http://server:4200/api\n"
    )
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert main(["-C", str(tmp_path / "empty"), "worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeforge worker: error: ") and err.count("\n") == 1
    assert "is not a working copy of the project (no dvc.yaml and .dvc/ there)" in err


@pytest.mark.usefixtures("dead")  # first: the dead run's heartbeats are missed while this runs
def test_the_watchers_new_checkpoints_run_on_two_workers_one_each_never_on_one_device_at_once(url, tmp_path):
    from flows.watch import State, watch

    watcher = with_conf(make(tmp_path / "watcher"))
    copies = [with_conf(make(tmp_path / f"host{i}")) for i in (1, 2)]
    for root in copies:  # dev_a and dev_a2 are one device (10.9.0.1) in both copies
        for t in ("dev_a", "dev_a2"):
            plan(root, f"build@{t}", sleep=0.5)
    incoming = watcher / "checkpoints/incoming"  # the same path on the workers: shared storage
    for name in ("a.pt", "b.pt"):
        dropped(incoming / name, name.encode())
    w1, w2 = (Worker(root, url, pool="two", **OPTIONS) for root in copies)
    with w1, w2, api(url):
        w1.wait_ready()
        w2.wait_ready()
        submitted = watch(root=str(watcher), pool="two")
        assert [s["status"] for s in submitted] == ["submitted", "submitted"]
        assert [wait_final(s["flow_run_id"], url) for s in submitted] == ["COMPLETED", "COMPLETED"]
        assert watch(root=str(watcher), pool="two") == []  # seen: not submitted again; the look records the end
    state = State(watcher / ".edgeforge/watch/state.json").data
    assert sorted((e["path"], e["status"]) for e in state.values()) == [
        ("checkpoints/incoming/a.pt", "done"),
        ("checkpoints/incoming/b.pt", "done"),
    ]
    # one run each, in its own working copy, with the checkpoint it was given
    checkpoints = {yaml.safe_load((root / "params.yaml").read_text())["model"]["checkpoint"] for root in copies}
    assert checkpoints == {str(incoming / "a.pt"), str(incoming / "b.pt")}
    for root in copies:
        assert sorted(r["stage"] for r in runs(root)) == sorted(
            ["prepare", "build@dev_a", "build@dev_b", "build@dev_a2", "report"]
        )
    device = sorted(
        (r["start"], r["end"]) for root in copies for r in runs(root) if r["stage"] in ("build@dev_a", "build@dev_a2")
    )
    assert len(device) == 4 and all(b[0] >= a[1] for a, b in zip(device, device[1:])), device


def test_submitting_to_a_pool_no_worker_registered_says_what_to_start(url, tmp_path):
    from flows.pipeline import PipelineError
    from flows.watch import watch

    watcher = with_conf(make(tmp_path / "watcher"))
    dropped(watcher / "checkpoints/incoming/a.pt")
    with api(url), pytest.raises(PipelineError, match=r"start `edgeforge worker --pool nobody` on a worker host"):
        watch(root=str(watcher), pool="nobody")


def test_a_checkpoint_is_refused_when_its_bytes_are_not_the_submitted_ones(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"weights")
    assert resolve(tmp_path, str(tmp_path / "a.pt"), sha256_file(tmp_path / "a.pt")) == "a.pt"
    with pytest.raises(CheckpointError, match="its sha256 is .* the run was submitted for"):
        resolve(tmp_path, "a.pt", "0" * 64)
    with pytest.raises(CheckpointError, match="storage every worker mounts"):
        resolve(tmp_path, "/nowhere/b.pt", None)


def test_a_dead_workers_run_ends_crashed_and_the_next_run_redoes_only_the_killed_stage(url, dead):
    from flows.watch import State, watch

    plan(dead.root, "report", sleep=0)
    done = len(runs(dead.root))
    with api(url):
        # the working copy is free at once (its locks died with the processes): a new worker takes a
        # new run while the dead one may still show Running, until its heartbeats are missed
        with Worker(dead.root, url, pool="dies", name="again", **OPTIONS) as again:
            again.wait_ready()
            assert wait_final(submit("dies", {"root": "."}), url) == "COMPLETED"
        assert [r["stage"] for r in runs(dead.root)[done:]] == ["report"]
        state = wait_state(dead.flow_run_id, url, lambda s: s.is_final(), timeout_s=90)
        assert state.type.value == "CRASHED" and "no heartbeat for 32 s" in state.message
        assert watch(root=str(dead.watcher), pool="dies") == []  # the look records how the run ended
    entry = State(dead.watcher / ".edgeforge/watch/state.json").data[sha256_file(dead.checkpoint)]
    assert entry["status"] == "crashed" and "no heartbeat for 32 s" in entry["error"]
