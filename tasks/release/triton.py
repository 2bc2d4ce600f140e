"""The Triton Inference Server model repository entry of a release (issue 17, deployment contract).

``io`` describes a model's tensors the way :func:`onnx_io` reads them from its ONNX file:
``{"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}``, ``dtype`` a numpy dtype name
(``"float32"``), ``shape`` a list whose items are ints (fixed), strings (a symbolic dimension, e.g.
``"batch"``) or None (unknown). :func:`config_pbtxt` turns it into Triton's ``config.pbtxt`` (the text
format of ``inference.ModelConfig``, Triton's ``model_config.proto``).
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.stage import StageError

# Triton backends EdgeForge writes an entry for, and the model file name each loads by default.
# OpenVINO has none: Triton's OpenVINO backend ships its own OpenVINO build (x86 only), not the
# version the release was validated with, so serving through it would run an unvalidated runtime.
PLATFORMS = {"tensorrt": ("tensorrt_plan", "model.plan"), "onnxruntime": ("onnxruntime_onnx", "model.onnx")}

# ONNX TensorProto element type names -> numpy dtype names -> Triton DataType names
ONNX_DTYPES = {
    "FLOAT": "float32",
    "FLOAT16": "float16",
    "DOUBLE": "float64",
    "BFLOAT16": "bfloat16",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "BOOL": "bool",
    "STRING": "object",
}
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
    "object": "TYPE_STRING",
}


class TritonError(StageError):
    """A model whose tensors Triton's config cannot describe (the message names the tensor)."""


def onnx_io(path: Path) -> dict:
    """The inputs (initializers left out) and outputs of the ONNX file ``path``: name, numpy dtype
    name and shape (int, symbol name, or None) of each, in the graph's order. External weights are
    not loaded: only the graph's signature is read."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}

    def tensor(v) -> dict:
        t = v.type.tensor_type
        name = onnx.TensorProto.DataType.Name(t.elem_type)
        if name not in ONNX_DTYPES:
            raise TritonError(f"{path}: tensor {v.name!r} has ONNX type {name}, which Triton has no type for")
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        return {"name": v.name, "dtype": ONNX_DTYPES[name], "shape": dims}

    return {
        "inputs": [tensor(v) for v in graph.input if v.name not in weights],
        "outputs": [tensor(v) for v in graph.output],
    }


def batched(io: dict) -> bool:
    """Whether Triton may batch the model: every input's and output's first dimension is the first
    input's symbolic (dynamic) batch dimension. A fixed batch, or an output whose rows do not follow
    the batch (NonZero, NonMaxSuppression: see ``agent.not_per_sample``), is served unbatched."""
    tensors = io["inputs"] + io["outputs"]
    batch = io["inputs"][0]["shape"][0] if io["inputs"] and io["inputs"][0]["shape"] else 0
    return isinstance(batch, str) and all(t["shape"] and t["shape"][0] == batch for t in tensors)


def _quote(s: str) -> str:
    # JSON's string escapes (\" \\ \n \uXXXX for control characters) are valid protobuf text format
    return json.dumps(s, ensure_ascii=False)


def _tensors(kind: str, tensors: list[dict], skip: int) -> list[str]:
    lines = [f"{kind} ["]
    for i, t in enumerate(tensors):
        if t["dtype"] not in TRITON_DTYPES:
            raise TritonError(
                f"{kind} {t['name']!r}: dtype {t['dtype']!r} has no Triton type ({', '.join(TRITON_DTYPES)})"
            )
        dims = [d if isinstance(d, int) and d > 0 else -1 for d in t["shape"][skip:]]
        lines += [
            "  {",
            f"    name: {_quote(t['name'])}",
            f"    data_type: {TRITON_DTYPES[t['dtype']]}",
            # a scalar (rank 0) is dims [ 1 ] with a reshape to [ ] in Triton's convention
            f"    dims: [ {', '.join(map(str, dims or [1]))} ]",
            *(["    reshape: { shape: [ ] }"] if not dims else []),
            "  }" + ("," if i < len(tensors) - 1 else ""),
        ]
    return [*lines, "]"]


def config_pbtxt(model: str, runtime: str, io: dict, max_batch: int, comment: str = "") -> str:
    """Triton's ``config.pbtxt`` for ``model`` served by ``runtime`` (a key of :data:`PLATFORMS`):
    the platform, ``max_batch_size`` (``max_batch`` when :func:`batched`, dims then exclude the batch;
    else 0 and full dims), every input and output with its Triton dtype and dims (-1: dynamic), and
    one instance on the GPU (TensorRT) or the CPU (ONNX Runtime: what the release was validated on)."""
    if not io.get("inputs") or not io.get("outputs"):
        raise TritonError(f"{model}: the model's io lists no inputs or no outputs ({io!r}); read it with onnx_io")
    if max_batch < 1:
        raise TritonError(f"{model}: max_batch must be >= 1, got {max_batch}")
    platform = PLATFORMS[runtime][0]
    batch = max_batch if batched(io) else 0
    lines = [f"# {line}" for line in comment.splitlines()] + [
        f"name: {_quote(model)}",
        f'platform: "{platform}"',
        f"max_batch_size: {batch}",
        *_tensors("input", io["inputs"], 1 if batch else 0),
        *_tensors("output", io["outputs"], 1 if batch else 0),
        f"instance_group [ {{ kind: {'KIND_GPU' if runtime == 'tensorrt' else 'KIND_CPU'} count: 1 }} ]",
    ]
    return "\n".join(lines) + "\n"
