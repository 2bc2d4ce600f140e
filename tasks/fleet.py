"""Build for a fleet of devices at once: ``python -m tasks.fleet [--jobs N] [--targets a b]``.

``dvc repro`` runs one stage at a time, so N devices would build one after the other. This
command runs each target's ``probe@<target>`` (the fingerprint, then the compute peaks) and then
its ``build@<target>`` (every precision, one after the other: logged as ``build@<target>-<precision>``)
concurrently across targets (at most ``--jobs`` devices at once; one build at a time per device,
since a device's memory and timing cache are shared by its builds), then records each complete
stage in ``dvc.lock`` with ``dvc commit``, so the next ``dvc repro`` carries on from there without
rebuilding. As in ``build@<target>``, a precision whose build fails leaves no outputs and the
target's other precisions still build (kept, with their inputs digest, for the next run); its
``build@<target>`` is then not committed. A device that fails loses only its own builds: the others'
are kept and committed, and the error names the device. Run ``dvc repro quantize`` first (the
builds' inputs).
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
from tasks.io import remove, write_json
from tasks.layout import LAYOUT, key


@dataclass
class DeviceResult:
    """What one target's worker did: items finished in order (``probe@jetson``,
    ``build@jetson-fp16``), the DVC stages whose outputs it completed (``probe@jetson``,
    ``build@jetson``: what :func:`commit` records), and the errors, one per failed item."""

    target: str
    done: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors) or None


def build_device(cfg: Config, target: str, precisions: list[str], log: Callable[[str], None]) -> DeviceResult:
    """Probe ``target`` (fingerprint and peaks), then build each precision on it, in order. A device
    that cannot be probed builds nothing; a failed build leaves no outputs and the next precision
    still builds (as ``build@<target>`` does)."""
    from tasks import build, peak, probe

    res, t0 = DeviceResult(target), time.perf_counter()

    def failed(item: str, e: BaseException) -> None:
        res.errors.append(f"{item}: {stage.message(e)}")
        log(f"FAILED {res.errors[-1]}")

    current = f"probe@{target}"
    try:
        fp = probe.record(cfg, target)
        log(f"{current}: {probe.summary(fp)}")
        write_json(LAYOUT.peak(target), peak.run(cfg, target, lambda m: log(f"{current}: {m}")))
    except stage.known_errors() as e:
        remove(LAYOUT.peak(target))  # a peak of an earlier fingerprint would not be this device's
        failed(current, e)
        res.seconds = time.perf_counter() - t0
        return res
    res.done.append(current)
    res.stages.append(current)
    ins = build.inputs(target)  # a build whose inputs did not change is kept (outside DVC: None)
    for p in precisions:
        current = f"build@{key(target, p)}"
        try:
            meta = build.record(cfg, target, p, lambda m, c=current: log(f"{c}: {m}"), ins)
        except stage.known_errors() as e:
            failed(current, e)
            continue
        res.done.append(current)
        skipped = getattr(meta, "skipped", None)  # a precision that does not apply to the device
        log(f"{current}: n/a: {skipped}" if skipped else f"{current}: {meta.artifact} in {meta.build_seconds:.2f} s")
    if not res.errors and set(cfg.build.precisions) <= set(precisions):  # the stage's every output is there
        res.stages.append(f"build@{target}")
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
            commit([s for r in results for s in r.stages])
        failed = [r for r in results if r.error]
        stage.log(
            "fleet",
            f"{len(results) - len(failed)}/{len(results)} devices built everything in {time.perf_counter() - t0:.1f} s",
        )
        if failed:
            raise stage.StageError("; ".join(f"device {r.target}: {r.error}" for r in failed))


if __name__ == "__main__":
    sys.exit(main())
