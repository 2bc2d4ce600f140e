"""The rollout of a release to the fleet, as a Prefect flow: the canary first, then the other
devices with at most ``release.parallel`` deploying at once; the first device that fails (a refused
bundle, a failed smoke test, a health check that rolled it back) halts the rollout: devices not
started yet are left on their current release, and the ones in flight finish.

Each device's deploy is one Prefect task (:func:`deploy_device`: ``tasks.release.deploy.deploy``),
so the run, its devices and their outcomes show in Prefect's UI and the watcher's server like the
pipeline's stages; the parallelism is the flow's task runner, not a thread pool of our own.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.config import load_config

#: notified of each device's outcome as it settles: (target, outcome dict); the CLI prints them
LISTENERS: list = []


@task(cache_policy=NO_CACHE, persist_result=False)
def deploy_device(root: str, target: str, bundle: str, skip_gate: bool) -> dict:
    """Deploy one device (never raises for what the device refused: the outcome says it)."""
    from tasks.release.deploy import deploy
    from tasks.tracking.deployments import record

    logger = get_run_logger()
    cfg = load_config(Path(root) / "params.yaml")
    out = deploy(cfg, target, Path(bundle), lambda m: logger.info("%s", m), skip_gate)
    record(cfg, Path(bundle), out)
    for listener in LISTENERS:
        listener(target, out.as_dict())
    return out.as_dict()


def order(devices: list[str], canary: str | None) -> list[str]:
    """The rollout order: the canary (when it is one of ``devices``) first, then the rest as given."""
    first = canary if canary in devices else devices[0]
    return [first, *(d for d in devices if d != first)]


@flow(name="edgeforge-rollout", task_runner=ThreadPoolTaskRunner(max_workers=16))
def rollout(
    root: str, bundles: dict[str, str], canary: str | None = None, parallel: int = 2, skip_gate: bool = False
) -> dict:
    """Deploy ``bundles`` ({device target: bundle folder}); returns ``{"outcomes": {target: outcome},
    "halted_by": target or None, "not_started": [targets]}``."""
    logger = get_run_logger()
    devices = order(list(bundles), canary)
    outcomes: dict[str, dict] = {}

    def start(target: str):
        return deploy_device.with_options(task_run_name=f"deploy {target}").submit(
            root, target, bundles[target], skip_gate
        )

    first = devices[0]
    outcomes[first] = start(first).result()
    halted_by = None if outcomes[first]["status"] in ("activated", "unchanged") else first
    queue, running = list(devices[1:]), {}
    while not halted_by and (queue or running):
        while queue and len(running) < max(1, parallel):
            t = queue.pop(0)
            running[t] = start(t)
        done = next(as_completed(list(running.values())))
        t = next(k for k, f in running.items() if f is done)
        del running[t]
        outcomes[t] = done.result()
        if outcomes[t]["status"] not in ("activated", "unchanged"):
            halted_by = t
    for t, f in running.items():  # in flight when the rollout halted: they finish
        outcomes[t] = f.result()
    not_started = [t for t in devices if t not in outcomes]
    if halted_by:
        logger.error("rollout halted by %s: %s; not started: %s", halted_by, outcomes[halted_by]["error"], not_started)
    return {"outcomes": outcomes, "halted_by": halted_by, "not_started": not_started, "order": devices}
