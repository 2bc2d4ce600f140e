"""OpenVINO backend (CPU plugin here; the device's plugin on a target).

The build converts the precision's ONNX model to OpenVINO IR (``model.xml`` + ``model.bin``)
and compiles it once on the device, as a check that this OpenVINO runs it:

- ``fp32``: the ONNX as is;
- ``fp16``: IR weights compressed to FP16 (``compress_to_fp16``); the CPU plugin decompresses
  them and computes in its own inference precision (f32 on AVX2, bf16/f16 where the CPU has it);
- ``int8-*``: the explicit Q/DQ model (TensorRT's placement, ``model.onnx``): OpenVINO turns each
  Q/DQ pair into a FakeQuantize and its low-precision transformations run the quantized ops as
  int8 kernels. The build records how many compiled ops execute in int8 (``int8_ops``), read
  from the compiled model's runtime graph, so an INT8 build that silently runs in FP32 shows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.runtimes.base import BuildError, BuildOptions, Built, Runtime, Session

DEVICE = "CPU"


def _core():
    import openvino as ov

    return ov.Core()


def _compile(core, model, threads: int | None):
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return core.compile_model(model, DEVICE, config)


def runtime_precisions(compiled) -> dict[str, int]:
    """``{precision: count}`` of the ops the plugin executes, e.g. ``{"FP32": 40, "I8": 12}``."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info:
            p = str(info["runtimePrecision"].astype(str)).upper()
            counts[p] = counts.get(p, 0) + 1
    return dict(sorted(counts.items()))


def _keep_onnx_names(model, onnx_path: Path) -> None:
    """Name the IR's inputs and outputs exactly as the ONNX graph's (in order): conversion can
    add aliases (an FP16 model's output Cast becomes ``graph_output_cast_0``), and every other
    runtime finds outputs by their ONNX names."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    for ports, names in ((model.inputs, [i.name for i in graph.input if i.name not in initializers]),
                         (model.outputs, [o.name for o in graph.output])):
        if len(ports) == len(names):
            for port, name in zip(ports, names):
                port.get_tensor().set_names({name})


class OvSession(Session):
    def __init__(self, path: Path, threads: int | None) -> None:
        core = _core()
        try:
            model = core.read_model(str(path))
            self._compiled = _compile(core, model, threads)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with its own text
            raise BuildError(f"openvino cannot load {path}: {str(e).strip().splitlines()[0][:500]}") from e
        if len(model.inputs) != 1:
            raise BuildError(f"{path}: EdgeForge handles single-input image models; this one has "
                             f"{[i.get_any_name() for i in model.inputs]}")
        # names from the IR as saved: compilation merges a removed node's tensor names into its neighbour's
        self.input_name = model.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() for o in model.outputs]
        self._request = self._compiled.create_infer_request()

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return {n: np.asarray(res[o], dtype=np.float32) for n, o in zip(self.output_names, self._compiled.outputs)}


class OpenVinoRuntime(Runtime):
    name = "openvino"
    artifact_suffix = ".xml"

    def version(self) -> str:
        import openvino as ov

        return ov.get_version()

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        import openvino as ov

        out = out_dir / f"model{self.artifact_suffix}"
        try:
            model = ov.convert_model(str(onnx_path))
            _keep_onnx_names(model, onnx_path)
            ov.save_model(model, str(out), compress_to_fp16=precision == "fp16")
        except Exception as e:
            raise BuildError(f"openvino could not convert {onnx_path}: {str(e).strip().splitlines()[0][:500]}") from e
        core = _core()
        try:
            compiled = _compile(core, core.read_model(str(out)), opts.threads)
        except Exception as e:
            raise BuildError(f"openvino converted {onnx_path} but cannot compile it for {DEVICE}: "
                             f"{str(e).strip().splitlines()[0][:500]}") from e
        from tasks.io import sha256_file

        ops = runtime_precisions(compiled)
        bin_path = out.with_suffix(".bin")
        meta = {
            "device": DEVICE,
            "weights_file": bin_path.name,
            "weights_sha256": sha256_file(bin_path),
            "size_bytes": out.stat().st_size + bin_path.stat().st_size,
            "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "runtime_precisions": ops,
            "int8_ops": ops.get("I8", 0) + ops.get("U8", 0),
        }
        if precision.startswith("int8-") and meta["int8_ops"] == 0:
            raise BuildError(f"openvino compiled {onnx_path} with no op executing in int8 (runtime precisions "
                             f"{ops}): its Q/DQ nodes were not turned into int8 kernels")
        return Built(out, meta)

    def load(self, artifact: Path, threads: int | None = None) -> Session:
        return OvSession(artifact, threads)
