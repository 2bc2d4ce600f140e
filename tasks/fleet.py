"""Build for a fleet of devices at once: ``python -m tasks.fleet [--jobs N] [--targets a b]``.

``dvc repro`` runs one stage at a time, so N devices would build one after the other. This
command runs ``probe@<target>`` and then every ``build@<target>-<precision>`` of each target
concurrently across targets (at most ``--jobs`` devices at once; one build at a time per device,
since a device's memory and timing cache are shared by its builds), then records each finished
stage in ``dvc.lock`` with ``dvc commit``, so the next ``dvc repro`` carries on from there without
rebuilding. A device that fails loses only its own builds: the others' are kept and committed,
and the error names the device. Run ``dvc repro quantize`` first (the builds' inputs).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tasks import stage
from tasks.config import Config
from tasks.layout import LAYOUT, key


@dataclass
class DeviceResult:
    """What one target's worker did: stages finished in order, and the error that stopped it."""

    target: str
    done: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def build_device(cfg: Config, target: str, precisions: list[str], log: Callable[[str], None]) -> DeviceResult:
    """Probe ``target`` and build each precision on it, in order; stops at the first failure
    (the failed build leaves no outputs; earlier builds stay)."""
    from tasks import build, probe

    res, t0 = DeviceResult(target), time.perf_counter()
    current = f"probe@{target}"
    try:
        fp = probe.record(cfg, target)
        res.done.append(current)
        log(f"{current}: {probe.summary(fp)}")
        for p in precisions:
            k = key(target, p)
            current = f"build@{k}"
            meta = build.record(cfg, target, p, lambda m, c=current: log(f"{c}: {m}"))
            res.done.append(current)
            skipped = getattr(meta, "skipped", None)  # a precision that does not apply to the device
            log(
                f"{current}: n/a: {skipped}" if skipped else f"{current}: {meta.artifact} in {meta.build_seconds:.2f} s"
            )
    except stage.known_errors() as e:
        res.error = f"{current}: {stage.message(e)}"
        log(f"FAILED {res.error}")
    res.seconds = time.perf_counter() - t0
    return res


def build_fleet(
    cfg: Config, targets: list[str], precisions: list[str], jobs: int = 4, log: Callable[[str], None] = print
) -> list[DeviceResult]:
    """Every target's probe and builds, ``jobs`` devices at a time; one result per target, in order."""
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="edgeforge-device") as pool:
        futures = [pool.submit(build_device, cfg, t, precisions, log) for t in targets]
        return [f.result() for f in futures]


def commit(stages: list[str]) -> None:
    """Record finished stages in dvc.lock (``dvc commit``), so ``dvc repro`` does not redo them."""
    if stages:
        subprocess.run(["dvc", "commit", "--force", "--quiet", *stages], check=True)


def main(argv: list[str] | None = None) -> None:
    p = stage.parser("fleet")
    p.add_argument("--targets", nargs="+", help="targets to build for (default: build.targets)")
    p.add_argument("--jobs", type=int, default=4, help="devices building at once (default 4)")
    p.add_argument("--no-commit", action="store_true", help="do not record the builds in dvc.lock")
    args = p.parse_args(argv)
    with stage.stage_errors("fleet"):
        cfg = stage.load(args)
        targets = args.targets or cfg.build.targets
        for t in targets:
            if t not in cfg.target:
                raise stage.StageError(f"target {t!r} is not defined; defined targets: {', '.join(cfg.target)}")
        missing = [q for q in cfg.build.precisions if not (LAYOUT.quantize_dir(q) / "quantize.json").is_file()]
        if missing:
            raise stage.StageError(f"no model for precision(s) {', '.join(missing)}: run `dvc repro quantize` first")
        t0 = time.perf_counter()
        results = build_fleet(cfg, targets, cfg.build.precisions, args.jobs, lambda m: stage.log("fleet", m))
        if not args.no_commit:
            commit([s for r in results for s in r.done])
        failed = [r for r in results if r.error]
        stage.log(
            "fleet",
            f"{len(results) - len(failed)}/{len(results)} devices built everything in {time.perf_counter() - t0:.1f} s",
        )
        if failed:
            raise stage.StageError("; ".join(f"device {r.target}: {r.error}" for r in failed))


if __name__ == "__main__":
    sys.exit(main())
