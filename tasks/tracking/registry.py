"""MLflow model registry of the winners: each device's winning build (see
:func:`tasks.reporting.selection.winners`: every runtime on the device competes) becomes a new version
of one registered model, made from the child run's logged ``build/`` folder (``runs:/<child run
id>/build``), and the device's alias moves to it (``local`` for this machine, ``host-port`` for a
device over SSH). Deployment fetches ``models:/<name>@<device>`` and always gets the latest winner."""

from __future__ import annotations

import re
from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.config.load import MAX_MODEL_NAME
from tasks.reporting.selection import winners

# MLflow 3 alias rules (mlflow/utils/validation.py): `^[\w\-]*$`, at most 255 characters, and
# neither `latest` (any case) nor `v<digits>` (read as version numbers) is allowed.
_ALIAS_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
MAX_ALIAS = 255


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def model_name(cfg: Config) -> str:
    """``report.registered_model`` (checked when the config is loaded), or when it is null
    ``edgeforge-<model>``: ``model.arch`` for a state_dict (``mypkg.nets:MyNet`` ->
    ``edgeforge-mypkg.nets.MyNet``), else the checkpoint's file name without its suffix; every
    run of characters outside ``[A-Za-z0-9_.-]`` becomes ``-`` (MLflow refuses '/' and ':')."""
    if cfg.report.registered_model:
        return cfg.report.registered_model
    m = cfg.model
    base = m.arch.replace(":", ".") if m.format == "state_dict" and m.arch else Path(m.checkpoint).stem
    return f"edgeforge-{_NAME_BAD.sub('-', base).strip('-.') or 'model'}"[:MAX_MODEL_NAME]


def alias_for(target: str) -> str:
    """The alias of a target: its name with every run of characters outside ``[A-Za-z0-9_-]``
    replaced by ``-`` (ASCII only, so the alias is safe in a URL), cut to 255 characters; a
    reserved result (``latest``, ``v<digits>``) or an empty one gets a ``target-`` prefix."""
    a = _ALIAS_BAD.sub("-", target).strip("-")
    if not a or a.lower() == "latest" or _VERSION_ALIAS.match(a):
        a = f"target-{a}".rstrip("-")
    return a[:MAX_ALIAS]


def aliases(targets: list[str]) -> dict[str, str]:
    """``{target: alias}``; two targets whose aliases collide are a config error, not a silent
    overwrite of one winner by the other."""
    out = {t: alias_for(t) for t in targets}
    seen: dict[str, str] = {}
    for t, a in out.items():
        if a in seen:
            raise stage.StageError(
                f"targets {seen[a]!r} and {t!r} both map to the MLflow alias {a!r}: "
                "rename one of them (aliases keep only letters, digits, '_' and '-')"
            )
        seen[a] = t
    return out


def version_tags(row: dict, tags: dict[str, str]) -> dict[str, str]:
    """Tags of one model version: what it is, what it was built from and how well it does."""
    out = {
        "target": row["target"],
        "precision": row["precision"],
        "runtime": row["runtime"],
        "runtime_version": str(row["runtime_version"]),
        "artifact_sha256": row["artifact_sha256"],
        "checkpoint_sha256": tags.get("checkpoint_sha256", ""),
        "git_commit": tags.get("git_commit", ""),
        "dvc_experiment": tags.get("dvc_experiment", ""),
        "metric": row["metric"],
        "metric_value": repr(float(row["value"])),
        row["metric"]: repr(float(row["value"])),
    }
    if row.get("latency_p50_ms") is not None:
        out["latency_p50_ms"] = repr(float(row["latency_p50_ms"]))
    return out


def _ensure_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description="EdgeForge: each device's winning build; alias = the device's name"
        )
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def register_winners(
    client, cfg: Config, rows: list[dict], run_ids: dict[str, str], tags: dict[str, str], uri: str
) -> dict[str, dict]:
    """Register each target's winner; ``run_ids``: ``{row key: child run id}``. Returns
    ``{target: {"name", "version", "alias", "run_id", "precision", "source"}}`` (no entry for a
    target without an accepted build). Raises :class:`tasks.stage.StageError` naming the model
    and the tracking URI when the registry refuses."""
    from mlflow.exceptions import MlflowException

    best = winners(rows, cfg.report.winner_by)
    if not best:
        return {}
    name = model_name(cfg)
    alias = aliases(list(best))
    out: dict[str, dict] = {}
    try:
        _ensure_model(client, name)
        for target, r in best.items():
            run_id = run_ids[r["key"]]
            source = f"runs:/{run_id}/build"
            mv = client.create_model_version(
                name,
                source,
                run_id=run_id,
                tags=version_tags(r, tags),
                description=f"{r['key']}: winner on device {target!r} by {cfg.report.winner_by}",
            )
            client.set_registered_model_alias(name, alias[target], mv.version)
            out[target] = {
                "name": name,
                "version": str(mv.version),
                "alias": alias[target],
                "run_id": run_id,
                "precision": r["precision"],
                "source": source,
            }
    except (MlflowException, OSError) as e:  # requests' errors are OSErrors
        raise stage.StageError(
            f"registering the winning builds as versions of MLflow registered model {name!r} at {uri} failed: {e}. "
            "The model registry needs a database-backed store (sqlite:///..., or a server started with one); "
            "set report.register=false to skip registration"
        ) from e
    return out
