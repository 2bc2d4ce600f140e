"""Before anything is uploaded for a DLA build (``target.<name>.tensorrt.dla_core``): the ONNX model
against DLA's documented layer restrictions, so that a model DLA cannot run at all is refused here
and the layers that will fall back to the GPU are predicted, with why, in the build record.

Sources. TensorRT developer guide, "Working with DLA" -> "DLA Supported Layers and Restrictions"
(docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html), General
Restrictions: "The maximum supported batch size is 4096", "The maximum supported size for non-batch
dimensions is 8192", "DLA does not support dynamic dimensions, so the profile's min, max, and opt values
must be equal for wildcard dimensions". Per layer (the 8.x guide's text of that section): Convolution
and Fully Connected: "Only two spatial dimension operations are supported", kernel size "in the range
[1, 32]", padding "in the range [0, 31]" and "less than the corresponding kernel dimension", stride
"[1, 8]", dilation "[1, 32]", groups "[1, 8192]"; Deconvolution: two spatial dimensions, kernel "[1, 32]"
besides "1x[64, 96, 128] and [64, 96, 128]x1", square kernels and strides in [23 - 32] disabled,
"Padding must be 0", "Grouped deconvolution must be 1", "Dilated deconvolutions must be 1"; Pooling:
kernel "[1, 8]", padding "[0, 7]", stride "[1, 16]"; Activation: "ReLU, Sigmoid, TanH, Clipped ReLU
and Leaky ReLU", Clipped ReLU "values in the range [1, 127]"; ElementWise: "Sum, Sub, Product, Max,
and Min"; Unary: "Only the ABS operation is supported"; Concatenation: "only along the channel axis";
Slice: "Only supports 4-D inputs"; Resize: "The number of scales must be exactly 4", "The first two
elements in scales must be exactly 1", the last two "integer values in the range of [1, 32] in
nearest-neighbor mode and [1, 4] in bilinear mode".

And what real DLA build logs show (tests/fixtures/trtexec, ``*dla*``): ``Layer '<t>_output_0'
(CONSTANT): Unsupported on DLA`` for ONNX Constant nodes feeding elementwise layers; ``REDUCE:
GlobalAveragePool_8`` and ``SHUFFLE`` layers (Reshape/Flatten) among the GPU layers of NVIDIA's DLA
tutorial (onnx-tensorrt imports global pooling as a Reduce layer); ``DLA cores do not support DIV
ElementWise operation``; ``Unary operation: CEIL is not supported on DLA`` (NVIDIA/TensorRT#4486).

Errors (refused, nothing uploaded): an input dimension other than the batch that is dynamic (the
recipe fixes only the batch, to 1), a static batch above 4096 or an input dimension above 8192: DLA
would run none of the layers that read it. Everything else is a warning, a *predicted* GPU fallback:
``--allowGPUFallback`` builds it, the build log says what really fell back, and
``max_gpu_fallback`` bounds that (:mod:`tasks.runtimes.dla_placement`). Releases differ (Orin's DLA
runs more than Xavier's), so a prediction never refuses a build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import helper, numpy_helper

from tasks.runtimes.base import BuildError

MAX_BATCH = 4096
MAX_DIM = 8192
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum"}
_ACTIVATIONS = "ReLU, Sigmoid, TanH, Clipped ReLU and Leaky ReLU"
_OTHER_ACTIVATIONS = set(
    "Elu Selu Celu HardSigmoid HardSwish Softplus Softsign ThresholdedRelu Gelu Mish Swish".split()
)
_UNARY = set(
    "Exp Log Sqrt Neg Reciprocal Floor Ceil Round Erf Sign Not Tan Asin Acos Sinh Cosh Asinh Acosh Atanh".split()
)
_SHUFFLE = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"}
_GLOBAL_POOL = {"GlobalAveragePool", "GlobalMaxPool"}
#: operators the DLA layer list covers (with the limits checked below), or that TensorRT fuses away
_DLA_OPS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu",
    "PRelu", "Add", "Sub", "Mul", "Max", "Min", "Sum", "BatchNormalization", "Gemm", "MatMul", "Concat",
    "Slice", "Resize", "Softmax", "LRN", "Abs", "QuantizeLinear", "DequantizeLinear", "Identity",
    "Dropout", "Constant",
}  # fmt: skip


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    a = next((a for a in node.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


def _const(model: onnx.ModelProto, name: str) -> list[float] | None:
    """The values of an initializer or Constant node output called ``name``, or None."""
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t).ravel().tolist()
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output and n.output[0] == name and _attr(n, "value") is not None:
            return numpy_helper.to_array(_attr(n, "value")).ravel().tolist()
    return None


def _kernel(model: onnx.ModelProto, node: onnx.NodeProto, shapes: dict[str, list]) -> list[int] | None:
    """The kernel's spatial size: the attribute, else the weight's dims (an initializer, or its inferred
    shape: a Q/DQ model's weights come through DequantizeLinear); None when neither tells."""
    k = _attr(node, "kernel_shape")
    if k is None and len(node.input) > 1:  # Conv/ConvTranspose
        w = next((t for t in model.graph.initializer if t.name == node.input[1]), None)
        dims = list(w.dims) if w is not None else shapes.get(node.input[1])
        k = dims[2:] if dims and all(isinstance(d, int) and d > 0 for d in dims) else None
    return None if k is None else list(k)


def _outside(what: str, values: list[int], low: int, high: int) -> str | None:
    bad = [v for v in values if not low <= v <= high]
    return f"{what} {bad[0]} is outside [{low}, {high}]" if bad else None


def _window(model, node, shapes, kernel_range, pad_range, stride_range, dilation_range=None) -> str | None:
    """The first restriction a Conv/pooling node breaks (two spatial dims, kernel, padding, stride)."""
    k = _kernel(model, node, shapes)
    if k is None:
        return None
    if len(k) != 2:
        return f"{len(k)} spatial dimensions: DLA runs two only"
    pads = list(_attr(node, "pads", [0] * 4)) if _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") else []
    checks = [
        _outside("kernel size", k, *kernel_range),
        _outside("padding", pads, *pad_range),
        _outside("stride", list(_attr(node, "strides", [1, 1])), *stride_range),
    ]
    if dilation_range:
        checks.append(_outside("dilation", list(_attr(node, "dilations", [1, 1])), *dilation_range))
    if node.op_type == "Conv" and pads and any(p >= k[i % 2] for i, p in enumerate(pads)):
        checks.append(f"padding {pads} is not smaller than the kernel {k}")
    return next((c for c in checks if c), None)


def _deconv(model: onnx.ModelProto, node: onnx.NodeProto, shapes: dict[str, list]) -> str | None:
    k = _kernel(model, node, shapes)
    if k is None:
        return None
    if len(k) != 2:
        return f"{len(k)} spatial dimensions: DLA runs two only"
    wide = sorted(k) in ([1, 64], [1, 96], [1, 128])
    strides = list(_attr(node, "strides", [1, 1]))
    checks = [
        None if wide else _outside("kernel size", k, 1, 32),
        "square kernels in [23, 32] are disabled on DLA" if k[0] == k[1] and 23 <= k[0] <= 32 else None,
        "square strides in [23, 32] are disabled on DLA" if strides[0] == strides[-1] and 23 <= strides[0] <= 32 else None,
        "padding must be 0" if any(_attr(node, "pads", [0]) or [0]) else None,
        "grouped deconvolution must be 1" if _attr(node, "group", 1) != 1 else None,
        "dilated deconvolution must be 1" if any(d != 1 for d in _attr(node, "dilations", [1, 1])) else None,
    ]  # fmt: skip
    return next((c for c in checks if c), None)


def _clip(model: onnx.ModelProto, node: onnx.NodeProto) -> str | None:
    low = _attr(node, "min") if len(node.input) < 2 else (_const(model, node.input[1]) or [None])[0]
    high = _attr(node, "max") if len(node.input) < 3 else (_const(model, node.input[2]) or [None])[0]
    if low not in (None, 0, 0.0) or (high is not None and not 1 <= high <= 127):
        return f"Clip({low}, {high}) is not a Clipped ReLU with its maximum in [1, 127]"
    return None


def _resize(model: onnx.ModelProto, node: onnx.NodeProto) -> str | None:
    scales = _const(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if not scales:
        return None  # sizes, or scales computed at run time: left to TensorRT
    limit = 32 if _attr(node, "mode", b"nearest") in (b"nearest", "nearest") else 4
    if len(scales) != 4 or scales[:2] != [1, 1]:
        return f"scales {scales}: DLA needs exactly 4 with the first two 1"
    if any(s != int(s) or not 1 <= s <= limit for s in scales[2:]):
        return f"scales {scales[2:]}: height and width scales must be integers in [1, {limit}] for this mode"
    return None


def _reason(model: onnx.ModelProto, node: onnx.NodeProto, shapes: dict[str, list], consumers: dict) -> str | None:
    """Why ``node`` is predicted to run on the GPU, or None. ``shapes``: inferred dims (None where unknown)."""
    op = node.op_type
    if op == "Conv":
        why = _window(model, node, shapes, (1, 32), (0, 31), (1, 8), (1, 32))
        groups = _attr(node, "group", 1)
        return why or (f"groups {groups} is outside [1, 8192]" if not 1 <= groups <= 8192 else None)
    if op == "ConvTranspose":
        return _deconv(model, node, shapes)
    if op in ("MaxPool", "AveragePool"):
        return _window(model, node, shapes, (1, 8), (0, 7), (1, 16))
    if op == "Clip":
        return _clip(model, node)
    if op == "Resize":
        return _resize(model, node)
    if op == "Concat":
        rank, axis = len(shapes.get(node.output[0]) or []), _attr(node, "axis", 1)
        channel = axis in (1, -3) if rank == 4 else axis == 1
        return None if channel else f"concatenation on axis {axis}: DLA concatenates along the channel axis only"
    if op == "Slice":
        rank = len(shapes[node.input[0]]) if node.input[0] in shapes else 4  # unknown: left to TensorRT
        return f"a {rank}-D input: DLA slices 4-D tensors only" if rank != 4 else None
    if op == "Constant":
        fed = sorted({c for c in consumers.get(node.output[0], ()) if c in _ELEMENTWISE})
        return f"a Constant layer feeding {', '.join(fed)}: DLA runs no Constant layers" if fed else None
    if op in ("Div", "Pow"):
        return f"{op.upper()}: DLA's ElementWise layer runs Sum, Sub, Product, Max and Min only"
    if op in _OTHER_ACTIVATIONS:
        return f"{op} is not one of DLA's activations ({_ACTIVATIONS})"
    if op in _UNARY:
        return f"{op}: DLA's Unary layer runs ABS only"
    if op in _GLOBAL_POOL:
        return f"{op} is imported as a Reduce layer, which ran on the GPU in NVIDIA's DLA tutorial build"
    if op in _SHUFFLE:
        return f"{op} becomes a Shuffle layer, which ran on the GPU in NVIDIA's DLA tutorial builds"
    if op not in _DLA_OPS:
        return f"{op} has no DLA layer in 'DLA Supported Layers and Restrictions'"
    return None


def _input_errors(model: onnx.ModelProto) -> list[str]:
    """Graph inputs DLA cannot take: a dynamic non-batch dimension, a batch > 4096, a dimension > 8192."""
    weights = {t.name for t in model.graph.initializer}
    errors = []
    for inp in model.graph.input:
        if inp.name in weights or not inp.type.tensor_type.HasField("shape"):
            continue
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            value = d.dim_value if d.HasField("dim_value") else None
            if value is None and i > 0:
                errors.append(
                    f"input {inp.name} dimension {i} is dynamic ({d.dim_param or '?'}): DLA does not support dynamic "
                    "dimensions (the build fixes only the batch); export the model with a fixed input size"
                )
            elif value is not None and i == 0 and value > MAX_BATCH:
                errors.append(f"input {inp.name} has batch {value}: DLA's maximum batch is {MAX_BATCH}")
            elif value is not None and i > 0 and value > MAX_DIM:
                errors.append(f"input {inp.name} dimension {i} is {value}: DLA's maximum is {MAX_DIM}")
    return errors


def predicted_fallbacks(model: onnx.ModelProto) -> list[dict[str, str]]:
    """``{"op", "node", "reason"}`` of every main-graph node predicted to fall back to the GPU, in graph
    order; ``node`` as TensorRT names its layer (``node_of_<output>`` for an unnamed node)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  shape inference is a help for Slice/Concat ranks, not a requirement
        inferred = model
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in values
        if v.type.tensor_type.HasField("shape")
    }
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    found = []
    for n in model.graph.node:
        why = _reason(model, n, shapes, consumers)
        if why:
            found.append({"op": n.op_type, "node": n.name or f"node_of_{n.output[0]}", "reason": why})
    return found


def check(onnx_path: Path, target: str) -> dict[str, Any]:
    """Refuse (``BuildError``, before any upload) a model DLA cannot take at all; otherwise return the
    build-record field ``dla_lint``: ``predicted_fallbacks`` and ``predicted_share`` (of the nodes,
    Q/DQ left out, like the measured ``gpu_fallback_share``)."""
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001  protobuf's DecodeError, OSError, ...
        raise BuildError(f"{target}: cannot read {onnx_path} to check it against DLA's restrictions: {e}") from e
    errors = _input_errors(model)
    if errors:
        raise BuildError(
            f"{target}: {onnx_path} cannot run on DLA (target.{target}.tensorrt.dla_core is set): "
            + "; ".join(errors)
            + " (TensorRT developer guide, DLA Supported Layers and Restrictions). Nothing was uploaded."
        )
    found = predicted_fallbacks(model)
    counted = sum(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return {"dla_lint": {"predicted_fallbacks": found, "predicted_share": round(len(found) / max(counted, 1), 4)}}
