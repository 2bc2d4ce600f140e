"""Wall time of single stage commands (``python -m tasks.<stage> ...``) run alone, without DVC, for
two versions of the code side by side in one run.

``PROJECT`` is a project where the pipeline has run once (``bench/pipeline_wall.py --runs 0
--keep`` prints its path). For each ``--rev`` (a git revision of this repository, default
``main`` and the working tree ``.``) the project is copied into a temporary directory and that
revision's ``tasks/`` and ``examples/`` replace the copy's. Then every command runs ``--runs``
times, the revisions taking turns (rev A, rev B, rev A, ...), so that a burst of other load hits
both alike. Printed per command and revision: the median wall seconds, the median CPU seconds
(user + system of the command and its children) and the 1-minute load average before the first
run, with the CPU model.

    .venv/bin/python bench/stage_commands.py /tmp/edgeforge-wall-xxxx/repo
    .venv/bin/python bench/stage_commands.py PROJECT --rev main --rev . --runs 3 -c "tasks.report" -c "tasks.prepare"

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CODE = ("tasks", "examples")
COMMANDS = ("tasks.prepare", "tasks.export", "tasks.peak --target local", "tasks.report")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("project", type=Path, help="a project the pipeline has run in (pipeline_wall.py --keep)")
    p.add_argument("--rev", action="append", default=[], help="git revision, '.' = working tree (default: main and .)")
    p.add_argument("--runs", type=int, default=3, help="runs of each command per revision (default 3)")
    p.add_argument(
        "-c", "--command", action="append", default=[], help=f"module and arguments (default: {', '.join(COMMANDS)})"
    )
    args = p.parse_args(argv)
    args.rev = args.rev or ["main", "."]
    args.command = args.command or list(COMMANDS)
    if not (args.project / "dvc.yaml").is_file():
        p.error(f"{args.project}: no dvc.yaml (pass the repo/ folder pipeline_wall.py --keep printed)")
    return args


def checkout(rev: str, project: Path, dst: Path) -> Path:
    """A copy of ``project`` with ``rev``'s code."""
    shutil.copytree(project, dst, symlinks=True)
    for d in CODE:
        shutil.rmtree(dst / d, ignore_errors=True)
    if rev == ".":
        for d in CODE:
            shutil.copytree(ROOT / d, dst / d, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *CODE], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            t.extractall(dst, filter="data")
    return dst


def timed(cmd: str, cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", *shlex.split(cmd)], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"{cmd} in {cwd} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{env_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("EDGEFORGE_NO_TABLE", "1")
    print(f"cpu     : {cpu_model()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="edgeforge-stages-") as td:
        trees = {rev: checkout(rev, args.project.resolve(), Path(td) / f"rev{i}") for i, rev in enumerate(args.rev)}
        width = max(map(len, args.command))
        print(f"{'command':<{width}}  {'rev':<10} {'wall s (median)':>16} {'cpu s':>7}  runs (wall s)  load")
        for cmd in args.command:
            got: dict[str, list[tuple[float, float]]] = {rev: [] for rev in trees}
            load = os.getloadavg()[0]
            for _ in range(args.runs):
                for rev, tree in trees.items():
                    got[rev].append(timed(cmd, tree))
            for rev, runs in got.items():
                walls = [w for w, _ in runs]
                cpu = statistics.median(c for _, c in runs)
                shown = " ".join(f"{w:.2f}" for w in walls)
                print(f"{cmd:<{width}}  {rev:<10} {statistics.median(walls):>16.2f} {cpu:>7.2f}  {shown}  {load:.1f}")


if __name__ == "__main__":
    main()
