"""What the fleet runs, in MLflow: each deploy, rollback and gate decision on the release's run.

- a tag per device on the release run (``deployed.<device>``: version, release id, status, when,
  the engine's sha256, whether the device rebuilt it), its gate figures (``gate.<device>.*``) and the
  device's build log as an artifact (``deploy/<device>/build.log``);
- the registry alias ``deployed-<device>`` on the model version of the release's bundle for the
  device's class (created once per bundle, from the run's bundle artifact, tagged with its sha256).

No secret is logged: outcomes carry versions, hashes, times and the device's messages only.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.config import Config
from tasks.release.manifest import bundle_sha, read_manifest
from tasks.tracking.registry import alias_for
from tasks.tracking.uri import resolved_uri, tracking_uri


def _client(cfg: Config):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=resolved_uri(tracking_uri(cfg)))


def _model_version(client, manifest: dict, sha: str) -> str | None:
    """The registry version holding this bundle (tag ``release_sha256``), created on first use."""
    from mlflow.exceptions import MlflowException

    name, run_id = manifest["model"], (manifest.get("mlflow") or {}).get("run_id")
    if not run_id:
        return None
    found = client.search_model_versions(f"name = '{name}' and tag.release_sha256 = '{sha}'")
    if found:
        return str(found[0].version)
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    mv = client.create_model_version(
        name,
        f"runs:/{run_id}/{(manifest.get('mlflow') or {}).get('artifact_path') or 'release/' + manifest['class']}",
        run_id=run_id,
        tags={"release_version": manifest["version"], "release_sha256": sha, "release_class": manifest["class"]},
        description=f"release {manifest['version']} for device class {manifest['class']}",
    )
    return str(mv.version)


def record(cfg: Config, bundle: Path, outcome) -> None:
    """Record one device's deploy ``outcome`` (:class:`tasks.release.deploy.Outcome`) of ``bundle``."""
    manifest = read_manifest(bundle)
    run_id = (manifest.get("mlflow") or {}).get("run_id")
    if not run_id:
        return
    client, dev = _client(cfg), alias_for(outcome.target)
    client.set_tag(
        run_id,
        f"deployed.{dev}",
        json.dumps(
            {
                k: getattr(outcome, k)
                for k in ("status", "version", "release", "activated_at", "artifact_sha256", "rebuilt", "kind")
            },
            sort_keys=True,
        ),
    )
    if outcome.error:
        client.set_tag(run_id, f"deploy_error.{dev}", outcome.error[:5000])
    g = outcome.gate or {}
    if g:
        client.set_tag(run_id, f"gate.{dev}", f"{g.get('status')}: {g.get('message')}"[:5000])
        for k in ("candidate_value", "active_value", "candidate_p99_ms", "active_p99_ms"):
            if g.get(k) is not None:
                client.log_metric(run_id, f"gate.{dev}.{k}", float(g[k]))
    if outcome.build_log:
        client.log_text(run_id, outcome.build_log, f"deploy/{dev}/build.log")
    if outcome.status == "activated":
        version = _model_version(client, manifest, bundle_sha(bundle))
        if version:
            client.set_registered_model_alias(manifest["model"], f"deployed-{dev}", version)


def record_rollback(cfg: Config, target: str, manifest: dict | None, sha: str | None) -> None:
    """After a rollback: the device's alias moves to the restored release's model version."""
    if not manifest or not sha:
        return
    client = _client(cfg)
    version = _model_version(client, manifest, sha)
    if version:
        client.set_registered_model_alias(manifest["model"], f"deployed-{alias_for(target)}", version)
