"""The pipeline as a deployment of a Prefect work pool: any number of ``edgeforge worker`` processes
(one per working copy, on any host) take its flow runs; the watcher submits one per new checkpoint.

- The deployment ``edgeforge-pipeline/<pool>`` runs :func:`flows.pipeline.pipeline` (entrypoint
  ``flows.pipeline:pipeline``, imported from the worker's own install) after the pull step
  ``set_working_directory`` into ``$EDGEFORGE_ROOT``, the working copy of the worker that took it.
- Its flow runs carry the tag :data:`TAG`: the automation :data:`ZOMBIE_AUTOMATION` (see
  :mod:`flows.worker`) marks such a run Crashed when its heartbeats stop (its host died).
- A submitted run is recorded in the watcher's state as ``submitted`` with its flow run id; each
  later look records its final state (:func:`settle`).
"""

from __future__ import annotations

from uuid import UUID

FLOW_NAME = "edgeforge-pipeline"
ENTRYPOINT = "flows.pipeline:pipeline"
TAG = "edgeforge-worker"
ROOT_ENV = "EDGEFORGE_ROOT"
PULL_STEPS = [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $" + ROOT_ENV + " }}"}}]
FINAL = {"COMPLETED": "done", "FAILED": "failed", "CRASHED": "crashed", "CANCELLED": "cancelled"}


def deployment_name(pool: str) -> str:
    return f"{FLOW_NAME}/{pool}"


def ensure_deployment(client, pool: str) -> UUID:
    """The process work pool ``pool`` and the deployment ``edgeforge-pipeline/<pool>`` on the
    server ``client`` talks to, created or updated (the same call again changes nothing)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.utilities.callables import parameter_schema
    from prefect.workers.process import ProcessWorker

    from flows.pipeline import pipeline

    try:
        client.read_work_pool(pool)
    except ObjectNotFound:
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
                )
            )
        except ObjectAlreadyExists:  # another worker created it meanwhile
            pass
    flow_id = client.create_flow_from_name(FLOW_NAME)
    return client.create_deployment(  # an upsert: (flow, name) is the deployment's key
        flow_id=flow_id,
        name=pool,
        work_pool_name=pool,
        entrypoint=ENTRYPOINT,
        pull_steps=PULL_STEPS,
        parameter_openapi_schema=parameter_schema(pipeline).model_dump_for_openapi(),
        enforce_parameter_schema=True,
        tags=[TAG],
        description="EdgeForge's pipeline in the working copy of the worker that takes the run ($EDGEFORGE_ROOT)",
    )


def submit(pool: str, parameters: dict) -> str:
    """A flow run of the pool's deployment (not waited for); its id."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from flows.pipeline import PipelineError

    try:
        run = run_deployment(deployment_name(pool), parameters=parameters, timeout=0, as_subflow=False, tags=[TAG])
    except ObjectNotFound:
        raise PipelineError(
            f"no deployment {deployment_name(pool)} on the Prefect server: start `edgeforge worker --pool {pool}` "
            f"on a worker host first (it registers it), or check the pool's name"
        ) from None
    return str(run.id)


def final_state(flow_run_id: str) -> tuple[str, str] | None:
    """(``done``/``failed``/``crashed``/``cancelled``, the state's message) once the run ended, else None."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    state = run.state
    if state is None or state.type.value not in FINAL:
        return None
    return FINAL[state.type.value], state.message or ""


def settle(state, log) -> None:
    """Record the final state of every run ``state`` (flows.watch.State) has as ``submitted``."""
    for sha, entry in list(state.data.items()):
        if entry.get("status") != "submitted":
            continue
        try:
            final = final_state(entry["flow_run_id"])
        except Exception as e:  # the server forgot it (a new database): say so, keep the record
            log.warning("checkpoint %s: cannot read flow run %s (%s)", sha[:12], entry["flow_run_id"], e)
            continue
        if final is None:
            continue
        status, message = final
        fields = {"status": status}
        if status != "done":
            fields["error"] = message[:2000] or f"the flow run ended {status}"
        state.record(sha, **fields)
        log.info("checkpoint %s: flow run %s ended %s", sha[:12], entry["flow_run_id"], status)
