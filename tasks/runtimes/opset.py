"""Hand TensorRT's ONNX parser an opset it reads: down-convert a model to the device parser's
highest opset (``trt_lint.max_opset``), check the result with ONNX's strict checker, and verify
with ONNX Runtime that it computes what the original computes on real inputs before anything is
uploaded. The export precedes the device probe in the DAG, so the build does this per target.

Why not ``onnx.version_converter`` alone: it has down-adapters for the opset-18 reductions and
``Resize`` but none for ``Split`` 18 ("No Adapter From Version $18 for Split"), ``Pad`` 18, nor for
the type-only revisions of opsets 14-17 (``Relu``-14, ``Reshape``-14, ``Add``-14, ``Identity``-16,
...), so no opset-18 CNN reaches opset 13 (TensorRT 8.2) with it (onnx 1.23). Here each node whose
operator changed between the two opsets is either

- rewritten by an adapter for the changes that move data between inputs and attributes: opset-18
  reductions (``axes`` input -> attribute, which onnx-tensorrt 8.x - 9.x reads), ``Split``-18
  (``num_outputs`` -> equal split or a ``split`` input), ``Pad``-18 (``axes`` input -> full
  ``pads``), ``Reshape``-14's ``allowzero=1`` (dropped unless a constant shape holds a 0), and two
  changed defaults/values (``RoiAlign``-16's ``coordinate_transformation_mode``, ``GridSample``-20's
  mode names); or
- kept as it is when the older schema accepts it: same inputs and outputs, and every attribute
  known there or set to the value that means the older behaviour (ONNX adds attributes with the old
  behaviour as default, e.g. ``Cast``'s ``saturate=1``); types are then checked by
  ``onnx.checker`` (full check) at the target opset.

Anything else is refused with the ``export.opset`` to re-export with. Node and tensor names are
kept, so a TensorRT calibration cache written for the original still matches. Models with
model-local functions are refused (their bodies carry their own opset imports).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tasks.data.split import Split
from tasks.runtimes import trt_lint
from tasks.runtimes.base import BuildError

#: opset-18 reductions whose ``axes`` moved from attribute to input (ReduceSum moved at 13)
REDUCTIONS = frozenset(
    "ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSumSquare".split()
)
#: attributes whose explicit value means the older behaviour though the schema gives no default
_NEUTRAL: dict[tuple[str, str], Callable[[Any], bool]] = {
    ("AveragePool", "dilations"): lambda v: all(d == 1 for d in v),  # AveragePool-19
}
#: verification: |converted - original| <= ATOL_REL * max(1, max|original|), per output
ATOL_REL = 1e-5
SAMPLES = 8


class OpsetError(BuildError):
    """The model cannot be handed to this TensorRT's parser at an opset it reads."""


class _Ctx:
    def __init__(self, model: onnx.ModelProto, src: int, dst: int) -> None:
        self.src, self.dst = src, dst
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        inferred = onnx.shape_inference.infer_shapes(model)
        self.shapes: dict[str, list[int | None]] = {}
        for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                dims = vi.type.tensor_type.shape.dim
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        self.new_inits: list[onnx.TensorProto] = []
        self.dropped: set[str] = set()  # constant inputs the rewritten nodes no longer read
        self.notes: list[str] = []

    def const(self, name: str, node: onnx.NodeProto, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.refuse(node, f"its {what} input {name!r} is computed, not a constant")
        return self.consts[name]

    def add_const(self, name: str, value: np.ndarray) -> str:
        name = f"{name}__opset{self.dst}"
        self.new_inits.append(numpy_helper.from_array(value, name))
        self.consts[name] = value
        return name

    def refuse(self, node: onnx.NodeProto, why: str) -> OpsetError:
        return OpsetError(f"{node.op_type} node {_label(node)!r}: {why}")


def _label(node: onnx.NodeProto) -> str:
    return node.name or (f"node_of_{node.output[0]}" if node.output else node.op_type)


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _set(node: onnx.NodeProto, name: str, value: Any = None) -> None:
    """Remove attribute ``name``; add it back with ``value`` unless that is None."""
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    if value is not None:
        node.attribute.append(helper.make_attribute(name, value))


def _used(inputs) -> int:
    """How many inputs a node passes, not counting trailing empty (omitted optional) ones."""
    n = len(inputs)
    while n and not inputs[n - 1]:
        n -= 1
    return n


def _trim(node: onnx.NodeProto, n: int, ctx: _Ctx) -> None:
    """Keep the first ``n`` inputs (less trailing empty ones); remember the dropped ones."""
    ctx.dropped.update(i for i in node.input[n:] if i)
    inputs = list(node.input[: _used(node.input[:n])])
    del node.input[:]
    node.input.extend(inputs)


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs reads."""
    names = {i for n in graph.node for i in n.input}
    for n in graph.node:
        for a in n.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                names |= _names_read(sub)
    return names


def _reduce(node: onnx.NodeProto, ctx: _Ctx) -> None:
    noop = _attr(node, "noop_with_empty_axes", 0)
    has_axes = len(node.input) > 1 and node.input[1]
    axes = [int(a) for a in ctx.const(node.input[1], node, "axes").ravel()] if has_axes else []
    if not axes and noop:
        raise ctx.refuse(node, "empty axes with noop_with_empty_axes=1 (an identity) has no older form")
    _set(node, "noop_with_empty_axes")
    _set(node, "axes", axes or None)  # no axes: reduce over all of them, in every opset
    _trim(node, 1, ctx)
    ctx.notes.append(f"{node.op_type} {_label(node)}: axes {axes or 'all'} as attribute")


def _split(node: onnx.NodeProto, ctx: _Ctx) -> None:
    n = _attr(node, "num_outputs")
    _set(node, "num_outputs")
    if n is None or (len(node.input) > 1 and node.input[1]):
        return  # sizes given as the `split` input: the opset-13 form already
    dims = ctx.shapes.get(node.input[0])
    axis = _attr(node, "axis", 0)
    dim = dims[axis] if dims and -len(dims) <= axis < len(dims) else None
    if dim is None:
        raise ctx.refuse(node, f"num_outputs={n} over a dimension of unknown size cannot be written as sizes")
    if dim % n == 0:
        return  # opset 13-17 split equally into len(outputs) parts: the same thing
    chunk = -(-dim // n)  # opset 18: ceil-sized parts, the last one smaller
    sizes = np.array([chunk] * (n - 1) + [dim - chunk * (n - 1)], dtype=np.int64)
    node.input.append(ctx.add_const(f"{_label(node)}_split", sizes))
    ctx.notes.append(f"Split {_label(node)}: num_outputs={n} as sizes {sizes.tolist()}")


def _pad(node: onnx.NodeProto, ctx: _Ctx) -> None:
    if _attr(node, "mode", b"constant") == b"wrap":
        raise ctx.refuse(node, "mode 'wrap' (opset 19) has no older form")
    if len(node.input) > 3 and node.input[3]:
        rank = len(ctx.shapes.get(node.input[0]) or [])
        axes = [int(a) % rank for a in ctx.const(node.input[3], node, "axes").ravel()] if rank else []
        pads = ctx.const(node.input[1], node, "pads").ravel()
        if not rank or len(pads) != 2 * len(axes):
            raise ctx.refuse(node, "its axes input cannot be expanded to pads of every axis (rank unknown)")
        full = np.zeros(2 * rank, dtype=np.int64)
        for i, a in enumerate(axes):
            full[a], full[a + rank] = pads[i], pads[i + len(axes)]
        ctx.dropped.add(node.input[1])
        node.input[1] = ctx.add_const(f"{_label(node)}_pads", full)
        ctx.notes.append(f"Pad {_label(node)}: axes {axes} as pads of every axis")
    _trim(node, 3, ctx)


def _reshape(node: onnx.NodeProto, ctx: _Ctx) -> None:
    # allowzero=1 (Reshape-14; torch's dynamo exporter writes it) reads a 0 in the shape as a
    # zero-sized dimension, Reshape-13 as "copy the input's": the same unless a shape holds a 0,
    # which with allowzero=1 only an empty tensor can
    shape = ctx.consts.get(node.input[1])
    if _attr(node, "allowzero", 0) and shape is not None and (shape == 0).any():
        raise ctx.refuse(node, f"allowzero=1 with a 0 in its shape {shape.tolist()} has no Reshape-13 form")
    _set(node, "allowzero")


def _roi_align(node: onnx.NodeProto, ctx: _Ctx) -> None:
    # RoiAlign-16 added coordinate_transformation_mode defaulting to "half_pixel"; RoiAlign-10
    # behaves as "output_half_pixel" (ONNX Changelog, RoiAlign-16)
    if _attr(node, "coordinate_transformation_mode", b"half_pixel") != b"output_half_pixel":
        raise ctx.refuse(node, "coordinate_transformation_mode 'half_pixel' has no RoiAlign-10 form")
    _set(node, "coordinate_transformation_mode")


def _grid_sample(node: onnx.NodeProto, ctx: _Ctx) -> None:
    # GridSample-20 renamed the modes (bilinear -> linear, bicubic -> cubic) and allows N-D input
    mode = _attr(node, "mode", b"linear")
    _set(node, "mode", {b"linear": "bilinear", b"cubic": "bicubic"}.get(mode, mode.decode()))


#: op type -> (the opset whose change it adapts, adapter)
ADAPTERS: dict[str, tuple[int, Callable[[onnx.NodeProto, _Ctx], None]]] = {
    **{op: (18, _reduce) for op in REDUCTIONS},
    "Split": (18, _split),
    "Pad": (18, _pad),
    "Reshape": (14, _reshape),
    "RoiAlign": (16, _roi_align),
    "GridSample": (20, _grid_sample),
}


def _compatible(node: onnx.NodeProto, ctx: _Ctx, old: Any, new: Any) -> None:
    """Keep ``node`` as the older schema ``old`` reads it, or refuse; ``new`` is its current schema."""
    for a in list(node.attribute):
        if a.name in old.attributes:
            continue
        declared = new.attributes.get(a.name)
        default = declared.default_value if declared is not None else None
        value = helper.get_attribute_value(a)
        neutral = _NEUTRAL.get((node.op_type, a.name))
        if (default is not None and default.type and value == helper.get_attribute_value(default)) or (
            neutral and neutral(value)
        ):
            _set(node, a.name)  # its value is what the older version always did
        else:
            raise ctx.refuse(
                node,
                f"attribute {a.name}={value!r} has no equivalent in {node.op_type}-{old.since_version} (opset {ctx.dst})",
            )
    if _used(node.input) > old.max_input or len(node.output) > old.max_output:
        raise ctx.refuse(node, f"uses more inputs or outputs than {node.op_type}-{old.since_version} has")
    _trim(node, len(node.input), ctx)


def _convert_graph(graph: onnx.GraphProto, ctx: _Ctx) -> None:
    for node in graph.node:
        for a in node.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                _convert_graph(sub, ctx)
        if node.domain not in ("", "ai.onnx"):
            continue  # other domains keep their own opset import
        try:
            new = onnx.defs.get_schema(node.op_type, ctx.src, "")
        except onnx.defs.SchemaError:
            raise ctx.refuse(node, f"no ONNX operator {node.op_type} exists in opset {ctx.src}") from None
        try:
            old = onnx.defs.get_schema(node.op_type, ctx.dst, "")
        except onnx.defs.SchemaError:
            raise ctx.refuse(node, f"the operator first appears in opset {new.since_version}") from None
        if old.since_version == new.since_version:
            continue
        since, adapter = ADAPTERS.get(node.op_type, (None, None))
        if adapter is not None and ctx.dst < since <= ctx.src:
            adapter(node, ctx)
            new = onnx.defs.get_schema(node.op_type, since - 1, "")
        if old.since_version != new.since_version:
            _compatible(node, ctx, old, new)


def convert(model: onnx.ModelProto, target: int) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` at default-domain opset ``target`` (a copy) and notes on the nodes rewritten.
    Raises :class:`OpsetError` naming the node that has no older form."""
    src = trt_lint.model_opset(model)
    if src <= target:
        return model, []
    if model.functions:
        raise OpsetError("the model has model-local functions, which this conversion does not rewrite")
    out = copy.deepcopy(model)
    ctx = _Ctx(out, src, target)
    _convert_graph(out.graph, ctx)
    out.graph.initializer.extend(ctx.new_inits)
    orphans = ctx.dropped - _names_read(out.graph) - {v.name for v in [*out.graph.input, *out.graph.output]}
    keep = [t for t in out.graph.initializer if t.name not in orphans]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)  # the axes/pads constants only the newer form read
    for o in out.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    try:
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise OpsetError(f"the converted graph fails ONNX's checker at opset {target}: {str(e).splitlines()[0]}") from e
    return out, ctx.notes


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # run the graph as written
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def verify(original: onnx.ModelProto, converted: onnx.ModelProto, x: np.ndarray) -> float:
    """Run both models on ``x`` (float32 NCHW, real samples) with ONNX Runtime; return the largest
    |difference| over all outputs, or raise :class:`OpsetError` when any output leaves
    ``ATOL_REL * max(1, max|original|)`` (integer outputs must be equal)."""
    try:
        a = _session(original)
        inp = a.get_inputs()[0]
        if isinstance(inp.shape[0], int) and inp.shape[0] > 0:  # a fixed batch: feed that many samples
            x = np.resize(x, (inp.shape[0], *x.shape[1:]))
        x = x.astype(np.float16) if inp.type == "tensor(float16)" else x
        wants = a.run(None, {inp.name: x})
    except Exception as e:  # onnxruntime raises its own exception types
        raise OpsetError(f"ONNX Runtime cannot run the original model to verify the conversion: {e}") from e
    try:
        gots = _session(converted).run(None, {inp.name: x})
    except Exception as e:
        raise OpsetError(f"ONNX Runtime cannot run the converted model: {str(e).splitlines()[0]}") from e
    worst = 0.0
    for out, want, got in zip(a.get_outputs(), wants, gots):
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape:
            raise OpsetError(f"output {out.name}: shape {got.shape} after conversion, {want.shape} before")
        if not np.issubdtype(want.dtype, np.floating):
            if not np.array_equal(want, got):
                raise OpsetError(f"output {out.name}: integer values differ after conversion")
            continue
        diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
        bound = ATOL_REL * max(1.0, float(np.max(np.abs(want))) if want.size else 0.0)
        if not diff <= bound:  # NaN fails too
            raise OpsetError(f"output {out.name}: max |difference| {diff:.3g} after conversion (allowed {bound:.3g})")
        worst = max(worst, diff)
    return worst


def fit(onnx_path: Path, trt_version: str, target: str, out_dir: Path, split_dir: Path) -> tuple[Path, dict]:
    """The ONNX to upload for TensorRT ``trt_version``: ``onnx_path`` itself when its opset is one
    the parser reads, else its down-converted copy ``out_dir/model.opset<N>.onnx``, verified on
    the first ``SAMPLES`` inputs of the prepared split ``split_dir`` (real inputs, float32 NCHW;
    read only when converting). Returns (path, build-record fields: ``onnx_opset``
    uploaded and, after a conversion, ``onnx_opset_conversion``). Raises :class:`OpsetError` naming
    ``target``, the node and ``export.opset=<N>`` as the fix; nothing is written then."""
    model = onnx.load(str(onnx_path))
    src, limit = trt_lint.model_opset(model), trt_lint.max_opset(trt_version)
    if src <= limit:
        return onnx_path, {"onnx_opset": src}
    fix = (
        f"re-export with export.opset={limit} (TensorRT {trt_version}'s ONNX parser reads opsets up to {limit}; "
        "see tasks/runtimes/trt_lint.py). Nothing was uploaded."
    )
    try:
        converted, notes = convert(model, limit)
        x = np.ascontiguousarray(Split(split_dir).x[:SAMPLES], dtype=np.float32)
        diff = verify(model, converted, x)
    except OpsetError as e:
        raise OpsetError(f"{target}: cannot convert {onnx_path} from ONNX opset {src} to {limit}: {e}; {fix}") from e
    dest = out_dir / f"model.opset{limit}.onnx"
    onnx.save(converted, str(dest))
    return dest, {
        "onnx_opset": limit,
        "onnx_opset_conversion": {
            "from": src,
            "to": limit,
            "file": dest.name,
            "rewritten": notes,
            "verified_samples": len(x),
            "max_abs_diff": diff,
        },
    }
