"""The watcher's second source of checkpoints: versions of an MLflow registered model, in a real
MLflow sqlite store. Each version's checkpoint is downloaded once, known by its sha256 like a
dropped file (the same bytes in the folder and in the registry run once), and a version that
cannot be used is skipped without hiding the others."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.watch import State, find_new, registry_checkpoints
from tasks.config import Config, from_dict
from tasks.io import sha256_file

MODEL = "mnist-cnn"


@pytest.fixture
def store(workdir, monkeypatch) -> str:
    """The workspace's own database (the config's relative ``sqlite:///mlflow.db``)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{workdir / 'mlflow.db'}"


def register(uri: str, files: dict[str, bytes]) -> str:
    """Log ``files`` as a run's ``checkpoint/`` artifacts and register them as a new version
    (``create_model_version``: MLflow 3's ``register_model`` only takes logged models)."""
    client = MlflowClient(uri)
    if not client.search_registered_models(f"name='{MODEL}'"):
        client.create_registered_model(MODEL)
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    for name, data in files.items():
        Path(name).write_bytes(data)
        client.log_artifact(run.info.run_id, name, "checkpoint")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/checkpoint", run_id=run.info.run_id)
    return str(version.version)


def watch_cfg(params: dict, **watch) -> Config:
    params["watch"].update(watch)
    return from_dict(Config, params)


def test_each_registry_version_is_found_once_and_deduplicated_with_the_folder(params, store, workdir):
    MlflowClient(store).search_experiments()  # creates the store and its Default experiment
    v1 = register(store, {"a.pt": b"weights A", "notes.txt": b"not a checkpoint"})
    v2 = register(store, {"b.pt": b"weights B"})
    incoming = workdir / "checkpoints/incoming"
    incoming.mkdir(parents=True)
    (incoming / "same-as-b.pt").write_bytes(b"weights B")
    os.utime(incoming / "same-as-b.pt", (time.time() - 60, time.time() - 60))
    cfg = watch_cfg(params, registry_model=MODEL)
    state = State(workdir / cfg.watch.state)

    found = find_new(workdir, cfg, state)
    assert [(f.source, Path(f.path).name) for f in found] == [
        ("folder", "same-as-b.pt"),
        (f"registry:{MODEL}/{v1}", "a.pt"),
    ]
    cached = workdir / ".edgeforge/watch/registry" / MODEL
    assert sorted(p.name for p in cached.iterdir()) == sorted([v1, v2])
    assert sha256_file(workdir / found[1].path) == sha256_file(Path("a.pt"))
    for f in found:
        state.record(f.sha256, path=f.path, source=f.source, status="done")
    # a restart (a new State from the file) and a new version: only the new version is new
    v3 = register(store, {"c.pt": b"weights C"})
    again = find_new(workdir, cfg, State(workdir / cfg.watch.state))
    assert [(f.source, Path(f.path).name) for f in again] == [(f"registry:{MODEL}/{v3}", "c.pt")]


def test_an_unusable_version_is_skipped_with_a_reason_and_the_others_still_found(params, store, workdir, caplog):
    MlflowClient(store).search_experiments()
    two = register(store, {"x.pt": b"X", "y.pt": b"Y"})  # which one is the checkpoint?
    good = register(store, {"z.pt": b"Z"})
    with caplog.at_level(logging.WARNING, logger="flows.watch"):
        got = registry_checkpoints(workdir, MODEL, "*.pt", store)
    assert [(s, p.name) for p, s in got] == [(f"registry:{MODEL}/{good}", "z.pt")]
    assert f"version {two}: expected one file matching '*.pt'" in caplog.text


def test_a_registered_model_that_does_not_exist_is_a_warning_not_a_crash(params, store, workdir, caplog):
    MlflowClient(store).search_experiments()
    with caplog.at_level(logging.WARNING, logger="flows.watch"):
        assert registry_checkpoints(workdir, "mnist-cnnn", "*.pt", store) == []
    assert "no registered model 'mnist-cnnn'" in caplog.text and "watch.registry_model" in caplog.text


def test_a_worker_downloads_a_submitted_registry_version_itself_and_checks_its_sha256(params, store, workdir):
    from flows.checkpoint_ref import CheckpointError, registry_ref, resolve

    MlflowClient(store).search_experiments()
    v = register(store, {"a.pt": b"weights A", "notes.txt": b"not a checkpoint"})
    Path("a.pt").unlink()
    sha = sha256_file(Path("notes.txt"))  # other bytes than the checkpoint's
    path = resolve(workdir, registry_ref(MODEL, v), None)  # the worker's own download, its watch.glob
    assert Path(path).name == "a.pt" and (workdir / path).read_bytes() == b"weights A"
    assert resolve(workdir, registry_ref(MODEL, v), sha256_file(workdir / path)) == path
    with pytest.raises(CheckpointError, match="its sha256 is"):
        resolve(workdir, registry_ref(MODEL, v), sha)
    with pytest.raises(CheckpointError, match="could not download it from"):
        resolve(workdir, registry_ref(MODEL, "99"), None)
