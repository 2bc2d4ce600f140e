"""FLOPs of an ONNX graph from its inferred tensor shapes (for roofline efficiency).

"FLOPs" here means: multiply-accumulates x 2 for the linear ops (Conv, ConvTranspose, Gemm,
MatMul and their integer / QLinear forms), plus a per-element count for the rest: 1 per output
element for elementwise ops and activations, 2 for BatchNormalization (scale + shift), 5 for
Softmax/LogSoftmax (max, subtract, exp, sum, divide) and the Layer/Instance/Group norms, the
kernel size per output element for MaxPool/AveragePool/LpPool, one per input element for global
pools and reductions. Shape-only ops, Q/DQ and casts count 0. The roofline uses this same count for
every precision: an INT8 Q/DQ model and its FP32 source give the same number, since a Conv fed by
``DequantizeLinear(int8 weight)`` still sees its weight's shape.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import onnx

_LINEAR_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
_BIAS = {"Conv": 2, "ConvTranspose": 2, "QLinearConv": 8}
_MATMUL_A = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0}
_ELEMENTWISE = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Exp",
    "Log",
    "Erf",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Mish",
    "Clip",
    "Max",
    "Min",
    "Mean",
    "Sum",
    "Sin",
    "Cos",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Where",
    "Equal",
    "Greater",
    "Less",
    "GreaterOrEqual",
    "LessOrEqual",
    "Resize",
    "Upsample",
}
_PER_ELEMENT = {
    "BatchNormalization": 2,
    "Softmax": 5,
    "LogSoftmax": 5,
    "LayerNormalization": 5,
    "InstanceNormalization": 5,
    "GroupNormalization": 5,
}
_PER_INPUT = {
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    "ArgMax",
    "ArgMin",
}
_POOL = {"MaxPool", "AveragePool", "LpPool"}
_ZERO = {
    "Reshape",
    "Flatten",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Shape",
    "Size",
    "Gather",
    "GatherElements",
    "GatherND",
    "Identity",
    "Squeeze",
    "Unsqueeze",
    "Cast",
    "CastLike",
    "Constant",
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Pad",
    "Range",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "Dropout",
    "DepthToSpace",
    "SpaceToDepth",
    "NonZero",
    "ScatterND",
    "ScatterElements",
    "Not",
    "And",
    "Or",
    "TopK",
}


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _fix_batch(model: onnx.ModelProto, batch_size: int) -> None:
    """Set dim 0 of every non-initializer graph input to ``batch_size`` (in place)."""
    inits = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            static = d.HasField("dim_value") and d.dim_value > 0
            if i == 0 and not static:
                d.Clear()
                d.dim_value = batch_size
            elif i == 0 and d.dim_value != batch_size:
                raise ValueError(
                    f"graph input '{inp.name}' has a static batch of {d.dim_value}; "
                    f"count with batch_size={d.dim_value} or re-export with a dynamic batch"
                )
            elif not static:
                raise ValueError(
                    f"graph input '{inp.name}' has dynamic dim {i} ('{d.dim_param or '?'}'); "
                    "only the batch dim (0) may be dynamic: re-export with a fixed input size"
                )
    # stale symbolic shapes would fight the now-static ones during inference
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def _toposort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so producers precede consumers (in place). Some converters (e.g. the fp16
    one) append their input Casts last; ONNX Runtime copes, shape inference does not."""
    start = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    ready = set(start)
    for n in graph.node:  # the common case: already sorted, one pass
        if not set(n.input) <= ready:
            break
        ready |= set(n.output)
    else:
        return
    ready, pending, ordered = start, list(graph.node), []
    while pending:
        rest = [n for n in pending if not set(n.input) <= ready]
        done = [n for n in pending if set(n.input) <= ready]
        if not done:  # a cycle or a dangling input: keep the remaining order as it is
            ordered += rest
            break
        ordered += done
        ready |= {o for n in done for o in n.output}
        pending = rest
    nodes = [copy.deepcopy(n) for n in ordered]
    del graph.node[:]
    graph.node.extend(nodes)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Tensor name -> static shape, for every tensor whose shape is fully known."""
    known: dict[str, tuple[int, ...]] = {t.name: tuple(t.dims) for t in model.graph.initializer}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            dims = tt.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                known[vi.name] = tuple(d.dim_value for d in dims)
    return known


def _node_flops(node: onnx.NodeProto, shape: dict) -> int | None:
    """FLOPs of one node, or None when a shape it needs is unknown or the op has no rule."""
    op, ins, outs = node.op_type, list(node.input), list(node.output)

    def sh(name: str) -> tuple[int, ...] | None:
        return shape.get(name) if name else None

    y = sh(outs[0]) if outs else None
    if op in _ZERO:
        return 0
    if y is None:
        return None
    if op in _LINEAR_WEIGHT:
        w = sh(ins[_LINEAR_WEIGHT[op]])
        if w is None:
            return None
        bias_in = _BIAS.get(op)
        bias = _numel(y) if bias_in is not None and len(ins) > bias_in and ins[bias_in] else 0
        if op == "ConvTranspose":  # each input element scatters into Cout/group x kernel outputs
            x = sh(ins[0])
            return None if x is None else 2 * _numel(x) * _numel(w[1:]) + bias
        return 2 * _numel(y) * _numel(w[1:]) + bias  # w[1:] = Cin/group x kernel
    if op == "Gemm":
        a = sh(ins[0])
        if a is None:
            return None
        trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
        k = a[0] if trans_a else a[1]  # y = (M, N) already reflects transA / transB
        bias = _numel(y) if len(ins) > 2 and ins[2] else 0
        return 2 * _numel(y) * k + bias
    if op in _MATMUL_A:
        a = sh(ins[_MATMUL_A[op]])
        return None if a is None else 2 * _numel(y) * a[-1]
    if op in _ELEMENTWISE:
        return _numel(y)
    if op in _PER_ELEMENT:
        return _PER_ELEMENT[op] * _numel(y)
    if op in _PER_INPUT:
        x = sh(ins[0])
        return None if x is None else _numel(x)
    if op in _POOL:
        kernel = next((list(at.ints) for at in node.attribute if at.name == "kernel_shape"), None)
        return None if kernel is None else _numel(y) * _numel(tuple(kernel))
    return None


def count_flops(model: str | Path | onnx.ModelProto, batch_size: int = 1) -> dict:
    """Count the FLOPs of one forward pass over a batch of ``batch_size``.

    Args:
        model: path to an ``.onnx`` file, or a loaded ModelProto (not modified).
        batch_size: value for the dynamic dim 0 of every graph input.

    Returns:
        ``{"total": int FLOPs per batch, "per_sample": float (total / batch_size),
        "by_op": {op_type: int FLOPs}, "nodes": [{"name", "op_type", "flops": int or None}],
        "uncounted": sorted op types that could not be counted (an output or needed input shape
        stayed unknown after shape inference, or an op type without a rule here)}``. Nodes inside
        subgraphs (If/Loop/Scan bodies) are not visited; those ops show up as uncounted.

    Raises:
        ValueError: ``batch_size`` < 1, a dynamic non-batch input dim (names the input), or a
            static batch different from ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    m = onnx.load(str(model)) if isinstance(model, (str, Path)) else copy.deepcopy(model)
    _fix_batch(m, batch_size)
    _toposort(m.graph)
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shape = _shapes(m)
    nodes, by_op, uncounted = [], {}, set()
    for i, node in enumerate(m.graph.node):
        f = _node_flops(node, shape)
        nodes.append({"name": node.name or f"{node.op_type}_{i}", "op_type": node.op_type, "flops": f})
        if f is None:
            uncounted.add(node.op_type)
        else:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + f
    total = sum(by_op.values())
    return {
        "total": total,
        "per_sample": total / batch_size,
        "by_op": by_op,
        "nodes": nodes,
        "uncounted": sorted(uncounted),
    }
