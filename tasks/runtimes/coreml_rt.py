"""Core ML backend: converted on the host from the PyTorch model, run on a Mac.

``build@<target>`` calls :meth:`CoreMLRuntime.convert` on the host (``converts_on_host``): the PyTorch
model -> an ML Program at the precision's compute precision (:mod:`tasks.runtimes.coreml_convert`),
stored as one deterministic zip, ``model.mlpackage.zip``. A Mac (``os.system`` Darwin in the target's
fingerprint) then loads it in the device agent (:mod:`tasks.agent.coreml_model`) and runs one batch
as a check; any other device cannot run Core ML, so the build records it converted, not run
(:meth:`CoreMLRuntime.not_run_reason`), and its benchmark and evaluation are n/a with that reason.

Precisions: fp32, fp16, int8-minmax (int8 weights, fp16 activations: see coreml_convert); the
others do not apply (:mod:`tasks.device.support`).
"""

from __future__ import annotations

from pathlib import Path

from tasks.agent import coreml_model
from tasks.runtimes import coreml_convert
from tasks.runtimes.base import (
    BuildError,
    BuildOptions,
    Built,
    HostSource,
    Runtime,
    Session,
    agent_errors_as_build_errors,
)


class CoreMLSession(coreml_model.CoreMLModel, Session):
    """The agent's Core ML model in this process (macOS only; elsewhere loading raises BuildError)."""

    def __init__(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> None:
        with agent_errors_as_build_errors():
            super().__init__(artifact, threads, choices)


def _system(fingerprint: dict) -> str | None:
    return (fingerprint.get("os") or {}).get("system")


class CoreMLRuntime(Runtime):
    name = "coreml"
    artifact_suffix = ".zip"
    converts_on_host = True

    def version(self) -> str:
        """coremltools' version on this host (the converter; a Mac's agent reports its own)."""
        return coreml_convert.import_coremltools().__version__

    def convert(self, src: HostSource, out_dir: Path) -> Built:
        """``src``'s PyTorch model converted at its precision into ``out_dir/model.mlpackage.zip``;
        ``meta`` says how (coreml_convert.convert_to_zip)."""
        artifact, meta = coreml_convert.convert_to_zip(src, Path(out_dir))
        return Built(artifact, {"runtime_version": self.version(), **meta})

    def not_run_reason(self, fingerprint: dict) -> str | None:
        """Why the device cannot run Core ML (not macOS) and what to do, or None on a Mac. The build
        records it as ``not_run``; benchmark and evaluate are then n/a with it."""
        system = _system(fingerprint)
        if system == "Darwin":
            return None
        return (
            f"Core ML runs only on macOS (this target is {system or 'not macOS: its fingerprint names no OS'}); "
            "point the target at a Mac over SSH to benchmark and evaluate the .mlpackage (conf/target/mac_coreml.yaml)"
        )

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        raise BuildError(
            "Core ML converts from the PyTorch model on the host (CoreMLRuntime.convert), not from the ONNX"
        )

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        return CoreMLSession(artifact, threads, choices)
