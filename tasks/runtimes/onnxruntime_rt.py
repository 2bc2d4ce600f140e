"""ONNX Runtime backend (CPU execution provider here; the device's providers on a target).

Sessions and builds are the device agent's (``tasks.agent.agent``), so the host and the device
run one implementation; here they stay on the CPU execution provider."""

from __future__ import annotations

from pathlib import Path

from tasks.agent import agent
from tasks.runtimes.base import BuildOptions, Built, Runtime, Session, agent_errors_as_build_errors

PROVIDERS = ["CPUExecutionProvider"]


class OrtSession(agent.OrtModel, Session):
    def __init__(self, path: Path, threads: int | None, choices: dict | None = None) -> None:
        with agent_errors_as_build_errors():
            super().__init__(path, threads, PROVIDERS, choices=choices)


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    artifact_suffix = ".onnx"

    def version(self) -> str:
        return agent.runtime_version(self.name)

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        """ONNX Runtime runs the precision's ONNX model as it is (FP16 weights, Q/DQ INT8):
        the build copies it and proves that this ONNX Runtime loads it (a device's agent saves
        the graph its own ONNX Runtime optimized instead)."""
        with agent_errors_as_build_errors():
            artifact, meta = agent.build_onnxruntime(
                onnx_path, out_dir, opts.threads, optimize=False, providers=PROVIDERS
            )
        return Built(artifact, meta)

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        return OrtSession(artifact, threads, choices)
