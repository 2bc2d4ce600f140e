"""Wall time of the EdgeForge DVC pipeline on the bundled example, from a clean state, and of a
no-op ``dvc repro`` afterwards.

The repository's files (``git ls-files --cached --others --exclude-standard``: tracked files as
they are in the working tree, plus untracked files that are not ignored, so uncommitted work is
included; ``dvc.lock`` is left out, as ``make clean`` does) are copied into a temporary
directory, which becomes a fresh git repository with one commit. There:

(a) ``dvc repro`` is timed from launch to exit: every stage runs (nothing is cached). Per-stage
    durations come from when each ``Running stage '...'`` line appears (a stage's time runs to the
    next stage's start, so it includes DVC's hashing, caching and lock update for that stage).
(b) ``dvc repro`` is then run ``--runs`` more times in the same copy: nothing changed, so these
    measure DVC's own overhead (loading the project, hashing dependencies, checking outputs).
(c) the number of stages run in (a) is printed.

The project's virtualenv ``bin`` comes first on PATH (DVC runs each stage as ``python -m
tasks.<stage>``). Nothing is written into the repository itself; DVC's site cache (its
per-repository index) goes into the temporary directory too. ``--keep`` keeps the copy.

    .venv/bin/python bench/pipeline_wall.py              # about 1.5 min on 2 busy cores
    .venv/bin/python bench/pipeline_wall.py --runs 10 --keep

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNING = re.compile(r"Running stage '([^']+)'")
SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping")
LEFT_OUT = ("dvc.lock",)  # a pipeline result, not a source file: a clean state has none


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=5, help="no-op `dvc repro` runs after the full one (default 5)")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    p.add_argument("--repo", type=Path, default=ROOT, help=f"repository to copy (default {ROOT})")
    p.add_argument(
        "--venv", type=Path, default=None, help="virtualenv whose bin goes first on PATH (default REPO/.venv)"
    )
    p.add_argument(
        "--tmp-dir", type=Path, default=None, help="where to make the temporary copy (default: the system's)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="echo DVC's and the stages' output as it comes")
    p.add_argument(
        "--set",
        "-S",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override composed into the copy's params.yaml before the run, as `dvc exp run -S` "
        "takes it (repeatable), e.g. -S 'build.precisions=[fp32,fp16]'",
    )
    args = p.parse_args(argv)
    args.repo = args.repo.resolve()
    args.venv = (args.venv or args.repo / ".venv").resolve()
    if args.runs < 0:
        p.error("--runs must be >= 0")
    if not (args.venv / "bin" / "dvc").is_file():
        p.error(f"{args.venv / 'bin' / 'dvc'} not found (--venv)")
    return args


def sh(args: list[str], cwd: Path, env: dict | None = None) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout


def snapshot(repo: Path, dst: Path) -> int:
    """Copy the repository's non-ignored files (working-tree contents) into ``dst``; returns how many."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    n = 0
    for rel in sorted(set(filter(None, out.decode().split("\0")))):
        src = repo / rel
        if rel in LEFT_OUT or not (src.is_file() or src.is_symlink()):  # a tracked file deleted from the tree
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel, follow_symlinks=False)
        n += 1
    return n


def clean_env(venv: Path) -> dict:
    env = dict(os.environ)
    for k in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "VIRTUAL_ENV"):
        env.pop(k, None)
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PYTHONUNBUFFERED="1",
        DVC_NO_ANALYTICS="1",
    )
    return env


def repro(dvc: Path, cwd: Path, env: dict, log: Path, verbose: bool) -> tuple[float, int, list[tuple[float, str]]]:
    """Run ``dvc repro``; returns (wall seconds, exit code, [(seconds since launch, line)])."""
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    with (
        open(log, "w") as f,
        subprocess.Popen(
            [str(dvc), "repro"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc,
    ):
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            f.write(line)
            if verbose:
                print(f"    | {line}", end="", flush=True)
        rc = proc.wait()
    return time.perf_counter() - t0, rc, lines


def stage_times(lines: list[tuple[float, str]], wall: float) -> list[tuple[str, float, float]]:
    """[(stage, start s, duration s)]: each stage runs from its 'Running stage' line to the next one (or exit)."""
    starts = [(t, m.group(1)) for t, line in lines if (m := RUNNING.search(line))]
    return [(name, t, (starts[i + 1][0] if i + 1 < len(starts) else wall) - t) for i, (t, name) in enumerate(starts)]


def locked_stages(lock: Path) -> int:
    if not lock.is_file():
        return 0
    try:
        import yaml
    except ImportError:  # not the project's venv: count the lock's stage keys by indentation
        return len(re.findall(r"^  [^\s#][^:]*:\s*$", lock.read_text(), flags=re.M))
    return len((yaml.safe_load(lock.read_text()) or {}).get("stages", {}))


def fail(what: str, rc: int, lines: list[tuple[float, str]], tmp: Path) -> None:
    print(f"\n{what} exited {rc}; its last lines:")
    for _, line in lines[-40:]:
        print(f"    | {line}")
    raise SystemExit(rc or 1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base = (args.tmp_dir or Path(tempfile.gettempdir())).resolve()
    if base == args.repo or args.repo in base.parents:
        raise SystemExit(f"--tmp-dir {base} is inside the repository {args.repo}: choose a directory outside it")
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="edgeforge-wall-", dir=base))
    work, keep = tmp / "repo", args.keep
    dvc, env = args.venv / "bin" / "dvc", clean_env(args.venv)
    try:
        dvc_version = sh([str(dvc), "--version"], tmp, env).strip()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"versions: python {platform.python_version()} ({args.venv}), dvc {dvc_version}, {sh(['git', '--version'], tmp).strip()}"
        )
        print(f"machine : {os.cpu_count()} CPUs, 1-min load average {load:.2f} at start")

        t0 = time.perf_counter()
        work.mkdir()
        n = snapshot(args.repo, work)
        # DVC's site cache (per-repository index, state) inside the temporary dir, not /var/tmp/dvc
        (work / ".dvc" / "config.local").write_text(f"[core]\n    site_cache_dir = {tmp / 'dvc-site-cache'}\n")
        if args.overrides:
            sh([str(args.venv / "bin" / "python"), "-m", "tasks.config.compose", *args.overrides], work, env)
        sh(["git", "init", "-q"], work)
        sh(["git", "add", "-A"], work)
        sh(
            [
                "git",
                "-c",
                "user.name=EdgeForge bench",
                "-c",
                "user.email=bench@edgeforge.invalid",
                "commit",
                "-qm",
                "snapshot for bench/pipeline_wall.py",
            ],
            work,
        )
        print(
            f"copy    : {n} files from {args.repo} (without {', '.join(LEFT_OUT)}) -> {work}, git commit, "
            f"in {time.perf_counter() - t0:.1f} s (not timed below)"
        )
        if args.overrides:
            print(f"config  : {' '.join(args.overrides)}")

        # (a) the full pipeline from a clean state
        print("\n(a) dvc repro from a clean state ...", flush=True)
        wall, rc, lines = repro(dvc, work, env, tmp / "repro-full.log", args.verbose)
        if rc != 0:
            keep = True
            fail("dvc repro", rc, lines, tmp)
        stages = stage_times(lines, wall)
        print(f"    wall time: {wall:.1f} s")
        if stages:
            print(f"    DVC before the first stage: {stages[0][1]:.1f} s")
            width = max(len(s[0]) for s in stages)
            print(f"    {'stage':<{width}}  {'start s':>7}  {'duration s':>10}  {'share':>5}")
            for name, start, dur in stages:
                print(f"    {name:<{width}}  {start:>7.1f}  {dur:>10.1f}  {dur / wall:>5.0%}")
            print(
                "    (a stage's duration runs from its 'Running stage' line to the next stage's, so it includes "
                "DVC's caching and lock update for it; the last one runs to DVC's exit)"
            )

        # (b) no-op re-runs
        noop = []
        if args.runs:
            print(f"\n(b) no-op dvc repro, {args.runs} run(s) in the same copy ...", flush=True)
            for i in range(args.runs):
                w, rc_i, out = repro(dvc, work, env, tmp / f"repro-noop-{i + 1}.log", args.verbose)
                if rc_i != 0:
                    keep = True
                    fail(f"no-op dvc repro #{i + 1}", rc_i, out, tmp)
                ran = [m.group(1) for _, line in out if (m := RUNNING.search(line))]
                skipped = sum(1 for _, line in out if SKIPPED.search(line))
                noop.append(w)
                print(
                    f"    run {i + 1}: {w:6.2f} s  ({skipped} stages skipped"
                    + (f"; RAN {len(ran)}: {', '.join(ran)}" if ran else "")
                    + ")",
                    flush=True,
                )
            print(
                f"    no-op wall time: median {statistics.median(noop):.2f} s, min {min(noop):.2f} s, "
                f"max {max(noop):.2f} s over {len(noop)} run(s)"
            )

        # (c) stages run in (a)
        locked = locked_stages(work / "dvc.lock")
        print(f"\n(c) stages run in (a): {len(stages)} ({locked} stages recorded in dvc.lock)")

        print("\nsummary:")
        print(f"    full pipeline from a clean state: {wall:.1f} s wall, {len(stages)} stages")
        if noop:
            print(
                f"    no-op dvc repro: median {statistics.median(noop):.2f} s (min {min(noop):.2f}, max {max(noop):.2f}, "
                f"{len(noop)} runs)"
            )
    finally:
        if keep:
            print(f"\nkept: {tmp} (repo copy in {work.name}/, DVC output in *.log)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
