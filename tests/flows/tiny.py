"""A tiny real DVC repository for the flow tests: a prepare stage, a build matrix over three
targets (two of them on the same device address) and a report, whose commands are a small
script recording when they ran. Behaviour on demand: ``fail/<stage>`` holds exit codes to use
on successive attempts ("75 0": transient failure, then success); ``sleep/<stage>`` seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import fast_params

STEP = r"""
import json, os, sys, time
from pathlib import Path
name, out = sys.argv[1], Path(sys.argv[2])
t0 = time.time()
log = Path("runs.jsonl")
codes = Path("fail") / name
if codes.is_file():
    seq = codes.read_text().split()
    if seq:
        codes.write_text(" ".join(seq[1:]))
        if int(seq[0]):
            print(f"edgeforge {name}: error: planned failure {seq[0]}", file=sys.stderr)
            with log.open("a") as fh: fh.write(json.dumps({"stage": name, "start": t0, "end": time.time(), "rc": int(seq[0])}) + "\n")
            sys.exit(int(seq[0]))
slp = Path("sleep") / name
time.sleep(float(slp.read_text()) if slp.is_file() else 0.0)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(f"{name} {Path('in.txt').read_text()}")
with log.open("a") as fh: fh.write(json.dumps({"stage": name, "start": t0, "end": time.time(), "rc": 0}) + "\n")
"""

DVC_YAML = {
    "stages": {
        "prepare": {
            "cmd": "python step.py prepare out/prepare.txt",
            "deps": ["in.txt", "step.py"],
            "outs": ["out/prepare.txt"],
        },
        "build": {
            "matrix": {"target": ["dev_a", "dev_b", "dev_a2"]},
            "cmd": "python step.py build@${item.target} out/build-${item.target}.txt",
            "deps": ["out/prepare.txt", "step.py"],
            "params": ["target.${item.target}"],
            "outs": ["out/build-${item.target}.txt"],
        },
        "report": {
            "cmd": "python step.py report out/report.txt",
            "deps": ["out/build-dev_a.txt", "out/build-dev_b.txt", "out/build-dev_a2.txt", "step.py"],
            "outs": ["out/report.txt"],
        },
    }
}


def make(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    params = fast_params()
    ssh = {"transport": "ssh", "runtime": "onnxruntime", "port": 22, "user": "edge"}
    params["target"] = {
        "dev_a": {**ssh, "host": "10.9.0.1"},
        "dev_b": {**ssh, "host": "10.9.0.2"},
        "dev_a2": {**ssh, "host": "10.9.0.1", "runtime": "openvino"},
    }
    params["build"]["targets"] = ["dev_a", "dev_b", "dev_a2"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / "step.py").write_text(STEP)
    (root / "in.txt").write_text("v1\n")
    (root / ".gitignore").write_text("/out/\n/runs.jsonl\n/fail/\n/sleep/\n.edgeforge/\n")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@edgeforge.invalid"],
        ["git", "config", "user.name", "t"],
        [str(Path(sys.executable).parent / "dvc"), "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny"],
    ):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return root


def runs(root: Path) -> list[dict]:
    import json

    path = root / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def plan(root: Path, stage: str, *, fail: str | None = None, sleep: float | None = None) -> None:
    if fail is not None:
        (root / "fail").mkdir(exist_ok=True)
        (root / "fail" / stage).write_text(fail)
    if sleep is not None:
        (root / "sleep").mkdir(exist_ok=True)
        (root / "sleep" / stage).write_text(str(sleep))


def with_conf(root: Path) -> Path:
    """Give the tiny repository a ``conf/`` (its params.yaml as the one Hydra config), so that runs
    with a checkpoint or overrides compose params.yaml from it as in the real project."""
    (root / "conf").mkdir(exist_ok=True)
    (root / "conf" / "config.yaml").write_text((root / "params.yaml").read_text())
    subprocess.run(["git", "add", "conf"], cwd=root, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "conf"], cwd=root, check=True, capture_output=True)
    return root
