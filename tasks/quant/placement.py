"""Where the TensorRT-layout Q/DQ pairs go: the inputs of weighted ops, plus the residual input of
the residual Adds that TensorRT fuses into the Conv before them.

NVIDIA's recommendations, which this follows:

- TensorRT developer guide, "Explicit Quantization" > "Q/DQ Layer-Placement Recommendations":
  quantize all inputs of weighted operations (Convolution, Deconvolution, GEMM); by default do
  not quantize their outputs; do not simulate BatchNormalization/ReLU fusion (TensorRT fuses
  them into the Conv); quantize the residual input of an element-wise addition, since an extra
  Q/DQ on the Conv branch keeps the Conv and the Add apart (the "suboptimal fusion" figure).
  TensorRT moves DQ forward and Q backward across commuting layers (pooling, Resize, copies)
  itself, so this layout writes no Q/DQ for them; normalisation and Gather inputs stay FP.
- TensorRT Model Optimizer (NVIDIA/TensorRT-Model-Optimizer @ 5a4242f):
  ``modelopt/onnx/quantization/ort_utils.py`` 292-318 (``configure_ort``) removes Gather*,
  InstanceNormalization, Relu, Reshape, Transpose, Pad, Slice, Split, Concat, ... from ORT's Q/DQ
  registry, and 325-342 sets the same ORT options ``TRT_EXTRA_OPTIONS`` uses (no output
  quantization of weighted ops, FP32 weights behind Q->DQ, no bias quantization,
  ``DedicatedQDQPair=False``: one pair per tensor, shared by its consumers);
  ``graph_utils.py`` 173-213 (``get_fusible_backbone``: the Conv a tensor comes from through
  BiasAdd/ConstMul, BatchNormalization, Relu, MaxPool or Sigmoid-Mul, copy ops skipped) and
  496-572 (``build_non_residual_input_map``: an Add of two non-constant produced tensors with a
  Conv backbone on one side is residual; its non-residual input is the one farther from the
  lowest common ancestor, or the one with a backbone when only one has); ``partitioning.py``
  37-155 (``_build_fusible_partition``: the non-residual input is fused into its Conv and gets
  no Q/DQ). :func:`residual_adds` is that rule.
- pytorch-quantization's ResNet-50 tutorial (NVIDIA/TensorRT @ 0c672f0,
  ``tools/pytorch-quantization/docs/source/tutorials/quant_resnet50.rst``, "Further
  optimization"; @ 147005f ``examples/torchvision/models/classification/resnet.py``,
  ``BasicBlock``/``Bottleneck`` ``self.residual_quantizer``): ``out += self.residual_quantizer(identity)`` in every
  BasicBlock/Bottleneck, so the Conv before the Add runs with INT8 input and output. In a
  downsample block the identity is the shortcut Conv's output: that tensor gets a Q/DQ here.

The residual input gets its Q/DQ only when the Conv on the other side of the Add is quantized
(a Conv kept FP32 fuses nothing in INT8; Model Optimizer's ``remove_partial_input_qdq``,
``graph_utils.py`` 575-637, likewise bypasses a residual Add's lone quantized input when the
parallel branch is not quantized).
"""

from __future__ import annotations

import dataclasses
from collections import deque

import onnx

#: Ops a backbone path may pass through unmatched (Model Optimizer's ``op_types.get_copy_ops``).
COPY_OPS = frozenset(
    (
        "Flatten",
        "Transpose",
        "Concat",
        "Split",
        "Squeeze",
        "Expand",
        "ReverseSequence",
        "Reshape",
        "Tile",
        "Gather",
        "Slice",
        "GatherElements",
        "GatherND",
        "ScatterElements",
        "ScatterND",
        "OneHot",
    )
)
_OPTIONAL = ("BiasAdd", "ConstMul")
#: Paths from a tensor's producer back to the Conv that TensorRT fuses them into
#: (``get_fusible_backbone``); BiasAdd/ConstMul (an Add/Mul with a constant input) are optional.
_BACKBONE_PATHS = tuple(
    path + (conv,)
    for conv in ("Conv", "ConvTranspose")
    for path in (
        ("BiasAdd", "ConstMul"),
        ("Relu", "BiasAdd", "ConstMul"),
        ("BatchNormalization", "BiasAdd"),
        ("Relu", "BatchNormalization", "BiasAdd"),
        ("MaxPool", "Relu", "BatchNormalization", "BiasAdd"),
        ("Mul", "Sigmoid", "BatchNormalization"),
    )
)


@dataclasses.dataclass(frozen=True)
class ResidualAdd:
    """An Add TensorRT fuses into ``backbone`` (the Conv behind ``fused``, its non-residual input);
    ``residual`` is the input that gets the Q/DQ."""

    add: str
    residual: str
    fused: str
    backbone: str


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.producer = {o: n for n in g.node for o in n.output}
        self.const = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}

    def parents(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        return [self.producer[i] for i in node.input if i and i not in self.const and i in self.producer]

    def kind(self, node: onnx.NodeProto) -> str:
        if node.op_type in ("Add", "Mul") and any(i in self.const for i in node.input):
            return "BiasAdd" if node.op_type == "Add" else "ConstMul"
        return node.op_type

    def matches(self, node: onnx.NodeProto, path: tuple[str, ...]) -> bool:
        """``node`` and its ancestors spell ``path`` (backwards), skipping copy ops and optional steps."""
        if not path:
            return True
        if self.kind(node) == path[0] or node.op_type == path[0]:
            return not path[1:] or any(self.matches(p, path[1:]) for p in self.parents(node))
        if node.op_type in COPY_OPS:
            return any(self.matches(p, path) for p in self.parents(node))
        return path[0] in _OPTIONAL and self.matches(node, path[1:])

    def backbone(self, node: onnx.NodeProto) -> onnx.NodeProto | None:
        """The Conv TensorRT fuses ``node`` into, or None."""
        if not any(self.matches(node, p) for p in _BACKBONE_PATHS):
            return None
        seen, stack = set(), [node]
        while stack:
            n = stack.pop()
            if n.op_type in ("Conv", "ConvTranspose"):
                return n
            if n.name not in seen:
                seen.add(n.name)
                stack.extend(reversed(self.parents(n)))  # first input first, as Model Optimizer does
        return None

    def distances(self, node: onnx.NodeProto) -> dict[str, int]:
        """Shortest number of edges from ``node`` up to each ancestor (itself at 0)."""
        dist, queue = {node.name: 0}, deque([node])
        while queue:
            n = queue.popleft()
            for p in self.parents(n):
                if p.name not in dist:
                    dist[p.name] = dist[n.name] + 1
                    queue.append(p)
        return dist


def residual_adds(model: onnx.ModelProto) -> list[ResidualAdd]:
    """The residual Adds of ``model`` in graph order, by Model Optimizer's rule (module docstring).
    Nodes must be named (``tasks.quant.qdq`` names them before calling this)."""
    g = _Graph(model)
    found = []
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or g.kind(node) != "Add":
            continue
        if not all(i in g.producer for i in node.input):  # a graph input: nothing to fuse with
            continue
        p = [g.producer[i] for i in node.input]
        bb = [g.backbone(x) for x in p]
        d = [g.distances(x) for x in p]
        common = set(d[0]) & set(d[1])
        lca = min(common, key=lambda n: (d[0][n], d[1][n], n)) if common else None
        if bb[0] is not None and bb[1] is not None:
            if bb[0].name == bb[1].name:
                continue
            # the input farther from the common ancestor is the main branch, fused into its Conv
            fused = 0 if lca is not None and d[0][lca] > d[1][lca] else 1
        elif bb[0] is not None or bb[1] is not None:
            fused = 0 if bb[0] is not None else 1
            if lca == bb[fused].name:  # Conv -> ... -> Add and Conv -> Add: one branch, not a residual
                continue
        else:
            continue
        found.append(ResidualAdd(node.name, node.input[1 - fused], node.input[fused], bb[fused].name))
    return found


def residual_inputs(model: onnx.ModelProto, quantized: set[str] | list[str]) -> list[ResidualAdd]:
    """The residual Adds whose backbone Conv is among the ``quantized`` nodes: their residual
    input gets a Q/DQ in the TensorRT layout."""
    chosen = set(quantized)
    return [r for r in residual_adds(model) if r.backbone in chosen]
