"""OpenVINO backend (CPU plugin here; the device's plugin on a target).

The build converts the precision's ONNX model to OpenVINO IR (``model.xml`` + ``model.bin``)
and compiles it once on the device, as a check that this OpenVINO runs it:

- ``fp32``: the ONNX as is, compiled in f32. The plugin would otherwise pick its lowest float by
  itself (bf16 on a CPU with AVX-512 BF16 or AMX), and "fp32" would not mean FP32. The IR records
  the precision (``rt_info`` ``edgeforge/inference_precision``), and every load passes it on;
- ``fp16``: IR weights compressed to FP16 (``compress_to_fp16``); the CPU plugin decompresses
  them and computes in its own inference precision (f32 on AVX2, bf16/f16 where the CPU has it);
- ``int8-*``: the explicit Q/DQ model (TensorRT's placement, ``model.onnx``): OpenVINO turns each
  Q/DQ pair into a FakeQuantize and its low-precision transformations run the quantized ops as
  int8 kernels, the ops left in float in f32 (as in the Q/DQ model, and in the sensitivity
  search that chose them). The build records how many compiled ops execute in int8
  (``int8_ops``), read from the compiled model's runtime graph, so an INT8 build that silently
  runs in FP32 shows. Every build records the plugin's ``inference_precision``.

Builds and sessions are the device agent's (``tasks.agent.agent``): one implementation for the
host and the devices.
"""

from __future__ import annotations

from pathlib import Path

from tasks.agent import agent
from tasks.runtimes.base import BuildOptions, Built, Runtime, Session, agent_errors_as_build_errors


def onnx_io_names(onnx_path: Path) -> dict[str, list[str]] | None:
    """``{"inputs": [...], "outputs": [...], "not_per_sample": [...]}``: the ONNX graph's input and
    output names in order, which the agent pins on the IR (conversion can add aliases: an FP16 model's
    output Cast becomes ``graph_output_cast_0``, and every other runtime finds outputs by their ONNX
    names), and the outputs whose first dimension is not the input's batch dimension by ONNX shape
    inference (:func:`tasks.agent.agent.not_per_sample`; OpenVINO's own shapes cannot tell). None when
    onnx cannot read the file: the conversion then says why."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # protobuf DecodeError, OSError, ...
        return None
    initializers = {i.name for i in model.graph.initializer}
    names = {
        "inputs": [i.name for i in model.graph.input if i.name not in initializers],
        "outputs": [o.name for o in model.graph.output],
    }
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # shape inference's InferenceError, ...: the agent then reads OpenVINO's shapes
        return names

    def dims(vi: onnx.ValueInfoProto) -> list | None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]

    first = next((i for i in graph.input if i.name not in initializers), None)
    batch = (dims(first) or [None])[0] if first is not None else None
    return {**names, "not_per_sample": agent.not_per_sample(batch, [(o.name, dims(o)) for o in graph.output])}


class OvSession(agent.OvModel, Session):
    def __init__(self, path: Path, threads: int | None, scenario: dict | None = None) -> None:
        with agent_errors_as_build_errors():
            super().__init__(path, threads, scenario)


class OpenVinoRuntime(Runtime):
    name = "openvino"
    artifact_suffix = ".xml"

    def version(self) -> str:
        return agent.runtime_version(self.name)

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        with agent_errors_as_build_errors():
            artifact, meta = agent.build_openvino(
                onnx_path, out_dir, precision, opts.threads, onnx_io_names(onnx_path), opts.extra.get("emulated", False)
            )
        return Built(artifact, meta)

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        return OvSession(artifact, threads, (choices or {}).get("single_stream"))
