"""Fleet builds by device class: wall time of ``build@<target>`` for N loopback devices of 2 classes
(half ONNX Runtime, half OpenVINO), all started at once as the Prefect flow runs them, with
``build.share_by_class: true`` (one build per class and precision, copied sha256-verified to the
class's other devices) against ``false`` (every device builds), side by side in one run.

All devices are this machine behind one real OpenSSH sshd on 127.0.0.1 (started for the run), each
with its own work folder, so they share this machine's cores: real devices each bring their own,
so the builds-everywhere figure here is the harder case for it (its builds compete for 2 cores),
while a real fleet's builds would run on their devices in parallel and sharing then saves device
time and transfers rather than wall time. The model is the bundled example's CNN (untrained,
seeded: its build costs what a trained one's does), made in a scratch project for the run
(prepare, export, quantize); precisions ``--precisions`` (default fp32 fp16 int8-minmax). Rounds
alternate the two settings, each from an empty build folder and class store; medians are printed
with the builds and copies each did.

    .venv/bin/python bench/fleet.py                      # 8 devices, 3 rounds: about 2 minutes here
    .venv/bin/python bench/fleet.py --devices 16 --rounds 5

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import build, export, prepare, probe, quantize  # noqa: E402
from tasks.config import Config  # noqa: E402
from tasks.config.schema import Target  # noqa: E402
from tasks.hosts.loopback import start_sshd  # noqa: E402
from tasks.io import remove  # noqa: E402
from tasks.layout import LAYOUT  # noqa: E402


def cpu_model() -> str:
    text = Path("/proc/cpuinfo").read_text()
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    fam = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.M)
    mod = re.search(r"^model\s*:\s*(\d+)$", text, re.M)
    ids = f" (family {fam[1]} model {mod[1]})" if fam and mod else ""
    return f"{m[1].strip() if m else 'unknown CPU'}{ids}, {os.cpu_count()} CPUs"


def cpu_busy_seconds() -> float:
    """CPU-seconds this machine spent busy (all cores, all processes: the loopback "devices" too)
    since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def at_once(stage, targets: list[str]) -> str:
    """``<stage>@<target>`` for every target, one thread each, started together; their log."""
    errors: list[str] = []
    log = io.StringIO()

    def one(t: str) -> None:
        try:
            stage.main(["--target", t])
        except SystemExit as e:  # the stage printed why
            errors.append(f"{t}: exit {e.code}")

    with contextlib.redirect_stderr(log):
        threads = [threading.Thread(target=one, args=(t,)) for t in targets]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    if errors:
        sys.exit(f"failed: {errors}\n{log.getvalue()}")
    return log.getvalue()


def make_project(proj: Path, precisions: list[str]) -> dict:
    """The example's untrained CNN, prepared, exported and quantized in ``proj`` (the current folder)."""
    import torch

    from examples.mnist import MnistCNN

    os.chdir(proj)
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")  # what keys a build's inputs (tasks.reuse)
    params = dataclasses.asdict(Config())
    params["prepare"]["train"] = None
    params["model"]["checkpoint"] = "model.pt"
    params["data"]["calib"]["limit"], params["data"]["eval"]["limit"] = 64, 64
    params["build"]["precisions"] = precisions
    params["bench"]["emulated"] = "measure"  # fp16 builds whatever this CPU computes natively
    torch.manual_seed(0)
    torch.save(MnistCNN().state_dict(), proj / "model.pt")
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with contextlib.redirect_stderr(io.StringIO()):
        prepare.main([])
        export.main([])
        for p in precisions:
            quantize.main(["--precision", p])
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=8, help="loopback devices, half of each class (default 8)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8-minmax"])
    args = ap.parse_args()
    half = max(1, args.devices // 2)
    targets = [f"ort{i}" for i in range(half)] + [f"ov{i}" for i in range(half)]
    with tempfile.TemporaryDirectory() as tmp_s, start_sshd(Path(tmp_s) / "sshd") as sshd:
        proj = Path(tmp_s) / "project"
        proj.mkdir()
        params = make_project(proj, args.precisions)
        for t in targets:
            params["target"][t] = dataclasses.asdict(
                Target(
                    transport="ssh",
                    runtime="openvino" if t.startswith("ov") else "onnxruntime",
                    host=sshd.host,
                    port=sshd.port,
                    key_file=str(sshd.key_path),
                    known_hosts=str(sshd.known_hosts),
                    workdir=str(Path(tmp_s) / "devices" / t),
                    python=sys.executable,
                )
            )
        params["build"]["targets"] = targets
        (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        at_once(probe, targets)
        walls: dict[bool, list[float]] = {True: [], False: []}
        busy: dict[bool, list[float]] = {True: [], False: []}
        counts: dict[bool, tuple[int, int]] = {}
        for r in range(args.rounds):
            for share in (True, False):
                params["build"]["share_by_class"] = share
                (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
                for p in (LAYOUT.artifacts / "build", LAYOUT.metrics / "build", LAYOUT.class_builds):
                    remove(p)
                t0, c0 = time.perf_counter(), cpu_busy_seconds()
                log = at_once(build, targets)
                walls[share].append(time.perf_counter() - t0)
                busy[share].append(cpu_busy_seconds() - c0)
                counts[share] = (len(re.findall(r": built ", log)), len(re.findall(r": shared from ", log)))
                print(
                    f"round {r + 1}: share_by_class={str(share).lower():5}: {counts[share][0]:2} built, "
                    f"{counts[share][1]:2} copied, {walls[share][-1]:6.2f} s, {busy[share][-1]:5.1f} CPU-s busy",
                    flush=True,
                )
    on, off = statistics.median(walls[True]), statistics.median(walls[False])
    print(
        f"\n{cpu_model()}; loopback sshd; {len(targets)} devices in 2 classes ({half} onnxruntime, {half} openvino); "
        f"precisions {' '.join(args.precisions)}; build@ of every device at once; medians of {args.rounds} rounds:"
    )
    for share, wall in ((True, on), (False, off)):
        built, copied = counts[share]
        print(
            f"  share_by_class={str(share).lower():5}: {wall:6.2f} s wall, {built} builds done, {copied} copies, "
            f"machine busy {statistics.median(busy[share]):.1f} CPU-s"
        )
    print(f"  every device building / sharing by class = {off / on:.2f}x wall time")


if __name__ == "__main__":
    main()
