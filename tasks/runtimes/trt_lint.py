"""Before anything is uploaded: the operators of an ONNX model that the device's TensorRT ONNX
parser cannot import, and an opset newer than it reads, so that a build fails here, in seconds,
with what to do, instead of on the device after the upload.

The supported-operator table is the ``DEFINE_BUILTIN_OP_IMPORTER`` registry of onnx/onnx-tensorrt
(``builtin_op_importers.cpp``, from 10.0 ``onnxOpImporters.cpp``) at each release branch, checked
against that branch's ``docs/operators.md`` (rows marked ``Y``) and ``docs/Changelog.md``; kept
compact as the 8.2 set plus what each release added. Branch heads read (git mirror of the repo):
8.2-GA f42daee, 8.4-EA c5cf64e, 8.4-GA 63d626b, 8.5-GA fdeeaca, 8.6-EA/GA ee0b139, 9.0-GA 9d2d786,
9.1 877b5dc, 9.2 306247b, 9.3 1def182, 10.0-GA 73f629e, 10.1-GA 96e7811.

- 8.2: the 8.2-GA importers. ``Reciprocal`` is one (builtin_op_importers.cpp:3311, an importer
  since the first commit) although its operators.md row reads ``N`` until 8.4-GA;
- 8.4: + ``HardSwish``, ``Shrink``, ``Xor`` (importers from 8.4-EA; 8.4-GA
  builtin_op_importers.cpp:4868/4807/4802; operators.md @ 8.4-GA rows 79/166/197 ``Y``). That
  operators.md also marks ``RandomNormal``/``RandomNormalLike`` ``Y`` (rows 128-129, a docs update
  of the 22.08 release), but no 8.4 branch has their importer: they are 8.5 ("Added the
  ``RandomNormal`` ... operations", Changelog 8.5 GA; 8.5-GA builtin_op_importers.cpp:3517/3526);
- 8.5: + ``GridSample``, ``MeanVarianceNormalization``, ``Mod``, ``NonZero``, ``OneHot``,
  ``RandomNormal``, ``RandomNormalLike``, ``RoiAlign``, ``Trilu`` (8.5-GA importers and matrix);
- 8.6: + ``GroupNormalization``, ``LayerNormalization``, ``IsInf`` (8.6-EA importers, Changelog);
- 9.1: + ``CastLike`` (9.1 builtin_op_importers.cpp:299, its matrix row ``Y``; 9.0-GA reads ``N``);
  9.2: + ``Hardmax`` (Changelog 9.2 GA);
- 10.0: + ``Gelu``, ``Mish`` (10.0-GA onnxOpImporters.cpp and matrix); 10.1: + ``DeformConv``;
  later 10.x from the Changelog: ``BlackmanWindow``/``HammingWindow``/``HannWindow`` (10.4),
  ``STFT`` (10.5), ``Attention`` (10.14), ``RotaryEmbedding``/``RMSNormalization``/
  ``TensorScatter`` (10.15; the 10.15 matrix, "opset 9 to opset 24", lists them all);
- 11.0: + ``Swish`` (TensorRT 11.0 release notes, "Parsers: Added support for Swish operator").

The highest opset each parser reads (:func:`max_opset`): 13 for 8.2 and 17 for 8.4 - 8.6
(operators.md line 5 of each branch: "supports operators up to Opset 13/17"). 9.x claims 19, but its
reductions read ``axes`` only as an attribute: ``ReduceMean``/``ReduceMax``/... pass no axes input
to ``reduceTensor`` (9.3 builtin_op_importers.cpp:4068-4083; onnx2trt_utils.cpp:1761), which then
reduces over every axis, and ``Pad`` ignores its opset-18 ``axes`` input (9.3
builtin_op_importers.cpp:3611): opset 18's input form silently changes the result
(NVIDIA/TensorRT#3467), so 9.x is held to 17. 10.0 reads the axes input
(onnxOpImporters.cpp:4308) and states "opset 9 to opset 20"; 10.15 "opset 9 to opset 24"; 11.x
reads up to 25 (TensorRT ONNX Opset Guide, "Maximum opset 25"). The parser never checks the opset
itself (ModelImporter.cpp only logs it), which is why this check exists. ``tasks.runtimes.opset``
down-converts a model to this limit before a build.

Operators of any other domain (``com.microsoft``, ``ai.onnx.ml``, custom ones) are reported too:
TensorRT imports them only as plugins (``checkFallbackPluginImporter``, see
tests/fixtures/trtexec/trt10.16_rtx6000ada_parse_plugin_not_found_fail.log). From TensorRT 9.0 the
parser expands ONNX model-local functions ("Added support for ONNX local functions", Changelog 9.0
EA), so a call of one is checked through its body there. Subgraphs (``If``/``Loop``/``Scan``
bodies) are walked. Per-operator restrictions (attribute values, types) are not checked: the
device's parser still has the last word.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import onnx

from tasks.runtimes import trtexec_log
from tasks.runtimes.base import BuildError
from tasks.runtimes.tensorrt_recipe import RecipeError, parse_version

_BASE_82 = frozenset(
    """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean Min Mul Neg NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan
Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where
""".split()
)

#: (first TensorRT version, operators it added to the ONNX parser).
_ADDED: tuple[tuple[tuple[int, int], frozenset[str]], ...] = tuple(
    (v, frozenset(ops.split()))
    for v, ops in (
        ((8, 4), "HardSwish Shrink Xor"),
        (
            (8, 5),
            "GridSample MeanVarianceNormalization Mod NonZero OneHot RandomNormal RandomNormalLike RoiAlign Trilu",
        ),
        ((8, 6), "GroupNormalization LayerNormalization IsInf"),
        ((9, 1), "CastLike"),
        ((9, 2), "Hardmax"),
        ((10, 0), "Gelu Mish"),
        ((10, 1), "DeformConv"),
        ((10, 4), "BlackmanWindow HammingWindow HannWindow"),
        ((10, 5), "STFT"),
        ((10, 14), "Attention"),
        ((10, 15), "RotaryEmbedding RMSNormalization TensorScatter"),
        ((11, 0), "Swish"),
    )
)
#: (first TensorRT version, highest default-domain ONNX opset its parser imports correctly).
_MAX_OPSET: tuple[tuple[tuple[int, int], int], ...] = (
    ((8, 2), 13),
    ((8, 4), 17),
    ((10, 0), 20),
    ((10, 15), 24),
    ((11, 0), 25),
)
_DEFAULT_DOMAINS = ("", "ai.onnx")
_LOCAL_FUNCTIONS_FROM = (9, 0)
_MAX_NAMES = 5


def max_opset(trt_version: str) -> int:
    """The highest default-domain ONNX opset TensorRT ``trt_version``'s ONNX parser imports
    correctly (see the module docstring for each version's source)."""
    v = parse_version(trt_version)[:2]
    if v < (8, 2):
        raise RecipeError(f"TensorRT {trt_version} is not supported: EdgeForge builds with TensorRT 8.2 or newer")
    return [opset for since, opset in _MAX_OPSET if v >= since][-1]


def model_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain (``ai.onnx``) opset version; 0 when it imports none."""
    return max((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), default=0)


def supported_ops(trt_version: str) -> frozenset[str]:
    """Default-domain ONNX operators the ONNX parser of TensorRT ``trt_version`` imports."""
    v = parse_version(trt_version)[:2]
    if v < (8, 2):
        raise RecipeError(f"TensorRT {trt_version} is not supported: EdgeForge builds with TensorRT 8.2 or newer")
    ops = set(_BASE_82)
    for since, added in _ADDED:
        if v >= since:
            ops |= added
    return frozenset(ops)


def first_version(op_type: str) -> str | None:
    """The first TensorRT release (``"8.5"``) whose ONNX parser imports ``op_type``, if any."""
    if op_type in _BASE_82:
        return "8.2"
    return next((f"{v[0]}.{v[1]}" for v, added in _ADDED if op_type in added), None)


def _nodes(graph: onnx.GraphProto, where: str):
    """(node, display name) of ``graph`` and of every subgraph below it, depth first."""
    for i, node in enumerate(graph.node):
        name = node.name or f"<unnamed #{i} in {where}>"
        yield node, name
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for k, sub in enumerate(subgraphs):
                yield from _nodes(sub, f"{name}/{attr.name}" + (f"[{k}]" if len(subgraphs) > 1 else ""))


def unsupported_ops(model: Path | onnx.ModelProto, trt_version: str) -> list[tuple[str, str]]:
    """``(op type, node name)`` of every node TensorRT ``trt_version``'s ONNX parser cannot import,
    in graph order (subgraphs after their parent node). Non-default domains read ``domain:op``.
    ``model``: a path, or the model already loaded."""
    supported = supported_ops(trt_version)
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    functions = (
        {(f.domain, f.name): f for f in model.functions}
        if parse_version(trt_version)[:2] >= _LOCAL_FUNCTIONS_FROM
        else {}
    )
    found: list[tuple[str, str]] = []

    def visit(graph_nodes, seen: frozenset) -> None:
        for node, name in graph_nodes:
            key = (node.domain, node.op_type)
            if key in functions and key not in seen:
                body = onnx.helper.make_graph(functions[key].node, key[1], [], [])
                visit(_nodes(body, f"{name} (function {key[1]})"), seen | {key})
            elif node.domain not in _DEFAULT_DOMAINS:
                found.append((f"{node.domain}:{node.op_type}", name))
            elif node.op_type not in supported:
                found.append((node.op_type, name))

    visit(_nodes(model.graph, "the main graph"), frozenset())
    return found


def check(onnx_path: Path, trt_version: str, target: str) -> None:
    """Raise ``BuildError`` when the model's opset is newer than TensorRT ``trt_version``'s parser
    reads (naming the ``export.opset`` to use), or listing the operators it cannot import (op type,
    up to 5 node names each) and what to do; return quietly when there are none."""
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
        opset = model_opset(model)
        bad = unsupported_ops(model, trt_version)
    except BuildError:
        raise
    except Exception as e:  # onnx.load raises protobuf's DecodeError, OSError, ... on unreadable files
        raise BuildError(f"{target}: cannot read {onnx_path} to check its operators: {e}") from e
    if opset > (limit := max_opset(trt_version)):
        raise BuildError(
            f"{target}: {onnx_path} is ONNX opset {opset}, but TensorRT {trt_version}'s ONNX parser imports "
            f"opsets up to {limit}: newer operator forms would fail to import or, like opset 18's ReduceMean "
            f"axes input, be read wrongly (onnx-tensorrt docs/operators.md; NVIDIA/TensorRT#3467). Re-export "
            f"with export.opset={limit} (the build down-converts the model itself when it can). Nothing was uploaded."
        )
    if not bad:
        return
    by_op: dict[str, list[str]] = defaultdict(list)
    for op, name in bad:
        by_op[op].append(name)
    lines = []
    for op, names in by_op.items():
        more = len(names) - _MAX_NAMES
        shown = ", ".join(names[:_MAX_NAMES]) + (f" (+{more} more)" if more > 0 else "")
        if ":" in op:
            why = "not an ONNX-domain operator: TensorRT imports it only as a plugin"
        elif (since := first_version(op)) is not None:
            why = f"supported from TensorRT {since}"
        else:
            why = "not supported by any TensorRT ONNX parser"
        lines.append(f"  - {op} ({why}): {len(names)} node{'s' if len(names) > 1 else ''}: {shown}")
    raise BuildError(
        f"{target}: {onnx_path} uses operators that TensorRT {trt_version}'s ONNX parser cannot import "
        f"(onnx-tensorrt docs/operators.md):\n"
        + "\n".join(lines)
        + "\n  What to do: re-export the model with a different opset (or with the exporter option that "
        "avoids the op), replace the op in the model with supported ones, implement a TensorRT plugin for "
        "it and list its library in target.<name>.tensorrt.plugins (passed to the build and every engine load), or upgrade TensorRT on "
        "the device where a newer release supports it. Nothing was uploaded."
    )


def layers_of(onnx_path: Path, tensors: list[str]) -> list[str]:
    """The TensorRT layers that produce or consume ``tensors`` (ONNX tensor names, as TensorRT's
    build log prints them), in graph order: the ONNX parser names each layer after its node, or
    ``node_of_<first output>`` when the node has no name (onnx-tensorrt 8.6-GA
    ImporterContext.cpp:140 ``registerLayer``, onnx2trt_utils.cpp:2039 ``getNodeName``). Tensors the
    parser made itself (``(Unnamed Layer* 7) [Constant]_output``, ``ONNXTRT_Broadcast_3_output``)
    are in no ONNX node and add nothing."""
    wanted = set(tensors)
    model = onnx.load(str(onnx_path), load_external_data=False)
    layers: list[str] = []
    for node in model.graph.node:
        if wanted & {*node.input, *node.output}:
            layers.append(node.name or (f"node_of_{node.output[0]}" if node.output else node.op_type))
    return list(dict.fromkeys(layers))


def int8_fallbacks(log_text: str, onnx_path: Path) -> dict[str, list[str]]:
    """Build-record fields of an INT8 build: ``int8_fallback_tensors`` (the tensors TensorRT's
    build log says have no INT8 scale) and ``int8_fallback_layers`` (the layers of ``onnx_path``,
    the model built, that read or write them and so run FP16/FP32). A warning, not a failure."""
    tensors = trtexec_log.parse(log_text).int8_fallbacks
    return {"int8_fallback_tensors": tensors, "int8_fallback_layers": layers_of(onnx_path, tensors) if tensors else []}
