"""``edgeforge worker``: a Prefect process worker for EdgeForge's work pool, run in a working copy
(a clone of the project, set up with ``make setup``) on any host.

On start it makes sure, on the Prefect server at ``PREFECT_API_URL``, that the work pool and the
deployment ``edgeforge-pipeline/<pool>`` exist (:func:`flows.pool.ensure_deployment`) and that the
automation :data:`ZOMBIE_AUTOMATION` does; then it takes the pool's flow runs one at a time (one
run per working copy: :func:`flows.pipeline.workspace_lock`), each in a subprocess whose working
folder is this working copy (``EDGEFORGE_ROOT``).

A dead host cannot report its runs: each flow run sends a heartbeat every ``--heartbeat`` seconds,
and the automation marks a run of the pool's deployments Crashed when none came for
``--crash-after`` seconds (Prefect's "zombie flow runs" recipe; the server's triggers service runs
it). Killing only the worker process leaves its flow-run subprocess running to its end: that run
is not crashed, it finishes and reports.
"""

from __future__ import annotations

import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

from flows.pool import ROOT_ENV, TAG, ensure_deployment

ZOMBIE_AUTOMATION = "edgeforge: crash flow runs whose heartbeats stopped"
HEARTBEAT_S = 30  # Prefect's minimum
CRASH_AFTER_S = 120


class WorkerError(RuntimeError):
    """The worker cannot start; the message says why and what to do."""


def check(root: Path, heartbeat_s: int, crash_after_s: int) -> str:
    """The Prefect API URL, after the checks a worker needs before it touches the server."""
    from prefect.settings import PREFECT_API_URL

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if not url:
        raise WorkerError(
            "set PREFECT_API_URL to your Prefect server's API (prefect server start on the server host), "
            "e.g. PREFECT_API_URL=http://server:4200/api"
        )
    if not (root / "dvc.yaml").is_file() or not (root / ".dvc").is_dir():
        raise WorkerError(
            f"{root} is not a working copy of the project (no dvc.yaml and .dvc/ there): run it in a "
            f"clone (git clone ...; make setup), or pass -C <the clone>"
        )
    if heartbeat_s < HEARTBEAT_S:
        raise WorkerError(f"--heartbeat {heartbeat_s}: Prefect sends flow-run heartbeats every 30 s at most")
    if crash_after_s <= heartbeat_s:
        raise WorkerError(
            f"--crash-after {crash_after_s} must be longer than --heartbeat {heartbeat_s} (or live runs are crashed)"
        )
    return url


def ensure_zombie_automation(client, crash_after_s: int) -> None:
    """The automation that marks an EdgeForge worker's flow run Crashed once its heartbeats stop
    for ``crash_after_s`` seconds; created, or updated to ``crash_after_s`` (the last worker to
    start sets it: give every worker the same --crash-after)."""
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    automation = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="A flow run of EdgeForge's work pools stopped sending heartbeats: its worker's host died",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=crash_after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {crash_after_s} s: the worker's host or its flow-run process died",
            )
        ],
    )
    existing = client.read_automations_by_name(ZOMBIE_AUTOMATION)
    if not existing:
        client.create_automation(automation)
        return
    if existing[0].trigger.within != automation.trigger.within or not existing[0].enabled:
        client.update_automation(existing[0].id, automation)
    for extra in existing[1:]:  # two workers started at once
        client.delete_automation(extra.id)


def run(root: Path, pool: str, name: str | None, heartbeat_s: int, crash_after_s: int) -> None:
    """Register (idempotently) and serve the pool's runs in ``root`` until interrupted."""
    import anyio
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.workers.process import ProcessWorker

    root = root.resolve()
    url = check(root, heartbeat_s, crash_after_s)
    code = str(Path(__file__).resolve().parents[1])  # the flow runs import the same EdgeForge as this worker
    os.environ.update(
        {
            "PREFECT_API_URL": url,
            ROOT_ENV: str(root),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat_s),
            "PYTHONPATH": os.pathsep.join(
                [code] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            ),
            # DVC runs each stage as `python -m tasks.<stage>`: this venv's python first
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    try:
        with get_client(sync_client=True) as client:
            ensure_deployment(client, pool)
            ensure_zombie_automation(client, crash_after_s)
    except (OSError, httpx.HTTPError) as e:
        raise WorkerError(
            f"cannot reach the Prefect server at {url} ({e}); is `prefect server start` running?"
        ) from None
    name = (name or f"{socket.gethostname()}-{root.name}").replace("/", "_").replace("%", "_")
    print(
        f"edgeforge worker {name}: taking runs of {pool!r} (deployment edgeforge-pipeline/{pool}) in {root}; "
        f"server {url}",
        flush=True,
    )

    async def serve() -> None:
        async with ProcessWorker(work_pool_name=pool, name=name, limit=1) as worker:
            await worker.start()

    anyio.run(serve)
