"""The checkpoint watcher: a Prefect flow, served on a schedule (``watch.interval_s`` or
``watch.cron``), that finds new checkpoints — files matching ``watch.glob`` in ``watch.dir``, and
versions of the MLflow registered model ``watch.registry_model`` — and runs the pipeline once for
each, as the DVC experiment ``ckpt-<sha256[:12]>``.

A checkpoint is known by its sha256: the same bytes under another name, or found again after a
restart, are not run again (``watch.state`` records every one seen, with its outcome). Runs go one
after the other in the one workspace (a flow run at a time); a failed run is recorded with its error
and the next checkpoint still runs. ``--retry-failed`` runs the failed ones again.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger

from flows.checkpoint_ref import download_version, matching, registry_ref
from flows.pool import settle, submit
from tasks.io import sha256_file
from tasks.layout import Layout

SETTLE_S = 2.0
RETRYABLE = ("failed", "interrupted", "crashed", "cancelled")


@dataclass(frozen=True)
class Found:
    path: str  # relative to the workspace when inside it
    sha256: str
    source: str  # "folder" or "registry:<name>/<version>"


class State:
    """``{sha256: {path, source, status, ...}}`` in a JSON file, replaced atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def seen(self, sha: str, retry_failed: bool = False) -> bool:
        entry = self.data.get(sha)
        return entry is not None and not (retry_failed and entry["status"] in RETRYABLE)

    def record(self, sha: str, **fields) -> None:
        self.data[sha] = {**self.data.get(sha, {}), **fields, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def interrupted(self) -> list[str]:
        """Runs a crash or Ctrl-C left "running": recorded as interrupted (not run again by themselves)."""
        stale = [sha for sha, e in self.data.items() if e["status"] == "running"]
        for sha in stale:
            self.record(sha, status="interrupted", error="the watcher stopped during this run")
        return stale


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())


def folder_checkpoints(root: Path, folder: str, pattern: str) -> list[Path]:
    """Files matching ``pattern`` under ``folder``, oldest first. A file modified in the last
    ``SETTLE_S`` seconds may still be being copied: it waits for the next look."""
    base = root / folder
    if not base.is_dir():
        return []
    now = time.time()
    files = [p for p in base.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    stable = [p for p in files if p.stat().st_size > 0 and now - p.stat().st_mtime > SETTLE_S]
    return sorted(stable, key=lambda p: (p.stat().st_mtime, p.name))


def registry_checkpoints(root: Path, model: str, pattern: str, tracking_uri: str) -> list[tuple[Path, str]]:
    """Each READY version of the MLflow registered model ``model``: its checkpoint file (the one
    file matching ``pattern`` in the version's artifacts), downloaded once under
    ``.edgeforge/watch/registry/<model>/<version>/``. A version that cannot be used is skipped with
    a warning that says why (it is looked at again next time); the folder's checkpoints still run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    log = _logger()
    client = MlflowClient(tracking_uri)
    try:
        client.get_registered_model(model)
    except MlflowException as e:
        log.warning(
            "registry: no registered model %r in %s (%s); check watch.registry_model",
            model,
            tracking_uri,
            str(e).splitlines()[0][:200],
        )
        return []
    out = []
    for v in sorted(client.search_model_versions(f"name='{model}'"), key=lambda v: int(v.version)):
        if v.status != "READY":  # still being registered: the next look takes it
            continue
        try:
            dst = download_version(root, model, str(v.version), tracking_uri)
        except (MlflowException, OSError) as e:
            log.warning(
                "registry %s version %s: could not download its artifacts (%s); skipped",
                model,
                v.version,
                str(e).splitlines()[0][:200],
            )
            continue
        hits = matching(dst, pattern)
        if len(hits) == 1:
            out.append((hits[0], f"registry:{model}/{v.version}"))
        else:
            log.warning(
                "registry %s version %s: expected one file matching %r (watch.glob) in its artifacts, "
                "found %d; skipped",
                model,
                v.version,
                pattern,
                len(hits),
            )
    return out


def _logger():
    """The flow run's logger inside a flow, else this module's."""
    import logging

    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def find_new(root: Path, cfg, state: State, retry_failed: bool = False) -> list[Found]:
    """Checkpoints not seen before (by sha256), in the order they appeared; duplicates once."""
    from tasks.tracking.uri import resolved_uri, tracking_uri

    candidates = [(p, "folder") for p in folder_checkpoints(root, cfg.watch.dir, cfg.watch.glob)]
    if cfg.watch.registry_model:
        uri = resolved_uri(tracking_uri(cfg), base=root)  # a relative sqlite URI is the workspace's database
        candidates += registry_checkpoints(root, cfg.watch.registry_model, cfg.watch.glob, uri)
    new, shas = [], set()
    for path, source in candidates:
        sha = sha256_file(path)
        if sha in shas or state.seen(sha, retry_failed):
            continue
        shas.add(sha)
        new.append(Found(_rel(path, root), sha, source))
    return new


def exp_name(sha: str) -> str:
    return f"ckpt-{sha[:12]}"


@flow(name="edgeforge-watch", log_prints=True)
def watch(root: str = ".", retry_failed: bool = False, pool: str | None = None) -> list[dict]:
    """Look once for new checkpoints and run the pipeline for each (one after the other), or, with a
    work pool (``pool`` or ``watch.work_pool``), submit each as a flow run any worker can take."""
    from flows.pipeline import compose, pipeline
    from tasks.config import load_config

    logger = get_run_logger()
    rootp = Path(root).resolve()
    compose(rootp, None, [])  # the declared config (conf/): the previous run's checkpoint is not carried over
    cfg = load_config(rootp / "params.yaml")
    state = State(rootp / cfg.watch.state)
    for sha in state.interrupted():
        logger.warning(
            "checkpoint %s: its run was interrupted; `edgeforge watch --retry-failed` runs it again", sha[:12]
        )
    pool = pool or cfg.watch.work_pool
    if pool:
        settle(state, logger)
    found = find_new(rootp, cfg, state, retry_failed)
    logger.info(
        "watch: %d new checkpoint(s) in %s%s",
        len(found),
        cfg.watch.dir,
        f" and registry model {cfg.watch.registry_model}" if cfg.watch.registry_model else "",
    )
    if pool:
        return [_submit(rootp, pool, f, list(cfg.watch.overrides), state) for f in found]
    done = []
    for f in found:
        name = exp_name(f.sha256)
        state.record(f.sha256, path=f.path, source=f.source, status="running", exp_name=name)
        try:
            summary = pipeline(checkpoint=f.path, overrides=list(cfg.watch.overrides), exp_name=name, root=str(rootp))
        except Exception as e:  # reported and recorded; the next checkpoint still runs
            logger.error("checkpoint %s (%s) failed: %s", f.path, f.sha256[:12], e)
            state.record(f.sha256, status="failed", error=str(e)[:2000])
            done.append({"path": f.path, "sha256": f.sha256, "status": "failed", "error": str(e)})
            continue
        report = _read_summary(rootp)
        state.record(
            f.sha256,
            status="done",
            seconds=summary["seconds"],
            ran=len(summary["ran"]),
            mlflow_parent_run=report.get("mlflow", {}).get("parent_run_id"),
        )
        done.append({"path": f.path, "sha256": f.sha256, "status": "done", "exp_name": name})
    return done


def _submit(root: Path, pool: str, f: Found, overrides: list[str], state: State) -> dict:
    """``f`` as a flow run of the pool's deployment: a path the workers can read (absolute: on
    storage they share) or a registry reference they download, with its sha256 to check."""
    ref = registry_ref(*f.source[len("registry:") :].rsplit("/", 1)) if f.source.startswith("registry:") else None
    params = {
        "checkpoint": ref or str((root / f.path).resolve()),
        "checkpoint_sha256": f.sha256,
        "overrides": overrides,
        "exp_name": exp_name(f.sha256),
    }
    run_id = submit(pool, params)
    state.record(
        f.sha256, path=f.path, source=f.source, status="submitted", exp_name=params["exp_name"], flow_run_id=run_id
    )
    _logger().info("checkpoint %s (%s): submitted to work pool %s as flow run %s", f.path, f.sha256[:12], pool, run_id)
    return {"path": f.path, "sha256": f.sha256, "status": "submitted", "flow_run_id": run_id}


def _read_summary(root: Path) -> dict:
    path = Layout(root).summary
    return json.loads(path.read_text()) if path.is_file() else {}


def serve(root: str = ".", interval_s: float | None = None, cron: str | None = None, pool: str | None = None) -> None:
    """Serve :func:`watch` as the deployment ``edgeforge-watch`` on its schedule (blocks).

    Schedules need a Prefect server (its scheduler service; a temporary server has none): with no
    ``PREFECT_API_URL`` set, one is started on 127.0.0.1 for as long as the watcher runs."""
    import tempfile

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.config import load_config
    from tasks.config.compose import compose as hydra_compose

    with tempfile.TemporaryDirectory() as td:  # the declared config (conf/), as each look composes it
        hydra_compose(Path(td) / "params.yaml", [], root=Path(root).resolve())
        cfg = load_config(Path(td) / "params.yaml")
    interval = interval_s if interval_s is not None else (None if cron or cfg.watch.cron else cfg.watch.interval_s)
    cron = cron or (None if interval_s is not None else cfg.watch.cron)
    if not interval and not cron:
        raise ValueError("watch: set watch.interval_s or watch.cron (or pass --interval/--cron)")
    kwargs = dict(
        name="edgeforge-watch",
        parameters={"root": str(Path(root).resolve()), "pool": pool},
        interval=interval,
        cron=cron,
        limit=1,
    )
    if PREFECT_API_URL.value():
        watch.serve(**kwargs)
        return
    # Ctrl-C, or SIGTERM from a service manager (Prefect's runner turns it into a clean exit), stops the
    # server too: it is never orphaned
    log = Layout(Path(root).resolve()).prefect_server_log
    with local_server(log) as url, temporary_settings(updates={PREFECT_API_URL: url}):
        os.environ["PREFECT_API_URL"] = url  # the runner's flow-run processes report to the same server
        try:
            watch.serve(**kwargs)
        finally:
            os.environ.pop("PREFECT_API_URL", None)


@contextmanager
def local_server(log: Path):
    """``prefect server start`` on a free loopback port, its output in ``log``; its API URL.
    Stopped on exit."""
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prefect = Path(sys.executable).parent / "prefect"
    from flows.prefect_env import server_env

    env = {**os.environ, **server_env()}  # no telemetry unless the user asked for it: see flows.prefect_env
    env.pop("PREFECT_API_URL", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"`prefect server start` exited {proc.returncode} (its output: {log}); start "
                    f"one yourself and set PREFECT_API_URL"
                )
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"`prefect server start` did not answer at {url} within 120 s (its output: {log})")
        print(
            f"edgeforge watch: started a Prefect server for the schedule at {url[:-4]} (UI there); "
            f"keep your own running and set PREFECT_API_URL to reuse it",
            flush=True,
        )
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
