"""Checkpoints handed to a pipeline run by reference: a file (relative to the working copy, or an
absolute path on storage the workers share) or an MLflow registry version ``models:/<name>/<version>``
that the run downloads itself, and the sha256 the submitter saw, checked before anything runs.

The watcher (flows/watch.py) finds checkpoints on its host; with a work pool the run happens on a
worker's host, so the worker resolves the reference in its own working copy."""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

from tasks.io import sha256_file
from tasks.layout import Layout

REGISTRY_PREFIX = "models:/"


class CheckpointError(RuntimeError):
    """The checkpoint reference cannot be used; the message says which and what to do."""


def registry_ref(model: str, version: str | int) -> str:
    return f"{REGISTRY_PREFIX}{model}/{version}"


def download_version(root: Path, model: str, version: str, tracking_uri: str) -> Path:
    """The artifacts of registered model ``model`` version ``version``, downloaded once under
    ``.edgeforge/watch/registry/<model>/<version>/`` (atomically: an interrupted download is
    redone). Raises MlflowException/OSError when the download fails."""
    import mlflow

    dst = Layout(root).registry_downloads / model / str(version)
    if not dst.is_dir():
        tmp = dst.with_name(dst.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted download
        tmp.mkdir(parents=True)
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=registry_ref(model, version), dst_path=str(tmp), tracking_uri=tracking_uri
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, dst)
    return dst


def matching(folder: Path, pattern: str) -> list[Path]:
    """Files under ``folder`` whose name matches ``pattern`` (watch.glob)."""
    return [p for p in folder.rglob("*") if p.is_file() and fnmatch.fnmatch(p.name, pattern)]


def resolve(root: Path, ref: str, sha256: str | None) -> str:
    """The checkpoint path to compose into params.yaml (relative to ``root`` when inside it), with
    a registry reference downloaded first; its sha256 checked when ``sha256`` is given."""
    if ref.startswith(REGISTRY_PREFIX):
        path = _from_registry(root, ref)
    else:
        path = (root / ref).resolve()
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {ref} not found (relative to {root}); a worker reads it from there: put "
                f"watch.dir on storage every worker mounts at the same path, or use the MLflow registry"
            )
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256:
            raise CheckpointError(
                f"checkpoint {ref}: its sha256 is {got[:12]}…, the run was submitted for {sha256[:12]}…; "
                f"the file changed after it was found (or the worker sees another file): submit it again"
            )
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _from_registry(root: Path, ref: str) -> Path:
    from mlflow.exceptions import MlflowException

    from tasks.config import ConfigError, load_config
    from tasks.tracking.uri import redact_uri, resolved_uri, tracking_uri

    model, _, version = ref[len(REGISTRY_PREFIX) :].rpartition("/")
    if not model or not version:
        raise CheckpointError(f"checkpoint {ref}: expected {REGISTRY_PREFIX}<registered model>/<version>")
    try:
        cfg = load_config(root / "params.yaml")
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {ref}: cannot read {root / 'params.yaml'}: {e}") from None
    uri = resolved_uri(tracking_uri(cfg), base=root)
    try:
        folder = download_version(root, model, version, uri)
    except (MlflowException, OSError) as e:
        raise CheckpointError(
            f"checkpoint {ref}: could not download it from {redact_uri(uri)} ({str(e).splitlines()[0][:200]}); "
            f"check report.tracking_uri / MLFLOW_TRACKING_URI on this worker"
        ) from None
    hits = matching(folder, cfg.watch.glob)
    if len(hits) != 1:
        raise CheckpointError(
            f"checkpoint {ref}: expected one file matching {cfg.watch.glob!r} (watch.glob) in its "
            f"artifacts, found {len(hits)}"
        )
    return hits[0]
