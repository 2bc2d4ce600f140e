"""ONNX Runtime backend (CPU execution provider here; the device's providers on a target)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx

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

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._s.run(None, {self.input_name: x})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs)}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    artifact_suffix = ".onnx"

    def version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        out = out_dir / f"model{self.artifact_suffix}"
        if precision == "fp32":
            shutil.copyfile(onnx_path, out)
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = onnx.load(str(onnx_path))
            try:
                half = convert_float_to_float16(model, keep_io_types=opts.fp16_keep_io_types)
            except Exception as e:  # the converter raises bare exceptions on odd graphs
                raise BuildError(f"FP16 conversion of {onnx_path} failed: {e}") from e
            onnx.save(half, str(out))
        else:
            raise BuildError(f"onnxruntime build: precision {precision!r} is not supported here "
                             "(fp32, fp16; int8 comes from the calibrate stage)")
        # A build is only a build if the runtime accepts it: load it once.
        OrtSession(out, opts.threads)
        return Built(out, {"keep_io_types": opts.fp16_keep_io_types if precision == "fp16" else None})

    def load(self, artifact: Path, threads: int | None = None) -> Session:
        return OrtSession(artifact, threads)
