"""The workspace lock and DVC's repository lock as a stage sees them, with other real processes
holding them (the end-to-end case with two `dvc exp run` is tests/test_concurrent_runs.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import stage
from tasks.workspace import DVC_WORKSPACE_PID, WorkspaceBusy, claim, dvc_exp_pid
from tests.conftest import ROOT


def holder(code: str, cwd: Path) -> subprocess.Popen:
    """A Python process running ``code`` in ``cwd``; returned once it has printed "held"."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_workspace_lock_names_its_holder_and_dies_with_it(tmp_path):
    proc = holder(
        "import time; from pathlib import Path; from tasks.workspace import claim\n"
        "fh = claim(Path('.'), 'edgeforge run'); print('held', flush=True); time.sleep(120)",
        tmp_path,
    )
    try:
        with pytest.raises(WorkspaceBusy, match=rf"`edgeforge run` \(PID {proc.pid}\)"):
            claim(tmp_path, "dvc exp run")
    finally:
        proc.send_signal(signal.SIGKILL)  # not a clean exit: the kernel still drops the lock
        proc.wait()
    claim(tmp_path, "dvc exp run").close()


def test_dvc_record_of_a_live_workspace_experiment_refuses_a_stale_one_does_not(tmp_path):
    record = tmp_path / DVC_WORKSPACE_PID
    record.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record.write_text(json.dumps({"pid": dead.pid}))
    assert dvc_exp_pid(tmp_path) is None
    claim(tmp_path, "edgeforge run").close()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        record.write_text(json.dumps({"pid": live.pid}))
        with pytest.raises(WorkspaceBusy, match=rf"a `dvc exp run` \(PID {live.pid}\)"):
            claim(tmp_path, "edgeforge run")
    finally:
        live.kill()
        live.wait()


def test_a_stage_reads_params_only_when_no_dvc_command_is_swapping_them(workdir, params):
    """What `dvc exp run` (refused, --queue, --temp) does to a running experiment's workspace:
    stash params.yaml, write another, restore it, all under DVC's repository lock."""
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "--no-scm", "-q"], cwd=workdir, check=True)
    good = Path("params.yaml").read_text()
    proc = holder(
        "import time; from pathlib import Path; from dvc.lock import make_lock\n"
        "lock = make_lock('.dvc/tmp/lock', tmp_dir='.dvc/tmp'); lock.lock()\n"
        "p = Path('params.yaml'); p.write_text('not: [a config'); print('held', flush=True)\n"
        f"time.sleep(1.0); p.write_text({good!r}); lock.unlock()",
        workdir,
    )
    try:
        cfg = stage.load(stage.parser("prepare").parse_args([]))  # the swapped file is not YAML
    finally:
        proc.wait()
    assert cfg.model.checkpoint == params["model"]["checkpoint"]
