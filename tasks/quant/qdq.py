"""Explicit INT8 quantization: an ONNX model with QuantizeLinear/DequantizeLinear (Q/DQ) pairs,
written from precomputed activation ranges by ONNX Runtime's ``QDQQuantizer`` (what
``quantize_static(quant_format=QDQ)`` runs after calibrating).

The defaults follow TensorRT's explicit-quantization rules, so that TensorRT (and ONNX Runtime)
can build the result as it is:

- int8 activations and weights, both symmetric (zero point 0, scale = amax / 127);
- weights per output channel (``per_channel=True``; Conv axis 0, Gemm axis 0 when transB=1);
- weights stay FP32 behind a Q->DQ pair (``AddQDQPairToWeight``): TensorRT 8.x only accepts FP32
  weights in Q/DQ networks and quantizes them itself; TensorRT 10 accepts this form too;
- biases stay FP32 (``QuantizeBias=False``): TensorRT's DequantizeLinear takes no int32 input;
  it folds the FP32 bias into the INT8 kernel;
- Q/DQ on the inputs of weighted ops only, not on their outputs
  (``OpTypesToExcludeOutputQuantization``), and none written for normalisation, Resize, Gather,
  pooling or copy ops; plus a Q/DQ on the residual input of each residual Add whose Conv is
  quantized, so TensorRT fuses Conv + Add with INT8 input and output
  (``EdgeForgePlacement="tensorrt"``; the rule and NVIDIA's sources are in
  :mod:`tasks.quant.placement`). TensorRT fuses the following activation/pooling and moves
  Q/DQ itself.

``extra_options`` overrides any of these (ORT's ``quantize_static`` option names, plus
``EdgeForgePlacement``: ``tensorrt`` as above, or ``ort``, ORT's own placement of every op type
its Q/DQ registry knows; it is not passed on to ORT).
"""

from __future__ import annotations

import collections
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tasks.quant.common import QuantError, check_ranges, constants_to_initializers, load_model
from tasks.quant.placement import residual_inputs

#: Op types a quantized node can be: the weighted ops with int8 kernels in TensorRT and ORT.
#: These are the units of per-layer sensitivity (quantize one, keep the rest FP32).
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

#: ``extra_options`` key choosing where activation Q/DQ go (EdgeForge's, stripped before ORT).
PLACEMENT_OPTION = "EdgeForgePlacement"
PLACEMENTS = ("tensorrt", "ort")

TRT_EXTRA_OPTIONS: dict[str, Any] = {
    PLACEMENT_OPTION: "tensorrt",
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "AddQDQPairToWeight": True,
    "QuantizeBias": False,
    "OpTypesToExcludeOutputQuantization": QUANTIZABLE_OPS,
}

#: The layout ONNX Runtime's CPU kernels fuse (DQ -> Conv/Gemm -> Q becomes QLinearConv/QGemm):
#: int8 weight initializers and a Q/DQ on the outputs of weighted ops too. Measured here on a
#: ResNet-18 at batch 1 (ORT 1.32, AVX2, no VNNI): FP32 20.0 ms, this layout 20.1 ms, the
#: TensorRT layout above 29 ms (ORT runs it as FP32 with extra Q/DQ: a simulation, not int8).
#: On x86 without VNNI use it with ``reduce_range=True``: ORT's u8s8 kernels (VPMADDUBSW) add
#: pairs of 8-bit products into saturating int16; the bundled example lost 4 points of top-1
#: (97.8% -> 93.8%) with 8-bit weights and none with 7-bit ones.
ORT_EXTRA_OPTIONS: dict[str, Any] = {
    **TRT_EXTRA_OPTIONS,
    PLACEMENT_OPTION: "ort",
    "AddQDQPairToWeight": False,
    "OpTypesToExcludeOutputQuantization": [],
}

#: Activation types :func:`quantize_qdq` writes (weights are always int8).
ACTIVATION_TYPES = ("int8", "uint8")

#: ONNX Runtime's U8S8 layout (its x86 guidance for VNNI/AMX): the ORT placement with uint8
#: activations, asymmetric (zero point from the calibrated range), int8 symmetric weights. Use
#: with ``activation_type="uint8"`` and full-range weights (``reduce_range=False``).
ORT_U8S8_OPTIONS: dict[str, Any] = {**ORT_EXTRA_OPTIONS, "ActivationSymmetric": False}


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed nodes a stable name ``<OpType>_<index>`` (node names select what to quantize)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


def _prepared(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    m = load_model(model)
    converted = constants_to_initializers(m)
    _name_nodes(m)
    return m, converted


def quantizable_nodes(model: str | Path | onnx.ModelProto, op_types: Iterable[str] | None = None) -> list[str]:
    """Names of the nodes that can be quantized (op type in ``QUANTIZABLE_OPS``, restricted to
    ``op_types`` if given), in graph order. Unnamed nodes are listed as ``<OpType>_<index>``,
    the names :func:`quantize_qdq` gives them."""
    m, _ = _prepared(model)
    allowed = set(QUANTIZABLE_OPS) & (set(op_types) if op_types is not None else set(QUANTIZABLE_OPS))
    return [n.name for n in m.graph.node if n.op_type in allowed and n.domain in ("", "ai.onnx")]


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _select(model: onnx.ModelProto, path: Any, op_types, nodes_to_quantize, nodes_to_exclude) -> list[str]:
    """The quantizable nodes left after the filters; clear errors for typos and for nothing left."""
    found = sorted({n.op_type for n in model.graph.node})
    candidates = quantizable_nodes(model, op_types)
    if not candidates:
        only = f" among op_types {sorted(op_types)}" if op_types is not None else ""
        raise QuantError(
            f"{path}: nothing to quantize{only}: the model's op types are {', '.join(found) or '(none)'}; "
            f"quantizable op types are {', '.join(QUANTIZABLE_OPS)}"
        )
    names = {n.name for n in model.graph.node}
    for label, given in (("nodes_to_quantize", nodes_to_quantize), ("nodes_to_exclude", nodes_to_exclude)):
        unknown = [n for n in (given or []) if n not in names]
        if unknown:
            raise QuantError(
                f"{label}: no node named {', '.join(map(repr, unknown))} in {path}; "
                f"quantizable nodes: {', '.join(candidates)}"
            )
    chosen = [
        n for n in candidates if (not nodes_to_quantize or n in nodes_to_quantize) and n not in (nodes_to_exclude or [])
    ]
    if not chosen:
        raise QuantError(
            f"{path}: every quantizable node is filtered out (nodes_to_quantize={nodes_to_quantize}, "
            f"nodes_to_exclude={nodes_to_exclude}); quantizable nodes: {', '.join(candidates)}"
        )
    return chosen


def qdq_facts(model: onnx.ModelProto) -> dict[str, Any]:
    """Counts of Q/DQ nodes and the (non-Q/DQ) nodes fed by a DequantizeLinear, in graph order."""
    ops = collections.Counter(n.op_type for n in model.graph.node)
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fed = [
        n.name
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_out for i in n.input)
    ]
    return {
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "quantized_nodes": fed,
    }


def quantize_qdq(
    model_path: str | Path,
    ranges: Mapping[str, tuple[float, float]],
    out_path: str | Path,
    *,
    per_channel: bool = True,
    nodes_to_quantize: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] | None = None,
    op_types: Sequence[str] | None = None,
    extra_options: Mapping[str, Any] | None = None,
    reduce_range: bool = False,
    activation_type: str = "int8",
) -> dict[str, Any]:
    """Write the explicit Q/DQ INT8 model of ``model_path`` to ``out_path`` (atomically).

    ``ranges``: ``{tensor: (min, max)}`` from :func:`tasks.quant.calibrate` (FP32 units); every
    activation the quantizer puts a Q/DQ on needs one.
    ``nodes_to_quantize``: only these nodes (None = all quantizable); ``nodes_to_exclude``: keep
    these FP32; ``reduce_range``: 7-bit weights (int8 values in [-64, 64]), for ONNX Runtime's x86
    kernels without VNNI, whose int16 intermediate sums saturate with full 8-bit operands;
    ``activation_type``: ``int8`` (default) or ``uint8`` (asymmetric activations, zero point
    from the range: ONNX Runtime's U8S8 kernels on x86, see :data:`ORT_U8S8_OPTIONS`); weights
    are always int8;
    ``op_types``: op types ORT may quantize (None = the weighted ops in the ``tensorrt``
    placement, which keeps only weighted ops of a list given; every type ORT's QDQ registry knows
    in the ``ort`` placement: the weighted ops plus pass-through ops such as MaxPool/Reshape,
    which are quantized only when their input is).
    Returns facts: ``quantized_nodes`` (nodes reading a dequantized tensor, graph order: residual
    Adds too), ``selected_nodes`` (quantizable nodes chosen), ``excluded_nodes``,
    ``residual_adds`` (Adds whose residual input got a Q/DQ, graph order), ``quantize_linear``
    and ``dequantize_linear`` counts, ``constants_converted``, ``per_channel``, ``opset``,
    ``options``.
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import update_opset_version
    from onnxruntime.quantization.registry import QDQRegistry

    model, converted = _prepared(model_path)
    chosen = _select(model, model_path, op_types, nodes_to_quantize, nodes_to_exclude)
    excluded = [n for n in quantizable_nodes(model) if n not in chosen]
    if per_channel and _opset(model) < 13:
        raise QuantError(
            f"{model_path}: per-channel Q/DQ needs ONNX opset >= 13 (the model has {_opset(model)}); "
            "re-export with export.opset >= 13 or quantize with per_channel=False"
        )
    checked = check_ranges(ranges)
    tensors_range = TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for name, (lo, hi) in checked.items()
        },
    )
    options = {**TRT_EXTRA_OPTIONS, **(extra_options or {})}
    placement = options[PLACEMENT_OPTION]
    if placement not in PLACEMENTS:
        raise QuantError(
            f"extra_options {PLACEMENT_OPTION}={placement!r} is not a Q/DQ placement; use one of {', '.join(PLACEMENTS)}"
        )
    if placement == "tensorrt":
        ort_op_types = [t for t in (op_types or QUANTIZABLE_OPS) if t in QUANTIZABLE_OPS]
        residual = residual_inputs(model, chosen)
    else:
        ort_op_types = list(op_types) if op_types else list(QDQRegistry)
        residual = []
    if activation_type not in ACTIVATION_TYPES:
        raise QuantError(f"activation_type {activation_type!r} is not one of {', '.join(ACTIVATION_TYPES)}")
    act = QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8
    model = update_opset_version(model, QuantType.QInt8, act)
    quantizer = QDQQuantizer(
        model,
        per_channel,
        reduce_range,
        QuantType.QInt8,
        act,
        tensors_range,
        list(nodes_to_quantize or []),
        list(nodes_to_exclude or []),
        ort_op_types,
        {k: v for k, v in options.items() if k != PLACEMENT_OPTION},
    )
    for r in residual:  # marked as ORT's op quantizers mark their inputs: its scale comes from its range
        quantizer.quantize_activation_tensor(r.residual)
    try:
        quantizer.quantize_model()
    except ValueError as e:
        if "Quantization parameters are not specified" not in str(e):
            raise
        missing = str(e).split("param ")[-1].split(".")[0]
        raise QuantError(
            f"no calibrated range for tensor {missing!r}, which the quantizer puts a Q/DQ on; "
            "calibrate with op_types=None (every tensor) or pass its range"
        ) from e
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        quantizer.model.save_model_to_file(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    facts = qdq_facts(quantizer.model.model)
    residual = [r for r in residual if r.add in facts["quantized_nodes"]]  # its residual input is dequantized
    return {
        **facts,
        "selected_nodes": chosen,
        "excluded_nodes": excluded,
        "residual_adds": [r.add for r in residual],
        "constants_converted": converted,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "activation_type": activation_type,
        "opset": _opset(quantizer.model.model),
        "options": {k: options[k] for k in sorted(options)},
    }
