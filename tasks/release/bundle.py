"""One release bundle per device class, from a pipeline run's accepted winners (the bundle contract:
``<release.store>/<model>/<version>/<class>/``).

A class is a build target; its bundle holds the winner of the device that target ran on
(``summary.json``'s ``winners``; every runtime on a device competes, so ``local``'s class may ship
``local_openvino-fp32``). Classes are the values of ``release.devices``, else each device of
``build.targets`` once (named after its winner's target). The bundle is written into a scratch
folder and renamed into place whole; an existing version is never replaced."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tasks import stage
from tasks.config import Config
from tasks.config.load import family
from tasks.config.release_checks import SEMVER
from tasks.io import atomic_dir, read_json, sha256_file
from tasks.layout import LAYOUT, Layout
from tasks.records import BuildRecord, artifact_files, read_fingerprint
from tasks.release import golden, manifest, recipe, store
from tasks.reporting.selection import device_of
from tasks.reuse import path_digest


@dataclass
class Planned:
    """One bundle to make: its class (a build target) and the winning summary row it ships."""

    cls: str
    row: dict[str, Any]


def read_summary(layout: Layout = LAYOUT) -> dict[str, Any]:
    if not layout.summary.is_file():
        raise stage.StageError(f"{layout.summary} is missing: run the pipeline first (`make run`)")
    return read_json(layout.summary)


def _device_of_target(rows: list[dict], target: str) -> str | None:
    return next((device_of(r) for r in rows if r["target"] == target and r.get("host")), None)


def plan(cfg: Config, summary: dict[str, Any], only: list[str] | None = None) -> list[Planned]:
    """The bundles to make: ``[Planned(class, winner row)]``; ``only`` limits the classes (``--classes``)."""
    rows = summary["rows"]
    by_key = {r["key"]: r for r in rows}
    win = {dev: by_key[w["key"]] for dev, w in (summary.get("winners") or {}).items() if w["key"] in by_key}
    if cfg.release.devices:
        classes = sorted(set(cfg.release.devices.values()))
    else:  # each device of the build targets once, named after its winner's target
        devices = dict.fromkeys(d for t in cfg.build.targets if (d := _device_of_target(rows, t)) in win)
        classes = [win[d]["target"] for d in devices]
    if only:
        unknown = [c for c in only if c not in classes]
        if unknown:
            raise stage.StageError(f"--classes {' '.join(unknown)}: not a device class; the classes are {classes}")
        classes = [c for c in classes if c in only]
    out = []
    for cls in classes:
        if cls not in cfg.build.targets:
            raise stage.StageError(
                f"class {cls!r} (release.devices) is not in build.targets ({', '.join(cfg.build.targets)}): "
                "nothing was built for it; add it to build.targets and run `make run`"
            )
        dev = _device_of_target(rows, cls)
        row = win.get(dev) if dev else None
        if row is None:
            raise stage.StageError(
                f"class {cls!r}: device {dev or cls!r} has no winner in {LAYOUT.summary} (no accepted build): "
                "nothing to release for it"
            )
        if not row.get("accepted"):
            raise stage.StageError(f"class {cls!r}: the winner {row['key']} is not accepted ({row.get('reason')})")
        rec = BuildRecord.read_if(LAYOUT.build_dir(row["target"], row["precision"]) / "build.json")
        runtime = rec.runtime if rec else row.get("runtime")
        if runtime not in RELEASABLE:
            raise stage.StageError(
                f"class {cls!r}: the winner {row['key']} runs {runtime}, which releases cannot ship yet "
                f"(the device agent installs {', '.join(RELEASABLE)} bundles): leave its target out of build.targets "
                "for the release run, or release another class (--classes)"
            )
        out.append(Planned(cls, row))
    if not out:
        raise stage.StageError(f"no accepted winner in {LAYOUT.summary}: nothing to release")
    return out


#: runtimes whose bundles the device agent verifies, rebuilds and smoke-tests (tasks/agent/release_install.py)
RELEASABLE = ("onnxruntime", "openvino", "tensorrt")


def check_unchanged(row: dict[str, Any], build_dir: Path) -> BuildRecord:
    """The build's record, after checking its artifact is the one the pipeline run measured."""
    rec = BuildRecord.read(build_dir / "build.json")
    art = build_dir / rec.artifact
    if not art.is_file() or rec.sha256 != row.get("artifact_sha256") or sha256_file(art) != rec.sha256:
        raise stage.StageError(
            f"{build_dir}: the build changed since the pipeline run that chose it ({row['key']}): "
            "run the pipeline again (`make run`)"
        )
    return rec


def next_version(cfg: Config, wanted: str | None) -> str:
    """``wanted`` (--version or release.version), else the latest version in the store with patch + 1,
    else 0.1.0 (:func:`tasks.release.store.next_version`). Refuses a version that exists already."""
    if wanted is not None and not SEMVER.fullmatch(wanted):
        raise stage.StageError(f"version {wanted!r} is not MAJOR.MINOR.PATCH (e.g. 1.4.0)")
    version = wanted or store.next_version(cfg)
    folder = store.model_dir(cfg) / version
    if folder.exists():
        raise stage.StageError(
            f"release {folder.parent.name} {version} exists already ({folder}): releases are never "
            "replaced; bump release.version (or pass --version)"
        )
    return version


def _max_batch(cfg: Config, rec: BuildRecord) -> int:
    """Triton's max_batch_size for a dynamic-batch model: the engine profile's max batch (TensorRT),
    else the largest batch the pipeline ran it at."""
    profile = rec.extra.get("trt_profile") or {}
    return int(profile.get("max") or max(*cfg.bench.batch_sizes, cfg.eval.batch_size))


def container_hook(
    cfg: Config, root: Path, model: str, rec: BuildRecord, fp: dict[str, Any], source: Path, log=None
) -> dict[str, Any]:
    """The container recipe and Triton entry of the bundle in ``root``
    (:func:`tasks.release.containers.container_files`), the artifact copied to the Triton model file;
    returns the manifest's ``container`` ({dockerfile, base_image, triton}). A device with no known
    pinned base image (an L4T release not in the table, TensorRT off Jetson) gets a bundle without
    one, ``container.error`` saying why, and a WARNING: the device's agent needs no container."""
    from tasks.release.containers import ContainerError, container_files
    from tasks.release.triton import onnx_io

    art = root / "artifact" / rec.artifact
    try:
        made = container_files(
            model, rec.runtime, rec.precision, fp, rec.artifact, onnx_io(source), max_batch=_max_batch(cfg, rec)
        )
    except ContainerError as e:
        if log:
            log(f"WARNING: {rec.target}: no container recipe in the bundle: {e}")
        return {"dockerfile": None, "base_image": None, "triton": None, "error": str(e)}
    for rel, data in made.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    if made.model_file:
        (root / made.model_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(art, root / made.model_file)
    return made.meta


def write_bundle(
    cfg: Config,
    planned: Planned,
    final: Path,
    meta: dict[str, Any],
    key: Ed25519PrivateKey,
    log: Callable[[str], None] = print,
) -> str:
    """Make, sign and place the bundle of ``planned`` at ``final``; returns its bundle sha.
    ``meta``: the manifest keys shared by every class (format, model, version, created_at, mlflow, ...)."""
    row = planned.row
    build_dir = LAYOUT.build_dir(row["target"], row["precision"])
    rec = check_unchanged(row, build_dir)
    fp = read_fingerprint(LAYOUT.fingerprint(row["target"]), row["target"])
    made = recipe.rebuild(cfg, rec, build_dir, fp)
    source = made.files[recipe.SOURCE]
    tol = cfg.parity.artifact.get(family(rec.precision))
    with atomic_dir(final) as tmp:
        (tmp / "artifact").mkdir()
        files = []
        for p in artifact_files(build_dir):
            shutil.copy2(p, tmp / "artifact" / p.name)
            files.append(f"artifact/{p.name}")
        for rel, local in made.files.items():
            shutil.copy2(local, tmp / rel)
        samples = golden.write(cfg, row["target"], build_dir, LAYOUT.split("eval"), tmp, log)
        container = container_hook(cfg, tmp, meta["model"], rec, fp, source, log)
        m = {
            **meta,
            "class": planned.cls,
            "artifact": {
                "runtime": rec.runtime,
                "runtime_version": rec.runtime_version,
                "precision": rec.precision,
                "files": files,
                "source": recipe.SOURCE,
                "calibration_cache": recipe.CALIBRATION if recipe.CALIBRATION in made.files else None,
                "recipe": made.recipe,
                "compatible": made.compatible,
                "sha256": rec.sha256,
            },
            "validated_on": {
                "target": row["target"],
                "fingerprint_sha256": fp.get("fingerprint_sha256"),
                "fingerprint": fp,
            },
            "golden": {
                "inputs": golden.INPUTS,
                "outputs": golden.OUTPUTS,
                "samples": samples,
                "atol": tol.atol if tol else 0.0,
                "rtol": tol.rtol if tol else 0.0,
                "max_outside": tol.max_outside if tol else 0.0,
            },
            "metrics": {
                **{k: row.get(k) for k in ("metric", "value", "reference_value", "drop", "throughput", "verdict")},
                **{k: row.get(k) for k in ("latency_p50_ms", "latency_p99_ms", "key")},
                "eval_split_sha256": path_digest(LAYOUT.split("eval")),
            },
            "container": container,
        }
        sha = manifest.write_signed(tmp, m, key)
    return sha


def shared_meta(cfg: Config, model: str, version: str, mlflow_info: dict[str, Any]) -> dict[str, Any]:
    """The manifest keys every class of one release shares."""
    rec, ckpt = LAYOUT.export_metrics, Path(cfg.model.checkpoint)
    # what export read (its record: the bytes the ONNX came from), else the file itself (no export record)
    exported = (read_json(rec).get("checkpoint") or {}) if rec.is_file() else {}
    ckpt_sha = exported.get("sha256") or (sha256_file(ckpt) if ckpt.is_file() else None)
    return {
        "format": manifest.FORMAT,
        "model": model,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "checkpoint_sha256": ckpt_sha,
        "mlflow": mlflow_info,
    }


def bundle_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
