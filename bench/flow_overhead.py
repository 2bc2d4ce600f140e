"""Prefect flow overhead per stage: the same DVC stages run by ``dvc repro`` and by the
``edgeforge-pipeline`` flow, side by side in one run.

    python -m bench.flow_overhead [--stages 10] [--rounds 3] [--server]

A chain of N stages whose command does nothing but write its output (``python -c``), in a fresh
DVC repository under /tmp. Each round: ``dvc repro`` of the whole chain (after changing its input)
and the flow over the same chain (after changing it again); then the cached re-run of each. With
``--server`` the flow talks to a running ``prefect server start`` (started here on a free port, as
a user would keep one running); without, each flow call starts Prefect's temporary server, which
is reported separately. Prints medians and (flow - dvc) / N.

``--example`` instead times the bundled example from a clean state in two fresh copies of the
repository, ``dvc repro`` in one and the flow in the other (same overrides, one after the other):

    python -m bench.flow_overhead --example --server [-S key=value ...]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


def make_chain(root: Path, n: int) -> None:
    stages = {}
    for i in range(n):
        dep = "in.txt" if i == 0 else f"out/{i - 1}.txt"
        stages[f"s{i}"] = {
            "cmd": f"python -c \"import shutil; shutil.copy('{dep}', 'out/{i}.txt')\"",
            "deps": [dep],
            "outs": [f"out/{i}.txt"],
        }
    (root / "out").mkdir(parents=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    from tests.conftest import fast_params

    (root / "params.yaml").write_text(yaml.safe_dump(fast_params()))
    (root / "in.txt").write_text("0")
    (root / ".gitignore").write_text("/out/\n.edgeforge/\n")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "b@edgeforge.invalid"],
        ["git", "config", "user.name", "b"],
        [str(BIN / "dvc"), "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "chain"],
    ):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)


def timed(cmd: list[str], root: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def flow_inprocess_script(root: Path) -> list[str]:
    code = (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
        f"t=time.perf_counter(); from flows.pipeline import pipeline; s = pipeline(root={str(root)!r}); "
        "print('FLOW', s['seconds'], len(s['ran']))"
    )
    return [sys.executable, "-c", code]


def run_flow(root: Path, env: dict) -> tuple[float, float]:
    """(process wall seconds, the flow's own seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run(flow_inprocess_script(root), cwd=root, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    flow_s = float(next(line for line in out.stdout.splitlines() if line.startswith("FLOW")).split()[1])
    return wall, flow_s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server", action="store_true", help="run against a `prefect server start` on loopback")
    ap.add_argument("--example", action="store_true", help="the bundled example instead of the no-op chain")
    ap.add_argument("-S", dest="overrides", action="append", default=[], help="config override (--example)")
    args = ap.parse_args()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = None
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-") as td:
        env["PREFECT_HOME"] = str(Path(td) / "prefect-home")
        if args.server:
            port = free_port()
            server = subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
            import urllib.request

            for _ in range(120):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
        try:
            if args.example:
                return example(Path(td), env, args.overrides)
            root = Path(td) / "chain"
            make_chain(root, args.stages)
            dvc_cold, flow_cold, flow_own, dvc_warm, flow_warm = [], [], [], [], []
            run_flow(root, env)  # warm-up: imports compiled, Prefect database created
            for r in range(args.rounds):
                (root / "in.txt").write_text(f"dvc{r}")
                dvc_cold.append(timed([str(BIN / "dvc"), "repro"], root, env))
                dvc_warm.append(timed([str(BIN / "dvc"), "repro"], root, env))
                (root / "in.txt").write_text(f"flow{r}")
                wall, own = run_flow(root, env)
                flow_cold.append(wall)
                flow_own.append(own)
                flow_warm.append(run_flow(root, env)[0])
        finally:
            if server:
                os.killpg(server.pid, 15)
                server.wait()
    n, med = args.stages, statistics.median
    print(
        f"chain of {n} stages, {args.rounds} rounds, Prefect {'server on loopback' if args.server else 'temporary server'}"
    )
    print(
        f"  all stages run:  dvc repro {med(dvc_cold):6.2f} s   flow {med(flow_cold):6.2f} s (process)   "
        f"{med(flow_own):6.2f} s (inside the flow)"
    )
    print(f"  nothing changed: dvc repro {med(dvc_warm):6.2f} s   flow {med(flow_warm):6.2f} s (process)")
    print(
        f"  overhead per stage (flow process - dvc repro) / {n}: {(med(flow_cold) - med(dvc_cold)) / n:.3f} s; "
        f"inside the flow: {(med(flow_own) - med(dvc_cold)) / n:.3f} s"
    )


def example(td: Path, env: dict, overrides: list[str]) -> None:
    from tests.e2e import fresh_repo

    a = fresh_repo(td / "dvc", overrides)
    b = fresh_repo(td / "flow", overrides)
    t_dvc = timed([str(BIN / "dvc"), "repro"], a, env)
    wall, own = run_flow(b, env)
    n = int(
        subprocess.run(flow_inprocess_script(b), cwd=b, env=env, capture_output=True, text=True, check=True)
        .stdout.split("FLOW")[1]
        .split()[1]
    )  # cached re-run: stages that ran
    stages = len(
        [
            ln
            for ln in (a / "dvc.lock").read_text().splitlines()
            if ln.startswith("  ") and not ln.startswith("   ") and ln.strip().endswith(":")
        ]
    )
    print(f"bundled example, overrides {overrides or '(none)'}, {stages} stages, clean state")
    print(
        f"  dvc repro {t_dvc:7.1f} s   flow {wall:7.1f} s (process)  {own:7.1f} s (inside the flow)   "
        f"ratio {wall / t_dvc:.3f} / {own / t_dvc:.3f}; per stage (process - dvc) {(wall - t_dvc) / stages:.2f} s"
    )
    print(f"  cached re-run of the flow ran {n} stage(s) (the probes always run)")


if __name__ == "__main__":
    main()
