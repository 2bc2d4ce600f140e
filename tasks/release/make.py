"""``edgeforge release`` (``python -m tasks.release.make [--version V] [--classes A B]``): the signed
bundles of the last pipeline run's accepted winners, one per device class, logged as the artifacts of
one MLflow run ``release <model> <version>`` and added to DVC.

The signing key is loaded before anything is made (a missing key fails at once). Every bundle of the
version is made or none: a failure removes the version's folder and marks the MLflow run FAILED.
Prints one line per bundle: its folder, size, bundle sha (sha256 of ``manifest.json``) and the
winner it ships."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks import stage
from tasks.config import Config
from tasks.io import remove
from tasks.release import bundle, keys, store
from tasks.tracking.registry import model_name
from tasks.tracking.uri import redact_uri, resolved_uri, tracking_uri

KIND_TAG = "edgeforge.kind"


def _log(msg: str) -> None:
    stage.log("release", msg)


@contextlib.contextmanager
def release_run(cfg: Config, model: str, version: str, tags: dict[str, str]) -> Iterator[tuple[Any, str]]:
    """An MLflow run ``release <model> <version>`` in ``report.experiment``; yields (client, run id).
    FINISHED after the block, FAILED when it raises. A client bound to the URI: nothing global changes."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(cfg)
    try:
        client = MlflowClient(tracking_uri=resolved_uri(uri))
        exp = client.get_experiment_by_name(cfg.report.experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(cfg.report.experiment)
        run = client.create_run(exp_id, run_name=f"release {model} {version}", tags={KIND_TAG: "release", **tags})
    except (MlflowException, OSError) as e:
        raise stage.StageError(f"MLflow at {redact_uri(uri)} refused the release run: {e}") from e
    run_id = run.info.run_id
    try:
        yield client, run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def dvc_root(start: Path) -> Path | None:
    """The DVC repository ``start`` is in (the folder holding ``.dvc/``), or None."""
    for d in (start.resolve(), *start.resolve().parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def dvc_add(path: Path) -> str:
    """``dvc add <path>``; returns what happened (skipped outside a DVC repository)."""
    if dvc_root(path.parent) is None:
        return f"not in a DVC repository: {path} not added to DVC (`dvc init`, then `dvc add {path}`)"
    # not --quiet: it silences DVC's error message too
    res = subprocess.run([sys.executable, "-m", "dvc", "add", str(path)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise stage.StageError(f"`dvc add {path}` failed (exit {res.returncode}): {tail}")
    return f"added {path} to DVC ({path}.dvc)"


def make(cfg: Config, version: str | None = None, classes: list[str] | None = None) -> list[dict[str, Any]]:
    """Make, sign, log and version the release; returns one dict per bundle
    ``{class, path, size, sha256, key, version, run_id}``."""
    summary = bundle.read_summary()
    planned = bundle.plan(cfg, summary, classes)
    key = keys.load_private(cfg.release.signing_key_file)
    model = model_name(cfg)
    version = bundle.next_version(cfg, version or cfg.release.version)
    pipeline_run = (summary.get("mlflow") or {}).get("parent_run_id") or ""
    root = store.model_dir(cfg) / version
    made: list[dict[str, Any]] = []
    tags = {"version": version, "model": model, "classes": ",".join(p.cls for p in planned)}
    with release_run(cfg, model, version, {**tags, "pipeline_run_id": pipeline_run}) as (client, run_id):
        meta = bundle.shared_meta(
            cfg,
            model,
            version,
            {"run_id": run_id, "pipeline_run_id": pipeline_run or None, "experiment": cfg.report.experiment},
        )
        try:
            for p in planned:
                final = root / p.cls
                sha = bundle.write_bundle(cfg, p, final, meta, key, _log)
                client.log_artifacts(run_id, str(final), f"release/{p.cls}")  # tasks/tracking/deployments.py
                client.set_tag(run_id, f"bundle_sha256.{p.cls}", sha)
                client.set_tag(run_id, f"winner.{p.cls}", p.row["key"])
                made.append(
                    {
                        "class": p.cls,
                        "path": final,
                        "size": bundle.bundle_size(final),
                        "sha256": sha,
                        "key": p.row["key"],
                        "version": version,
                        "run_id": run_id,
                    }
                )
            _log(dvc_add(root))
        except BaseException:
            remove(root)  # every bundle of the version or none
            raise
    return made


def main(argv: list[str] | None = None) -> None:
    p = stage.parser("release.make")
    p.prog = "edgeforge release"
    p.add_argument("--version", default=None, help="MAJOR.MINOR.PATCH (default: release.version, else latest + 1)")
    p.add_argument("--classes", nargs="+", default=None, help="only these device classes (build targets)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv[1:] if argv[:1] == ["--"] else argv)  # `edgeforge release -- --version 1.2.0`
    with stage.stage_errors("release"):
        cfg = stage.load(args)
        for b in make(cfg, args.version, args.classes):
            print(f"{b['path']}  {b['size'] / 1e6:.2f} MB  sha256 {b['sha256']}  winner {b['key']}  ({b['class']})")


if __name__ == "__main__":
    main()
