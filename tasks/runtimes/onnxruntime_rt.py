"""ONNX Runtime backend (CPU execution provider here; the device's providers on a target)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tasks.runtimes.base import BuildError, BuildOptions, Built, Runtime, Session


class OrtSession(Session):
    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        try:
            self._s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise BuildError(f"onnxruntime cannot load {path}: {e}") from e
        inputs = self._s.get_inputs()
        if len(inputs) != 1:
            raise BuildError(f"{path}: EdgeForge handles single-input image models; this one has "
                             f"{[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self._s.get_outputs()]
        self._dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._s.run(None, {self.input_name: x.astype(self._dtype, copy=False)})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs)}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    artifact_suffix = ".onnx"

    def version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        """ONNX Runtime runs the precision's ONNX model as it is (FP16 weights, Q/DQ INT8):
        the build copies it and proves that this ONNX Runtime loads it."""
        out = out_dir / f"model{self.artifact_suffix}"
        shutil.copyfile(onnx_path, out)
        OrtSession(out, opts.threads)
        return Built(out, {})

    def load(self, artifact: Path, threads: int | None = None) -> Session:
        return OrtSession(artifact, threads)
