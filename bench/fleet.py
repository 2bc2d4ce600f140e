"""Fleet builds: wall time of ``tasks.fleet.build_fleet`` (probe + builds of every precision,
through SSH and the device agent) for ONE loopback SSH target against FOUR built concurrently.

All targets are this machine behind one real OpenSSH sshd on 127.0.0.1 (started for the run),
each with its own work folder, runtime ONNX Runtime, so the four "devices" share this machine's
CPU cores: real devices each bring their own, so this is the harder case for concurrency. The
models are the bundled example's (``artifacts/export`` and ``artifacts/quantize`` of this
checkout: run ``make run`` first); precisions ``--precisions`` (default fp32 fp16 int8-minmax).
Rounds alternate 1 and N targets; medians are printed, and the ratio N-targets / 1-target.

    .venv/bin/python bench/fleet.py                 # 4 targets, 3 rounds: about 1-2 minutes here
    .venv/bin/python bench/fleet.py --targets 8 --rounds 5

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.config import Config, load_config  # noqa: E402
from tasks.config.schema import Target  # noqa: E402
from tasks.fleet import build_fleet  # noqa: E402
from tasks.hosts.loopback import start_sshd  # noqa: E402


def cpu_busy_seconds() -> float:
    """CPU-seconds this machine spent busy (all cores, all processes: the loopback "devices"
    too) since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8-minmax"])
    args = ap.parse_args()
    missing = [p for p in args.precisions if not (ROOT / "artifacts/quantize" / p / "quantize.json").is_file()]
    if missing or not (ROOT / "artifacts/export/model.onnx").is_file():
        sys.exit(f"no example models for {missing or 'export'} in {ROOT}/artifacts: run `make run` first")
    with tempfile.TemporaryDirectory() as tmp_s, start_sshd(Path(tmp_s) / "sshd") as sshd:
        proj = Path(tmp_s) / "project"
        for sub in ["export", *(f"quantize/{p}" for p in args.precisions)]:
            shutil.copytree(ROOT / "artifacts" / sub, proj / "artifacts" / sub)
        params = dataclasses.asdict(Config())
        params["build"]["precisions"] = args.precisions
        for i in range(args.targets):
            params["target"][f"dev{i}"] = dataclasses.asdict(
                Target(
                    transport="ssh",
                    host=sshd.host,
                    port=sshd.port,
                    key_file=str(sshd.key_path),
                    known_hosts=str(sshd.known_hosts),
                    workdir=str(Path(tmp_s) / f"device{i}"),
                    python=sys.executable,
                )
            )
        params["build"]["targets"] = list(params["target"])[1:]
        (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        os.chdir(proj)
        cfg = load_config()
        walls: dict[int, list[float]] = {1: [], args.targets: []}
        busy: dict[int, list[float]] = {1: [], args.targets: []}
        own: dict[int, list[float]] = {1: [], args.targets: []}
        for r in range(args.rounds):
            for n in (1, args.targets):
                t0, c0, s0 = time.perf_counter(), cpu_busy_seconds(), time.process_time()
                results = build_fleet(cfg, [f"dev{i}" for i in range(n)], args.precisions, jobs=n, log=lambda m: None)
                walls[n].append(time.perf_counter() - t0)
                busy[n].append(cpu_busy_seconds() - c0)
                own[n].append(time.process_time() - s0)
                failed = [x.error for x in results if x.error]
                if failed:
                    sys.exit(f"fleet build failed: {failed}")
                print(
                    f"round {r + 1}: {n} target(s), {n * len(args.precisions)} builds: {walls[n][-1]:.2f} s, "
                    f"{busy[n][-1]:.1f} CPU-s busy ({own[n][-1]:.1f} of them EdgeForge's own process)",
                    flush=True,
                )
    one, many = statistics.median(walls[1]), statistics.median(walls[args.targets])
    cpu1, cpun = statistics.median(busy[1]), statistics.median(busy[args.targets])
    cores = os.cpu_count() or 1
    own1, ownn = statistics.median(own[1]), statistics.median(own[args.targets])
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; loopback sshd; precisions "
        f"{' '.join(args.precisions)}; medians of {args.rounds} rounds:"
    )
    print(
        f"  1 target : {one:.2f} s   ({len(args.precisions)} builds), machine busy {cpu1:.1f} CPU-s "
        f"({cpu1 / one / cores:.0%} of {cores} cores; EdgeForge's process {own1:.1f} CPU-s)"
    )
    print(
        f"  {args.targets} targets: {many:.2f} s   ({args.targets * len(args.precisions)} builds, concurrent), machine busy "
        f"{cpun:.1f} CPU-s ({cpun / many / cores:.0%} of {cores} cores; EdgeForge's process {ownn:.1f} CPU-s)"
    )
    print(
        f"  ratio {args.targets} / 1 = {many / one:.2f}x  (sequential would be about {args.targets:.0f}x; with every "
        f"device sharing these {cores} cores, the CPU work alone needs >= {max(1.0, cpun / cores / one):.2f}x)"
    )


if __name__ == "__main__":
    main()
