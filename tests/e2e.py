"""Helpers of the end-to-end tests: a fresh copy of the repository (as a clone would be) and
subprocess calls with the test's interpreter first on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Short benchmarks: behaviour is under test here, not speed. Emulated precisions (fp16 where the CPU
# has no FP16 compute) are built and measured, so that the same rows exist whatever the CPU; the
# skip of bench.emulated's default is tested in tests/tasks/test_bf16.py.
FAST = [
    "bench.min_duration_s=0.05",  # with bench.min_iterations' 20 calls: a figure, not a steady state
    "bench.warmup_s=0.01",
    "bench.offline_batch_sizes=[8]",
    "bench.emulated=measure",
]
# ONNX Runtime only: the tests about a task or a data source need one runtime (the main job's test
# runs the default targets, every runtime installed here)
ONE_TARGET = ["build.targets=[local]"]


def env() -> dict[str, str]:
    """The environment of the commands the tests start: this interpreter's venv first on PATH."""
    e = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    e.pop("MLFLOW_TRACKING_URI", None)
    return e


def sh(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"
        )
    return r


def fresh_repo(dst: Path, overrides: list[str]) -> Path:
    """Copy the project's files (tracked and untracked-not-ignored, no dvc.lock) to ``dst``,
    compose params.yaml with ``overrides`` and commit it all in a new git repository."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("dvc.lock",)):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    sh([sys.executable, "-m", "tasks.config.compose", *overrides], dst)
    sh(["git", "init", "-q"], dst)
    sh(["git", "config", "user.email", "e2e@edgeforge.invalid"], dst)
    sh(["git", "config", "user.name", "EdgeForge e2e"], dst)
    sh(["git", "add", "-A"], dst)
    sh(["git", "commit", "-qm", "fresh clone"], dst)
    return dst


def ran(stdout: str) -> list[str]:
    """Stages `dvc repro` (or `dvc exp run`) ran, from its "Running stage '...'" lines, in order."""
    return re.findall(r"Running stage '([^']+)'", stdout)


def kept(log: str) -> set[str]:
    """Items of a per-target stage logged as kept because their inputs did not change
    (``build@local-fp32: unchanged since it was built: kept``; tasks/reuse.py)."""
    return set(re.findall(r"\] (\S+@\S+): [^\n]*: kept$", log, re.M))
