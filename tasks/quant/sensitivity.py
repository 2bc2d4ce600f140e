"""Per-layer INT8 sensitivity: how much each quantizable node (one weighted op, ``QUANTIZABLE_OPS``)
costs when it is INT8, so that mixed precision keeps the few that matter in FP32.

Two signals:

- :func:`local_sqnr` (cheap, any model size): one pass of an augmented model over a few
  batches, in which every node runs twice on the same FP32 input: once as it is and once on
  fake-quantized input and weights (the INT8 scheme :func:`~tasks.quant.quantize_qdq` writes:
  symmetric, activation scale ``amax / 127`` from the calibrated range, weights per output
  channel). The error is the node's own, not what earlier layers passed on. Reported per node as
  the SQNR (dB) and cosine similarity of the two outputs, accumulated over all batches.
- :func:`one_at_a_time` (the task metric): for each node, the Q/DQ model with only that node
  quantized (in each layout that ships), scored by a caller-supplied
  ``evaluate(model_path) -> metric``; the drop against the FP32 baseline in the metric's own
  units (points of top-1, for classification).

:func:`rank` orders the nodes most sensitive first; :func:`plot` draws the ranked bar chart.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tasks.quant.common import QuantError, amax, check_ranges
from tasks.quant.qdq import _prepared, quantizable_nodes, quantize_qdq

_SUFFIX = "__edgeforge_int8"


def weight_axis(node: onnx.NodeProto, rank: int) -> int:
    """The output-channel axis of a weighted op's weight (input 1), the axis of per-channel scales."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return rank - 1  # MatMul: (..., K, N)


def fake_quant_weight(w: np.ndarray, axis: int | None, bits: int = 8) -> np.ndarray:
    """Symmetric INT8 fake quantization (quantize then dequantize) of a weight tensor, per channel
    along ``axis`` (None: one scale for the tensor)."""
    qmax = 2 ** (bits - 1) - 1
    w = np.asarray(w, dtype=np.float32)
    if axis is None or w.ndim == 0:
        m = np.abs(w).max(initial=0.0)
    else:
        m = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis), keepdims=True)
    scale = np.where(m > 0, m / qmax, 1.0).astype(np.float32)
    return (np.clip(np.round(w / scale), -qmax, qmax) * scale).astype(np.float32)


def _augmented(
    model: onnx.ModelProto, ranges: Mapping[str, tuple[float, float]], nodes: Sequence[str], per_channel: bool
) -> tuple[onnx.ModelProto, dict[str, dict]]:
    """``model`` with, after each node in ``nodes``, its fake-quantized twin; both outputs exposed."""
    inits = {t.name: t for t in model.graph.initializer}
    exposed = {o.name for o in model.graph.output}
    wanted, new_nodes, new_inits, facts = set(nodes), [], [], {}
    for node in model.graph.node:
        new_nodes.append(node)
        if node.name not in wanted:
            continue
        twin_inputs = list(node.input)
        x = node.input[0]
        if x in ranges and amax(ranges[x]) > 0:
            p = f"{node.name}{_SUFFIX}_x"
            new_inits += [
                numpy_helper.from_array(np.array(amax(ranges[x]) / 127, np.float32), p + "_scale"),
                numpy_helper.from_array(np.array(0, np.int8), p + "_zp"),
            ]
            new_nodes += [
                helper.make_node("QuantizeLinear", [x, p + "_scale", p + "_zp"], [p + "_q"], name=p + "_Q"),
                helper.make_node("DequantizeLinear", [p + "_q", p + "_scale", p + "_zp"], [p], name=p + "_DQ"),
            ]
            twin_inputs[0] = p
        w = node.input[1] if len(node.input) > 1 else ""
        if w in inits:
            arr = numpy_helper.to_array(inits[w])
            axis = weight_axis(node, arr.ndim) if per_channel else None
            new_inits.append(numpy_helper.from_array(fake_quant_weight(arr, axis), f"{node.name}{_SUFFIX}_w"))
            twin_inputs[1] = f"{node.name}{_SUFFIX}_w"
        twin = helper.make_node(
            node.op_type, twin_inputs, [node.output[0] + _SUFFIX], name=node.name + _SUFFIX, domain=node.domain
        )
        twin.attribute.extend(node.attribute)
        new_nodes.append(twin)
        facts[node.name] = {
            "op_type": node.op_type,
            "output": node.output[0],
            "input_quantized": twin_inputs[0] != x,
            "weight_quantized": w in inits,
        }
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(new_nodes)
    out.graph.initializer.extend(new_inits)
    for f in facts.values():
        for name in (f["output"], f["output"] + _SUFFIX):
            if name not in exposed:
                out.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
                exposed.add(name)
    return out, facts


def local_sqnr(
    model_path: str | Path | onnx.ModelProto,
    ranges: Mapping[str, tuple[float, float]],
    batches: Iterable[np.ndarray],
    *,
    input_name: str,
    nodes: Sequence[str] | None = None,
    per_channel: bool = True,
) -> dict[str, dict]:
    """Per node: ``sqnr_db`` (10·log10 of signal over quantization-noise power of the node's output;
    higher is better, None when the INT8 output is exact), ``cosine``, ``op_type``, whether its
    input and weight were quantized (an input without a calibrated range is not). Batches are
    streamed: only one batch's outputs are in memory."""
    import onnxruntime as ort

    model, _ = _prepared(model_path)
    checked = check_ranges(ranges)
    candidates = quantizable_nodes(model)
    names = list(nodes) if nodes is not None else candidates
    unknown = sorted(set(names) - set(candidates))
    if unknown:
        raise QuantError(f"not quantizable nodes of {model_path}: {', '.join(unknown)}")
    aug, facts = _augmented(model, checked, names, per_channel)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the Q/DQ as written
    with tempfile.TemporaryDirectory(prefix="edgeforge-sqnr-") as td:
        path = Path(td) / "augmented.onnx"
        onnx.save(aug, str(path))
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    fetch = sorted({n for f in facts.values() for n in (f["output"], f["output"] + _SUFFIX)})
    acc = {n: np.zeros(4) for n in facts}  # signal, noise, dot, twin power
    seen = 0
    for x in batches:
        got = dict(zip(fetch, sess.run(fetch, {input_name: np.ascontiguousarray(x)})))
        seen += len(x)
        for n, f in facts.items():
            ref = got[f["output"]].astype(np.float64).ravel()
            q = got[f["output"] + _SUFFIX].astype(np.float64).ravel()
            acc[n] += (ref @ ref, (ref - q) @ (ref - q), ref @ q, q @ q)
    if seen == 0:
        raise QuantError("no samples given for the SQNR sensitivity pass")
    out = {}
    for n, f in facts.items():
        sig, noise, dot, qq = acc[n]
        out[n] = {
            "op_type": f["op_type"],
            "input_quantized": f["input_quantized"],
            "sqnr_db": 10 * math.log10(sig / noise) if noise > 0 and sig > 0 else None,
            "cosine": dot / math.sqrt(sig * qq) if sig > 0 and qq > 0 else None,
        }
    return out


def one_at_a_time(
    model_path: str | Path,
    ranges: Mapping[str, tuple[float, float]],
    evaluate: Callable[[Path], float],
    baseline: float,
    *,
    nodes: Sequence[str] | None = None,
    per_channel: bool = True,
    layouts: Mapping[str, Mapping] | None = None,
    progress: Callable[[int, int, str, float], None] | None = None,
) -> dict[str, dict]:
    """Per node: ``drop = baseline - metric`` of the model with only that node INT8, and ``metric``.
    ``layouts``: ``{name: quantize_qdq keyword arguments}`` of each Q/DQ layout that will ship
    (e.g. TensorRT's placement and ONNX Runtime's, which also quantizes a weighted op's output);
    a node's drop is its worst over them, each kept under ``layout_drops``."""
    names = list(nodes) if nodes is not None else quantizable_nodes(model_path)
    variants = dict(layouts or {"qdq": {}})
    out = {}
    with tempfile.TemporaryDirectory(prefix="edgeforge-oaat-") as td:
        for i, n in enumerate(names, 1):
            drops = {}
            for name, kwargs in variants.items():
                path = Path(td) / f"{i}.onnx"
                quantize_qdq(model_path, ranges, path, per_channel=per_channel, nodes_to_quantize=[n], **kwargs)
                drops[name] = baseline - float(evaluate(path))
                path.unlink()
            worst = max(drops.values())
            out[n] = {"metric": baseline - worst, "drop": worst, "layout_drops": drops}
            if progress:
                progress(i, len(names), n, worst)
    return out


def rank(sqnr: Mapping[str, dict], drops: Mapping[str, dict] | None = None) -> list[dict]:
    """Nodes most sensitive first: by task-metric drop (largest first) when measured, ties and
    unmeasured nodes by SQNR (lowest first; an exact output last). Each row: ``node``, ``rank``
    (1 = most sensitive), ``op_type``, ``sqnr_db``, ``cosine``, ``drop``/``metric`` (None when
    not measured) and whatever else :func:`one_at_a_time` measured (``layout_drops``)."""
    rows = [{"node": n, **s, "drop": None, "metric": None, **(drops or {}).get(n, {})} for n, s in sqnr.items()]

    def key(r):
        sq = r["sqnr_db"] if r["sqnr_db"] is not None else math.inf
        return (-(r["drop"] if r["drop"] is not None else -math.inf), sq)

    rows.sort(key=key)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def plot(
    rows: Sequence[dict], path: str | Path, title: str = "INT8 sensitivity per layer", kept: Iterable[str] = ()
) -> Path:
    """Bar chart PNG of ranked rows: task-metric drop per layer (when measured) and SQNR (dB);
    layers kept in FP32 drawn in a second colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.io import save_figure

    kept = set(kept)
    labels = [f"{r['node']} ({r['op_type']})" for r in rows]
    colors = ["tab:red" if r["node"] in kept else "tab:blue" for r in rows]
    panels = [
        (
            "SQNR of the layer's output, dB (lower = more sensitive)",
            [r["sqnr_db"] if r["sqnr_db"] is not None else 0.0 for r in rows],
        )
    ]
    if any(r["drop"] is not None for r in rows):
        panels.insert(
            0,
            (
                "task-metric drop with only this layer INT8 (points)",
                [r["drop"] if r["drop"] is not None else 0.0 for r in rows],
            ),
        )
    height = max(2.5, 0.28 * len(rows) + 1.2)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 2, height), sharey=True, squeeze=False)
    for ax, (xlabel, values) in zip(axes[0], panels):
        ax.barh(range(len(rows)), values, color=colors)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.axvline(0, color="black", linewidth=0.5)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)), labels, fontsize=7)
    axes[0][0].invert_yaxis()
    return save_figure(fig, path, title + ("  (red: kept FP32)" if kept else ""), dpi=110)
