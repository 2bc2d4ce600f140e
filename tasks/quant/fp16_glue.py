"""The FP16-glue form of a Q/DQ INT8 model, for TensorRT 11's strongly typed builds.

TensorRT 8.x/10.x build the Q/DQ model with ``--int8 --fp16``: the layers outside Q/DQ pairs (the
"glue": activations, pooling, residual adds, the un-quantized head) may run FP16. TensorRT 11 has no
precision flags; a strongly typed network takes each layer's precision from its ONNX tensor types
(developer guide, "Strongly Typed Networks"), so the FP32-glue model would run that glue FP32/TF32:
the same precision name with different numerics. NVIDIA's Model Optimizer writes the FP16-glue
model for this (``modelopt/onnx/quantization/int8.py``, ``quantize(high_precision_dtype="fp16")``:
``convert_to_f16(onnx_model, keep_io_types=True, low_precision_type="fp16")`` after the ORT Q/DQ
quantizer). This does the
same with ONNX Runtime's float16 converter (what ``quantize@fp16`` uses):

- FP16 weights, biases and activations for every float tensor inside the model, Q/DQ scales in
  FP16 too: QuantizeLinear's input and scale share one type, and DequantizeLinear outputs its
  scale's type (ONNX QuantizeLinear/DequantizeLinear-19: T1/T2 gained float16; opset 13 allows
  float scales only), so the model is moved to opset :data:`GLUE_OPSET` first;
- model inputs and outputs stay FP32, with a Cast at each boundary (``keep_io_types``, like
  ``build.fp16_keep_io_types``), so the runtime feeds and reads it as the FP32-glue model;
- nodes sorted topologically again (the converter appends its boundary Casts at the end of the
  graph, which ONNX's checker refuses), and the result checked by ``onnx.checker`` (full check).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, version_converter

from tasks.quant.common import QuantError, load_model

#: QuantizeLinear/DequantizeLinear-19 take float16 scales (13 allows float only).
GLUE_OPSET = 19
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def toposort(model: onnx.ModelProto) -> None:
    """Reorder ``model``'s top-level nodes so that each comes after the producers of its inputs
    (stable: an already sorted graph keeps its order)."""
    g = model.graph
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending, done = list(g.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise QuantError(f"the graph has a cycle or reads undefined tensors at node {pending[0].name!r}")
        for n in ready:
            known.update(n.output)
        done += ready
        pending = [n for n in pending if n not in ready]
    del g.node[:]
    g.node.extend(done)


def to_half(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
    """ONNX Runtime's float16 conversion of ``model``, nodes sorted topologically again."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        half = convert_float_to_float16(model, keep_io_types=keep_io_types)
    except Exception as e:  # the converter raises bare exceptions on graphs it cannot handle
        raise QuantError(f"FP16 conversion failed: {e}") from e
    toposort(half)
    return half


def float_types(model: onnx.ModelProto) -> dict[str, int]:
    """``{tensor: ONNX element type}`` of every tensor whose type is known after shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def scale_types(model: onnx.ModelProto) -> set[int]:
    """The element types of the Q/DQ nodes' scales (initializers)."""
    inits = {t.name: t.data_type for t in model.graph.initializer}
    return {inits.get(n.input[1], 0) for n in model.graph.node if n.op_type in QDQ_OPS}


def to_fp16_glue(qdq: str | Path | onnx.ModelProto, out: str | Path) -> dict:
    """Write the FP16-glue form of the Q/DQ model ``qdq`` to ``out``. Returns facts for
    ``quantize.json``: ``opset`` written, ``opset_from`` and ``boundary_casts``."""
    model = load_model(qdq)
    if not any(n.op_type in QDQ_OPS for n in model.graph.node):
        raise QuantError(f"{qdq}: no QuantizeLinear/DequantizeLinear nodes; the FP16-glue form is for Q/DQ models")
    src = _opset(model)
    if src < GLUE_OPSET:
        try:
            model = version_converter.convert_version(model, GLUE_OPSET)
        except Exception as e:  # the converter raises bare errors naming the op it has no adapter for
            raise QuantError(
                f"{qdq}: cannot move the Q/DQ model from ONNX opset {src} to {GLUE_OPSET} (FP16 Q/DQ scales need it): "
                f"{e}; re-export with export.opset={GLUE_OPSET} or higher"
            ) from e
    half = to_half(model, keep_io_types=True)
    try:
        onnx.checker.check_model(half, full_check=True)
    except onnx.checker.ValidationError as e:
        raise QuantError(f"{qdq}: the FP16-glue model fails ONNX's checker: {e}") from e
    if scale_types(half) != {TensorProto.FLOAT16}:
        raise QuantError(f"{qdq}: the FP16-glue model still has non-FP16 Q/DQ scales")
    onnx.save(half, str(out))
    return {
        "opset": _opset(half),
        "opset_from": src,
        "boundary_casts": sum(n.op_type == "Cast" and n.name.startswith("graph_") for n in half.graph.node),
    }
