"""A checkpoint on two workers that share a DVC remote: the first runs the pipeline, the second
restores it from the run-cache. Printed per worker: the wall time from submitting the flow run to its
end (what a user waits), the flow's own time, and the stages run and restored; with the CPU model.

Real engines on loopback, as in tests/test_workers_e2e.py (without MLflow's server): a
``prefect server start``, two ``edgeforge worker`` processes in two clones of a fresh copy of this
project (the bundled example, ``build.targets=[local]``, fp32 and int8-minmax, short benchmarks),
and a DVC remote over SSH on a loopback sshd.

    .venv/bin/python -m bench.shared_cache

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from bench.machine import cpu_model
from flows.pool import submit
from tasks.hosts.loopback import start_sshd
from tests.e2e import FAST
from tests.flows import remote
from tests.flows.test_watch_e2e import checkpoint
from tests.flows.workers import Worker, api, server, wait_final

OVERRIDES = FAST + ["build.targets=[local]", "build.precisions=[fp32,int8-minmax]", "prepare=none"]
LINE = re.compile(r"pipeline: (\d+) stage\(s\) ran, (\d+) from the run-cache, (\d+) up to date, in ([\d.]+) s")


def _one(root: Path, url: str, params: dict) -> tuple[float, tuple[str, ...]]:
    with Worker(root, url, pool="bench") as w:
        w.wait_ready()
        t0 = time.perf_counter()
        run = submit("bench", params)
        state = wait_final(run, url, timeout_s=1800)
        wall = time.perf_counter() - t0
        if state != "COMPLETED":
            raise SystemExit(f"the flow run ended {state}: {w.output()[-3000:]}")
        return wall, LINE.findall(w.output())[-1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-") as td:
        tmp = Path(td)
        with start_sshd(tmp / "sshd") as sshd:
            os.environ["HOME"] = str(remote.trust(tmp / "home", sshd))
            one, two, storage = remote.two_hosts(tmp, sshd, OVERRIDES)
            params = {"checkpoint": str(checkpoint(tmp / "shared" / "a.pt", seed=1)), "overrides": OVERRIDES}
            with server(tmp / "prefect.log") as url, api(url):
                rows = [("worker 1 (clean)", *_one(one, url, params)), ("worker 2 (same)", *_one(two, url, params))]
            stored = sum(p.stat().st_size for p in storage.rglob("*") if p.is_file())
    print(f"CPU: {cpu_model()}")
    print(f"{'':18} {'wall (submit to end)':>21} {'flow':>8} {'ran':>4} {'restored':>9} {'up to date':>11}")
    for name, wall, (ran, cached, fresh, flow_s) in rows:
        print(f"{name:18} {wall:19.1f} s {float(flow_s):6.1f} s {ran:>4} {cached:>9} {fresh:>11}")
    print(f"DVC remote after both: {stored / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
