"""Whether a trtexec build of a :class:`~tasks.runtimes.tensorrt_recipe.TrtPlan` made an engine, from its
console output (:mod:`tasks.runtimes.trtexec_log`), and what the build record keeps of it."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from tasks.runtimes import trtexec_log
from tasks.runtimes.base import BuildError

if TYPE_CHECKING:
    from tasks.runtimes.tensorrt_recipe import TrtPlan


def _hint(log: trtexec_log.TrtexecLog, target: str) -> str:
    text = " ".join(log.errors)
    key = f"target.{target}.tensorrt"
    if "Unknown option" in text:
        return (
            "\n  hint: this trtexec rejects an option of the command: the device's TensorRT differs from the "
            f"probed one (re-run probe) or {key}.extra_args holds a flag this version lacks"
        )
    if "Plugin not found" in text or "No importer registered" in text:
        return (
            "\n  hint: TensorRT's ONNX parser lacks an operator of the model: re-export with another opset, "
            f"replace the op, or load a plugin library that implements it ({key}.plugins)"
        )
    if "Cannot create DLA engine" in text:
        return (
            f"\n  hint: this device has no such DLA core (AGX Orin and Xavier have cores 0 and 1; Orin Nano and "
            f"Thor have none): fix or unset {key}.dla_core"
        )
    if "Unable to open library" in text or "Could not load plugin library" in text:
        return f"\n  hint: a plugin library is missing on the device: check the paths in {key}.plugins"
    return ""


def check_build(log_text: str, exit_code: int, plan: TrtPlan, target: str) -> dict[str, Any]:
    """Decide from trtexec's console output whether the engine was built. Returns metadata:
    ``tensorrt_version``, ``trt_build_seconds`` (trtexec's "Engine built in", s), ``trt_precision``
    (its ``Precision:`` line, e.g. "FP32+FP16": the *options*, which a DLA build does not follow),
    ``recipe``, ``flags``, ``command``, ``trt_warnings`` (count of [W] lines) and the plan's
    ``trt_*`` facts (TF32, workspace, timing cache, profile, DLA, compatibility, plugins, the
    ``--loadEngine`` arguments); prefixed so that they cannot overwrite a stage's own
    ``precision``/``build_seconds``. Raises ``BuildError`` naming the target, quoting the ``[E]``
    lines and the exact command otherwise."""
    log = trtexec_log.parse(log_text)
    if exit_code != 0:
        problem = f"trtexec exited with code {exit_code}"
    elif log.status != "passed":
        problem = "the log has no final &&&& PASSED line"
    elif log.build_seconds is None:
        problem = "trtexec passed but reported no built engine (no 'Engine built in' line)"
    elif plan.trt_version and log.tensorrt_version and log.tensorrt_version != plan.trt_version:
        problem = (
            f"the device's trtexec is TensorRT {log.tensorrt_version}, the recipe was planned for "
            f"{plan.trt_version} (stale fingerprint): re-run probe, then build again"
        )
    else:
        return {
            "tensorrt_version": log.tensorrt_version,
            "trt_build_seconds": log.build_seconds,
            "trt_precision": log.precision,
            "recipe": plan.recipe,
            "flags": list(plan.flags),
            "command": shlex.join(plan.argv),
            "trt_warnings": log.warnings_count,
            **plan.meta,
        }
    raise BuildError(
        f"{target}: TensorRT engine build failed: {problem}; {trtexec_log.errors_text(log)}\n"
        f"  command: {shlex.join(plan.argv)}\n  full log: {plan.log} in the build folder{_hint(log, target)}"
    )
