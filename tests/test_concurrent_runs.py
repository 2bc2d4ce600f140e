"""Two runs in one workspace, with real DVC processes: a second workspace ``dvc exp run`` started
while one is mid-run is refused with EdgeForge's message, before it touches the workspace, and
the first finishes as if alone (it used to crash at its very end: 'NoneType' object is not
subscriptable). A tiny Hydra-enabled project whose first stage waits for a file, so the second
run always lands mid-run; the project's own ``hydra_plugins/`` is the code under test."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import ROOT, env, sh

pytestmark = pytest.mark.e2e

# Each stage records params.yaml's value when it starts and (stage a) after waiting for `go`,
# so a run that rewrote params.yaml under it shows in the outputs.
STEP = r"""
import sys, time, yaml
from pathlib import Path
read = lambda: yaml.safe_load(open("params.yaml"))["step"]["value"]
seen = [read()]
if sys.argv[1] == "a":
    Path("a.started").write_text("")
    t0 = time.time()
    while not Path("go").exists() and time.time() - t0 < 120:
        time.sleep(0.05)
    seen.append(read())
Path(sys.argv[1] + ".txt").write_text(" ".join(map(str, seen)) + "\n")
"""
DVC_YAML = """stages:
  a:
    cmd: python step.py a
    deps: [step.py]
    params: [step]
    outs: [a.txt]
  b:
    cmd: python step.py b
    deps: [a.txt]
    params: [step]
    outs: [b.txt]
"""


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "ws"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "config.yaml").write_text("step:\n  value: 0\n")
    (root / "step.py").write_text(STEP)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / ".gitignore").write_text(".edgeforge/\n/a.started\n/go\n")
    shutil.copytree(ROOT / "hydra_plugins", root / "hydra_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    sh(["git", "init", "-q"], root)
    sh(["git", "config", "user.email", "t@edgeforge.invalid"], root)
    sh(["git", "config", "user.name", "t"], root)
    sh(["dvc", "init", "-q"], root)
    for key, value in (("core.analytics", "false"), ("hydra.enabled", "true")):
        sh(["dvc", "config", key, value], root)
    (root / "params.yaml").write_text("step:\n  value: 0\n")
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "tiny"], root)
    return root


def start_first_run(root: Path) -> subprocess.Popen:
    """`dvc exp run -S step.value=1 -n first`, returned once its stage a is running (waiting for `go`)."""
    proc = subprocess.Popen(
        ["dvc", "exp", "run", "-S", "step.value=1", "-n", "first"],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    t0 = time.time()
    while not (root / "a.started").exists():
        assert proc.poll() is None, f"the first run ended early:\n{proc.communicate()[0]}"
        assert time.time() - t0 < 120, "the first run's stage a did not start"
        time.sleep(0.1)
    return proc


def exp_refs(root: Path) -> list[str]:
    return sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], root).stdout.split()


def test_second_dvc_exp_run_is_refused_and_the_first_survives(project):
    first = start_first_run(project)
    try:
        second = sh(["dvc", "exp", "run", "-S", "step.value=2", "-n", "second"], project, check=False)
        params_after_second = (project / "params.yaml").read_text()
        # queueing is what the message advises: DVC accepts it mid-run (it runs elsewhere, later)
        queued = sh(["dvc", "exp", "run", "--queue", "-S", "step.value=3", "-n", "queued"], project, check=False)
    finally:
        (project / "go").write_text("")
        out = first.communicate(timeout=180)[0]
    # the first run finishes as if alone (it used to crash here, after every stage had succeeded)
    assert first.returncode == 0 and "Ran experiment(s): first" in out, out
    names = [ref.rsplit("/", 1)[-1] for ref in exp_refs(project)]
    assert "first" in names and "second" not in names
    ref = next(r for r in exp_refs(project) if r.endswith("/first"))
    assert sh(["git", "show", f"{ref}:params.yaml"], project).stdout == "step:\n  value: 1\n"
    # every stage of the first run saw its own params.yaml, before and after the second run's attempt
    assert params_after_second == "step:\n  value: 1\n"
    assert (project / "a.txt").read_text() == "1 1\n" and (project / "b.txt").read_text() == "1\n"
    # the second run was refused with EdgeForge's message: who holds the workspace, and how to queue
    err = second.stderr.strip()
    assert second.returncode != 0 and err.startswith("edgeforge: error: another run is using this workspace"), err
    assert "dvc exp run -S step.value=1 -n first" in err and f"(PID {first.pid})" in err
    assert "`dvc exp run --queue <options>`, then `dvc queue start`" in err
    assert "Traceback" not in second.stdout + err
    assert queued.returncode == 0 and "Queued experiment 'queued'" in queued.stdout, queued.stderr
    # the workspace is free again once the first `dvc` process has exited
    (project / "a.started").unlink()
    again = sh(["dvc", "exp", "run", "-S", "step.value=4", "-n", "after"], project)
    assert "Ran experiment(s): after" in again.stdout and (project / "b.txt").read_text() == "4\n"


def test_flow_and_dvc_exp_run_refuse_each_other(project):
    from flows.pipeline import PipelineError, workspace_lock

    with workspace_lock(project):  # what `edgeforge run` holds while it runs
        r = sh(["dvc", "exp", "run", "-S", "step.value=2"], project, check=False)
    assert r.returncode != 0 and r.stderr.startswith("edgeforge: error: another run is using this workspace")
    assert "`edgeforge run`" in r.stderr
    assert (project / "params.yaml").read_text() == "step:\n  value: 0\n" and exp_refs(project) == []
    first = start_first_run(project)
    try:
        busy = r"another EdgeForge pipeline run is using .*dvc exp run -S step\.value=1"
        with pytest.raises(PipelineError, match=busy):
            with workspace_lock(project):
                pass
    finally:
        (project / "go").write_text("")
        out = first.communicate(timeout=180)[0]
    assert first.returncode == 0, out
