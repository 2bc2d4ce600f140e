"""Deploy and rollback times on the loopback devices (``make loopback``), per device, and the
bundle's size.

Run from a project where `make run`, `edgeforge keygen`, `edgeforge fleet trust --fleet` and
`edgeforge release` have been done. Each round signs a fresh copy of the latest release as a new
patch version (so every deploy is a whole one: upload, verify, smoke test, activate, health check),
deploys it to each device of ``release.devices`` in turn (``tasks.release.deploy.deploy``, the
code the rollout flow's task runs, without Prefect's start-up), then rolls the first device back.
Printed: the median and range of each, with the CPU model. The copies are removed afterwards.

    .venv/bin/python bench/deploy_loopback.py --rounds 5

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from bench.machine import cpu_model
from tasks.config import load_config
from tasks.release import deploy, keys, manifest, store


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config()
    base_version = store.latest(cfg)
    devices = list(cfg.release.devices)
    cls = deploy.device_class(cfg, devices[0])
    base = store.bundle_dir(cfg, cls, base_version)
    key = keys.load_private(cfg.release.signing_key_file)
    made: list[Path] = []
    times: dict[str, list[float]] = {d: [] for d in devices}
    uploads: list[float] = []
    rollbacks: list[float] = []
    major, minor, patch = (int(x) for x in base_version.split("."))
    try:
        for r in range(args.rounds):
            version = f"{major}.{minor}.{patch + 1000 + r}"
            folder = store.model_dir(cfg) / version / cls
            shutil.copytree(base, folder)
            made.append(folder.parent)
            m = manifest.read_manifest(folder)
            m["version"] = version
            manifest.write_signed(folder, m, key)
            for d in devices:
                out = deploy.deploy(cfg, d, folder, lambda _m: None)
                if out.status != "activated":
                    raise SystemExit(f"{d}: {out.status}: {out.error}")
                times[d].append(out.seconds)
                uploads.append(out.uploaded_bytes)
            t0 = time.perf_counter()
            back = deploy.rollback(cfg, devices[0], log=lambda _m: None)
            if back.status != "activated":
                raise SystemExit(f"rollback of {devices[0]}: {back.error}")
            rollbacks.append(time.perf_counter() - t0)
    finally:
        for d in devices:  # leave the fleet on the release it ran before
            deploy.deploy(cfg, d, base, lambda _m: None, skip_gate=True)
        for f in made:
            shutil.rmtree(f, ignore_errors=True)

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"

    print(f"CPU: {cpu_model()}")
    print(f"bundle {base} : {_size(base) / 1e6:.2f} MB on disk, {statistics.median(uploads) / 1e6:.2f} MB uploaded")
    for d in devices:
        print(f"deploy {d:<16} {fmt(times[d])}")
    print(f"rollback {devices[0]:<14} {fmt(rollbacks)}")


if __name__ == "__main__":
    main()
