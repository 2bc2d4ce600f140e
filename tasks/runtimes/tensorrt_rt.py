"""TensorRT as a runtime name. Engines are built and run on the device, never here: the build
stage plans a ``trtexec`` command (``tasks.runtimes.tensorrt_recipe``) that the device agent runs.
``tensorrt`` is imported lazily, so this module loads on machines without it."""
from __future__ import annotations

from pathlib import Path

from tasks.runtimes.base import BuildError, BuildOptions, Built, Runtime, Session

_ON_DEVICE = ("TensorRT engines are built and run on the device: the build stage sends a trtexec command "
              "(tasks.runtimes.tensorrt_recipe) through the device agent")


def _tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise BuildError(f"TensorRT is not installed on this machine: {_ON_DEVICE}; use a target with "
                         "runtime: tensorrt instead of running engines here") from e
    return tensorrt


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    artifact_suffix = ".engine"

    def version(self) -> str:
        return _tensorrt().__version__

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        raise BuildError(f"TensorRT builds happen on the device through the agent (the build stage handles them): "
                         f"{_ON_DEVICE}")

    def load(self, artifact: Path, threads: int | None = None) -> Session:
        _tensorrt()
        raise BuildError(f"running {artifact} in this process is not supported: {_ON_DEVICE}, which also runs them")
