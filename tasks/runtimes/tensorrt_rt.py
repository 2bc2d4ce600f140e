"""TensorRT as a runtime name. Engines are built and run on the device, never here: the build
stage plans a ``trtexec`` command (``tasks.runtimes.tensorrt_recipe``) that the device agent runs;
benchmarks time the engine there (agent ``TrtModel``) and run ``trtexec --loadEngine`` beside it,
whose console output :func:`trtexec_figures` reads. ``tensorrt`` is imported lazily, so this module
loads on machines without it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from tasks.runtimes import trtexec_log
from tasks.runtimes.base import BuildError, BuildOptions, Built, Runtime, Session

_ON_DEVICE = (
    "TensorRT engines are built and run on the device: the build stage sends a trtexec command "
    "(tasks.runtimes.tensorrt_recipe) through the device agent"
)


def _tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise BuildError(
            f"TensorRT is not installed on this machine: {_ON_DEVICE}; use a target with "
            "runtime: tensorrt instead of running engines here"
        ) from e
    return tensorrt


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    artifact_suffix = ".engine"

    def version(self) -> str:
        return _tensorrt().__version__

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        raise BuildError(
            f"TensorRT builds happen on the device through the agent (the build stage handles them): {_ON_DEVICE}"
        )

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        _tensorrt()
        raise BuildError(f"running {artifact} in this process is not supported: {_ON_DEVICE}, which also runs them")


def trtexec_figures(raw: dict[str, Any], target: str) -> dict[str, dict[str, Any]]:
    """trtexec's own figure, beside EdgeForge's, from the agent's ``trtexec`` answer (``agent.trtexec_runs``):
    ``{"b<B>": {<trtexec's Performance summary>, "argv", "defaults", "settings", "tensorrt", "warnings"}}``.
    The summary is :class:`trtexec_log.TrtexecLog`'s: ``throughput_qps``; ``latency``, ``gpu_compute_time``,
    ``h2d_latency``, ``d2h_latency``, ``enqueue_time`` (and ``end_to_end_host_latency`` where printed) as
    ``min/max/mean/median/p90/p95/p99`` in ms, as many percentiles as that trtexec prints; totals in s.
    ``defaults``: what this TensorRT's trtexec measures when not told (CUDA graph, data transfers,
    spin-wait); ``settings``: what it was told, the same for every version (like EdgeForge's own loop).
    A batch size the agent did not run is ``{"skipped": why, ...}``. Summaries only: per-iteration times
    are not in trtexec's console output. Raises ``BuildError`` quoting trtexec's errors when a run failed."""
    figures: dict[str, dict[str, Any]] = {}
    for key, run in raw["runs"].items():
        common = {"defaults": raw["defaults"], "settings": raw["settings"], "tensorrt": raw["tensorrt"]}
        if "skipped" in run:
            figures[key] = {"skipped": run["skipped"], **common}
            continue
        log = trtexec_log.parse(run["log"])
        if run["exit_code"] == 0 and log.status == "passed" and log.summary:
            figures[key] = {
                **log.summary,
                "argv": run["argv"],
                **common,
                "tensorrt": log.tensorrt_version or raw["tensorrt"],
                "warnings": log.warnings,
            }
            continue
        problem = (
            f"exited with code {run['exit_code']}"
            if run["exit_code"] != 0
            else "printed no Performance summary"
            if log.status == "passed"
            else "printed no &&&& PASSED line"
        )
        hint = (
            ""
            if key == "b1"
            else "\n  hint: is the batch above the engine's optimisation profile? Builds given "
            "no --maxShapes fix a dynamic batch to 1 (install TensorRT's Python packages on the device and "
            "the agent skips such batch sizes, naming the profile)"
        )
        raise BuildError(
            f"{target}: trtexec --loadEngine (TensorRT {raw['tensorrt']}) {problem} for batch "
            f"{key[1:]}; {trtexec_log.errors_text(log)}\n  command: {shlex.join(run['argv'])}{hint}"
        )
    return figures
