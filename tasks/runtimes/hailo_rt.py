"""Hailo-8/8L as a runtime name (``hailo``, artifact ``.hef``). Builds run Hailo's Dataflow Compiler on the
target, which is the build host (x86-64 Linux with the DFC; locally or over SSH): :func:`build_on_device`
uploads the FP32 ONNX, the calibration set and the model script, the device agent runs the recipe's three
steps (``tasks/agent/hailo.py``, recipe ``tasks.runtimes.hailo_recipe``), and the ``.hef`` and the step logs
come back sha256-verified.

Precisions: Hailo runs INT8 (16-bit for some layers), so fp32/fp16/bf16 are n/a
(``tasks/device/support.py``). Every ``int8-<calibrator>`` builds the same recipe: the DFC calibrates the
FP32 model itself on the calibration split; EdgeForge's calibrator and its Q/DQ model are not used, and
the record says so (``hailo_calibration``).

Running a ``.hef`` needs HailoRT (``hailo_platform``) on a host with a Hailo-8/8L; this process never runs
one: :meth:`HailoRuntime.load` refuses.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tasks.io import sha256_file
from tasks.layout import LAYOUT
from tasks.runtimes import hailo_recipe as recipe
from tasks.runtimes.base import BuildError, BuildOptions, Built, Runtime, Session

HAILORT = (
    "running a .hef needs HailoRT's Python package (hailo_platform, the hailort wheel from Hailo's Developer "
    "Zone) and its PCIe driver on a host with a Hailo-8/8L"
)
CALIBRATION = (
    "the Hailo Dataflow Compiler calibrated the FP32 model itself on the calibration split (hailo optimize "
    "--calib-set-path); EdgeForge's calibrator for {precision} and its Q/DQ model were not used"
)


class HailoRuntime(Runtime):
    name = "hailo"
    artifact_suffix = ".hef"

    def version(self) -> str:
        try:
            import hailo_platform
        except ImportError as e:
            raise BuildError(f"HailoRT is not installed on this machine: {HAILORT}") from e
        return str(getattr(hailo_platform, "__version__", "unknown"))

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        raise BuildError(
            "Hailo builds run the Dataflow Compiler on the target's build host through the device agent "
            "(the build stage: tasks.runtimes.hailo_rt.build_on_device), never in this process"
        )

    builds_on_device = True

    def build_on_device(self, cfg, dev, precision: str, fingerprint: dict, out: Path) -> dict[str, Any]:
        return build_on_device(cfg, dev, precision, fingerprint, out, LAYOUT.split("calib"))

    def not_run_reason(self, fingerprint: dict) -> str | None:
        return f"EdgeForge has no HailoRT session yet, so a .hef is built but not benchmarked or evaluated ({HAILORT})"

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        try:
            import hailo_platform  # noqa: F401
        except ImportError as e:
            raise BuildError(f"cannot run {artifact} here: {HAILORT}; hailo_platform is not installed") from e
        # HailoRT is present but EdgeForge has no HailoRT session yet: say so rather than pretend
        raise BuildError(f"cannot run {artifact}: EdgeForge has no HailoRT session yet ({HAILORT})")


def build_on_device(cfg, dev, precision: str, fingerprint: dict, out: Path, calib_dir: Path) -> dict[str, Any]:
    """Build ``precision`` for the target of ``dev`` (``tasks.agent.client.device(...)``) into ``out``: the
    ``.hef`` and each step's log (``parser.log``, ``optimize.log``, ``compiler.log``). ``calib_dir``: the
    prepared calibration split (``artifacts/prepare/calib``), of which the first ``quant.samples`` images
    become the DFC's calibration set. Returns the build record's fields: ``artifact``, ``runtime_version``
    (the DFC's), ``build_log``, ``device_build_seconds``, ``source_onnx_sha256`` (the FP32 export),
    ``hailo`` (the commands as run, quoted; the facts the logs report; the calibration set's shape) and
    ``hailo_calibration``. Raises ``BuildError`` for a precision the DFC does not build, ``AgentError``
    (from the agent) for a missing compiler or a failing step."""
    if not precision.startswith("int8"):
        raise BuildError(f"{dev.name}: Hailo builds INT8 only; {precision} does not apply (tasks/device/support.py)")
    h = dev.target.hailo
    onnx = LAYOUT.onnx
    if not onnx.is_file():
        raise BuildError(f"{onnx} is missing: the Hailo build starts from the FP32 export; run `dvc repro export`")
    plan = recipe.steps(h)
    script = recipe.model_script(h)
    with tempfile.TemporaryDirectory(prefix="edgeforge-hailo-") as tmp:
        calib = recipe.write_calib(calib_dir, Path(tmp) / recipe.CALIB_NAME, cfg.quant.samples)
        uploads = {recipe.ONNX_NAME: onnx, recipe.CALIB_NAME: Path(tmp) / recipe.CALIB_NAME}
        if script:
            (Path(tmp) / recipe.SCRIPT_NAME).write_text(script)
            uploads[recipe.SCRIPT_NAME] = Path(tmp) / recipe.SCRIPT_NAME
        with dev.scratch(f"build-{precision}") as d:
            for name, local in uploads.items():
                dev.host.put(local, f"{d}/{name}")
            res = dev.call(
                "hailo_build",
                {
                    "steps": [s.to_json() for s in plan],
                    "out_dir": d,
                    "timeout": dev.target.command_timeout_s,
                    "artifact": recipe.HEF,
                },
                # each step has the target's timeout (the agent names the step that ran past it): the call, all of them
                timeout=len(plan) * dev.target.command_timeout_s + 60,
            )
            for name, want in sorted(res["files"].items()):  # each checked against the agent's sha256
                dev.host.get(f"{d}/{name}", out / name, sha256=want)
    if not (out / recipe.HEF).is_file():
        raise BuildError(f"{dev.name}: the Hailo compiler reported success but no {recipe.HEF} came back")
    return {
        "artifact": recipe.HEF,
        "runtime_version": res.get("runtime_version") or "unknown (the DFC printed no version)",
        "build_log": "compiler.log",
        "device_build_seconds": res["build_seconds"],
        "source_onnx_sha256": sha256_file(onnx),
        "hailo": {
            "hw_arch": h.hw_arch,
            "commands": [recipe.command_line(s) for s in plan],
            "model_script": script or None,
            "facts": res["facts"],
            **calib,
        },
        "hailo_calibration": CALIBRATION.format(precision=precision),
    }
