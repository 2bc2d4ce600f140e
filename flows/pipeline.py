"""The pipeline as a Prefect flow: the stages of ``dvc.yaml`` (read from DVC, see
:mod:`flows.dvc_graph`) as Prefect tasks in dependency order, each reproduced by DVC so that
DVC's cache decides what runs.

- Independent stages run side by side (``probe``/``build``/``measure`` per device, across devices).
- One stage at a time per device: stages of a remote target hold that device's slot (a Prefect
  global concurrency limit of 1, shared by every flow run on the same Prefect server, keyed by the
  device's address so two targets on one Jetson share it). Host-side stages and local targets
  share the ``host`` slot (``host_jobs`` at once): a local benchmark never shares the CPU.
- Only stages that talk to a device are retried, with exponential backoff, and only for
  transient errors (the stage exits 75: the device did not answer). Every stage has a timeout;
  a timed-out stage's process group is killed.
- Parameters: the checkpoint and config overrides (composed into params.yaml from conf/ as
  ``dvc exp run -S`` does), and an experiment name (the finished run is saved with
  ``dvc exp save``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from flows.dvc_graph import Stage, StageFailed, Workspace, read
from tasks.layout import Layout

DEVICE_FAMILIES = ("probe", "build", "measure")  # the stages that talk to a target
TIMEOUT_S = {
    "prepare": 4 * 3600.0,
    "build": 6 * 3600.0,
    "quantize": 4 * 3600.0,
    "measure": 3 * 3600.0,
}  # others: DEFAULT_TIMEOUT_S
DEFAULT_TIMEOUT_S = 3600.0
HOST_SLOT = "edgeforge-host"

# Progress listeners (the CLI's Rich display): called as listener(stage_name, event, info) from task threads.
LISTENERS: list[Callable[[str, str, dict], None]] = []


class PipelineError(RuntimeError):
    """The pipeline could not run or a stage failed; the message says which and what to do."""


@dataclass
class Plan:
    root: Path
    stages: list[Stage]
    slots: dict[str, str]  # stage -> slot name
    log_dir: Path


def _notify(name: str, event: str, **info) -> None:
    for listener in list(LISTENERS):
        listener(name, event, info)


def slot_of(stage: Stage, targets: dict) -> str:
    """The concurrency slot a stage holds: its device's for a remote target, else the host's."""
    if stage.target is None or stage.family not in DEVICE_FAMILIES:
        return HOST_SLOT
    t = targets.get(stage.target)
    if t is None or t.transport == "local":
        return HOST_SLOT
    return "edgeforge-device-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{t.host}-{t.port}")


_LOCAL_SLOTS: dict[str, threading.Semaphore] = {}
_LOCAL_SLOTS_LOCK = threading.Lock()


@contextmanager
def _hold(slot: str, size: int) -> Iterator[None]:
    """This process's share of a slot (always enforced), then the Prefect server's (across flow runs)."""
    with _LOCAL_SLOTS_LOCK:
        sem = _LOCAL_SLOTS.setdefault(f"{slot}/{size}", threading.Semaphore(size))
    with sem:
        if slot == HOST_SLOT:  # the workspace lock already keeps other flow runs off this host
            yield
        else:
            with concurrency(slot, occupy=1, strict=False):
                yield


def _transient_only(task, task_run, state) -> bool:
    """Retry condition: only a stage that exited 75 (device unreachable), never a real failure."""
    try:
        state.result()
    except StageFailed as e:
        return e.transient
    except Exception:
        return False
    return False


@task(cache_policy=NO_CACHE, persist_result=False)
def run_stage(stage: Stage, ws: Workspace, slot: str, host_jobs: int, timeout_s: float, log_dir: str) -> dict:
    """Reproduce one stage through DVC (skipped, like ``dvc repro`` would, when nothing changed;
    restored from the run-cache when a run with the same inputs was recorded, here or by another
    worker; never for ``probe@``, see :func:`_connect`)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    with _hold(slot, host_jobs if slot == HOST_SLOT else 1):
        waited = time.perf_counter() - t0
        if not ws.changed(stage.name):
            _notify(stage.name, "skipped")
            return {"stage": stage.name, "status": "skipped", "seconds": time.perf_counter() - t0}
        _notify(stage.name, "started")
        logger.info("%s: running `%s` on %s", stage.name, stage.cmd, slot)
        started = time.time()
        try:
            done = ws.reproduce(
                stage.name, Path(log_dir) / f"{stage.name}.log", timeout_s, restore=stage.family != "probe"
            )
        except StageFailed as e:
            _notify(stage.name, "failed", error=str(e))
            logger.error("%s", e)
            raise
    if done.push_error:  # the result stands here; other workers will redo it
        logger.warning("%s: not shared: %s", stage.name, done.push_error)
    _notify(stage.name, "cached" if done.cached else "done", seconds=done.seconds)
    return {
        "stage": stage.name,
        "status": "cached" if done.cached else "ran",
        "seconds": time.perf_counter() - t0,
        "dvc_seconds": done.seconds,
        "pushed": done.pushed,
        "push_error": done.push_error,
        "waited_s": waited,
        "started": started,
        "finished": time.time(),
        "slot": slot,
    }


@contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    """One run per workspace at a time, this flow's or a workspace ``dvc exp run``'s (the same lock,
    see tasks/workspace.py): a second fails fast instead of corrupting it."""
    from tasks.workspace import QUEUE_HINT, WorkspaceBusy, claim

    try:
        lock = claim(root, "edgeforge run")
    except WorkspaceBusy as e:
        raise PipelineError(
            f"another EdgeForge pipeline run is using {root}: {e}. Wait for it to finish, or run "
            f"in another clone; {QUEUE_HINT}"
        ) from None
    try:
        yield
    finally:
        lock.close()


def _refresh_fingerprints(root: Path) -> None:
    """``python -m tasks.probe --refresh``: a device that changed since its probe gets its
    fingerprint rewritten, so DVC re-runs its probe and builds (probe is not ``always_changed``)."""
    r = subprocess.run(
        [sys.executable, "-m", "tasks.probe", "--refresh"], cwd=root, capture_output=True, text=True, check=False
    )
    for line in (r.stdout + r.stderr).splitlines():
        get_run_logger().info(line)
    if r.returncode != 0:
        raise PipelineError(f"asking the targets whether their devices changed failed: {r.stderr.strip()[-500:]}")


def compose(root: Path, checkpoint: str | None, overrides: list[str]) -> None:
    """params.yaml from conf/ with ``overrides`` (+ ``model.checkpoint``), checked before it replaces
    the old one: a typo or a missing checkpoint fails here and leaves params.yaml as it was."""
    from tasks.config import ConfigError, load_config
    from tasks.config.compose import compose as hydra_compose

    overrides = list(overrides) + ([f"model.checkpoint={checkpoint}"] if checkpoint else [])
    if checkpoint and not (root / checkpoint).is_file():
        raise PipelineError(f"checkpoint {checkpoint} not found (relative to {root}); pass an existing file")
    tmp = Layout(root).params_draft
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        hydra_compose(tmp, overrides, root=root)
        load_config(tmp)
    except ConfigError as e:
        tmp.unlink(missing_ok=True)
        raise PipelineError(f"bad config: {e}") from None
    except Exception as e:  # Hydra's errors for an unknown key/group: say which override
        tmp.unlink(missing_ok=True)
        raise PipelineError(f"cannot compose the config with overrides {overrides}: {e}") from None
    os.replace(tmp, root / "params.yaml")


def _checkpoint(root: Path, ref: str, sha256: str | None) -> str:
    from flows.checkpoint_ref import CheckpointError, resolve

    try:
        return resolve(root, ref, sha256)
    except CheckpointError as e:
        raise PipelineError(str(e)) from None


def plan(root: Path, log_dir: Path, stages: list[Stage] | None = None) -> Plan:
    from tasks.config import load_config

    cfg = load_config(root / "params.yaml")
    stages = stages if stages is not None else read(root)
    return Plan(root, stages, {s.name: slot_of(s, cfg.target) for s in stages}, log_dir)


def shared_remote(root: Path, remote: str | None, share: bool) -> str | None:
    """The DVC remote this run shares its stages through: ``remote``, else the repository's
    default one (``dvc remote default``); None with ``share`` False or no remote configured."""
    from flows.dvc_remote import default_remote

    if not share:
        return None
    return remote or default_remote(root)


def _connect(ws: Workspace, stages: list[Stage]) -> list[str]:
    """Fetch the remote's run-cache entries, then restore each out-of-date ``probe@`` from them;
    the stages restored. Only here, before :func:`_refresh_fingerprints`: a device's fingerprint
    from the cache is then checked against the device like any recorded one, and a device that
    changed is probed again (``run_stage`` never restores a probe)."""
    from flows.dvc_remote import RemoteError

    logger = get_run_logger()
    try:
        n = ws.connect()
    except RemoteError as e:
        raise PipelineError(
            f"{e}. Check `dvc remote list` and that this host can reach it, or run with --no-remote"
        ) from None
    logger.info("run-cache shared through DVC remote %r: %d new entr%s", ws.remote, n, "y" if n == 1 else "ies")
    return [s.name for s in stages if s.family == "probe" and ws.restore(s.name)]


def _device_limits(slots: set[str]) -> None:
    """One build/benchmark at a time per device, for every flow run on this Prefect server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for s in sorted(slots - {HOST_SLOT}):
            client.upsert_global_concurrency_limit_by_name(s, 1)


def _save_experiment(root: Path, name: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "exp", "save", "--force", "-n", name],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise PipelineError(f"the pipeline ran, but `dvc exp save -n {name}` failed: {r.stderr.strip()[-500:]}")


@flow(name="edgeforge-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def pipeline(
    checkpoint: str | None = None,
    overrides: list[str] | None = None,
    exp_name: str | None = None,
    root: str = ".",
    checkpoint_sha256: str | None = None,
    host_jobs: int = 1,
    retries: int = 2,
    retry_delay_s: float = 10.0,
    timeouts: dict[str, float] | None = None,
    remote: str | None = None,
    share: bool = True,
) -> dict:
    """Run every stage of dvc.yaml that changed. ``checkpoint``/``overrides``: composed into
    params.yaml from conf/ first (none: params.yaml as it is). ``exp_name``: save the result as
    that DVC experiment. ``retries``: extra attempts of device stages after transient errors.
    ``remote``: the DVC remote whose run-cache the stages share (default: the repository's
    default remote, if any); ``share`` False: none. ``checkpoint`` may be ``models:/<name>/<version>``
    (downloaded here); ``checkpoint_sha256``: refuse a checkpoint whose bytes differ (a run submitted
    to a work pool, see flows/checkpoint_ref.py)."""
    logger = get_run_logger()
    rootp = Path(root).resolve()
    t0 = time.perf_counter()
    with workspace_lock(rootp):
        if checkpoint:
            checkpoint = _checkpoint(rootp, checkpoint, checkpoint_sha256)
        if checkpoint or overrides:
            compose(rootp, checkpoint, list(overrides or []))
        env = {"EDGEFORGE_NO_TABLE": "1"}
        if exp_name:
            env["EDGEFORGE_EXP_NAME"] = exp_name
        ws = Workspace(rootp, env, shared_remote(rootp, remote, share))
        stages = read(rootp)
        probes_cached = _connect(ws, stages) if ws.remote else []
        _refresh_fingerprints(rootp)
        run_id = time.strftime("%Y%m%d-%H%M%S")
        p = plan(rootp, Layout(rootp).run_logs(run_id), stages)
        _device_limits(set(p.slots.values()))
        timeouts = {**TIMEOUT_S, **(timeouts or {})}
        futures = {}
        for s in p.stages:
            device = s.family in DEVICE_FAMILIES and s.target is not None
            opts = dict(
                name=s.family,
                task_run_name=s.name,
                tags=[s.family, p.slots[s.name]] + ([f"target:{s.target}"] if s.target else []),
            )
            if device and retries > 0:
                opts.update(
                    retries=retries,
                    retry_delay_seconds=exponential_backoff(retry_delay_s)(retries),
                    retry_condition_fn=_transient_only,
                )
            futures[s.name] = run_stage.with_options(**opts).submit(
                s,
                ws,
                p.slots[s.name],
                host_jobs,
                timeouts.get(s.family, DEFAULT_TIMEOUT_S),
                str(p.log_dir),
                wait_for=[futures[u] for u in s.upstream if u in futures],
            )
        results, failed, not_run = [], [], []
        for name, fut in futures.items():
            fut.wait()
            state = fut.state
            if state.is_completed():
                r = fut.result()
                if name in probes_cached and r["status"] == "skipped":  # restored before the devices were asked
                    r["status"] = "cached"
                results.append(r)
            elif state.is_failed():
                try:
                    fut.result()
                except Exception as e:
                    failed.append(str(e))
            else:
                not_run.append(name)
        summary = {
            "root": str(rootp),
            "stages": results,
            "failed": failed,
            "not_run": not_run,
            "ran": [r["stage"] for r in results if r["status"] == "ran"],
            "cached": [r["stage"] for r in results if r["status"] == "cached"],
            "remote": ws.remote,
            "seconds": time.perf_counter() - t0,
            "logs": str(p.log_dir),
            "exp_name": exp_name,
        }
        if failed or not_run:
            raise PipelineError(
                f"{len(failed)} stage(s) failed: "
                + "; ".join(failed)
                + (f". Not run (an upstream stage failed): {', '.join(not_run)}" if not_run else "")
                + f". Stages that finished are cached: the next run carries on from them. Logs: {p.log_dir}"
            )
        if exp_name:
            _save_experiment(rootp, exp_name)
        logger.info(
            "pipeline: %d stage(s) ran, %d from the run-cache, %d up to date, in %.1f s",
            len(summary["ran"]),
            len(summary["cached"]),
            len(results) - len(summary["ran"]) - len(summary["cached"]),
            summary["seconds"],
        )
        return summary
