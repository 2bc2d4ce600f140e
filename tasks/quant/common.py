"""What the calibrators and the Q/DQ writer share: the error type, loading a model with its
weights as initializers, the model input's declared shape, and checks on activation ranges.

Ranges everywhere in ``tasks.quant`` are ``dict[str, tuple[float, float]]``: ONNX tensor name ->
``(min, max)`` of the float32 activation values seen in calibration (before any symmetrisation;
symmetric INT8 uses ``amax = max(|min|, |max|)`` and ``scale = amax / 127``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

Ranges = dict[str, tuple[float, float]]


class QuantError(RuntimeError):
    """Calibration or quantization cannot proceed; the message says what was found and what to do."""


def load_model(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """Load (or copy) an ONNX model; a clear QuantError when the file is missing or unreadable."""
    if isinstance(model, onnx.ModelProto):
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    path = Path(model)
    if not path.is_file():
        raise QuantError(f"ONNX model {path} not found")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise QuantError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from e


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a ``Constant`` node produces, or None for forms we leave alone (sparse, strings)."""
    for a in node.attribute:
        if a.name == "value":
            return a.t
        if a.name == "value_float":
            return numpy_helper.from_array(np.array(a.f, dtype=np.float32))
        if a.name == "value_floats":
            return numpy_helper.from_array(np.array(list(a.floats), dtype=np.float32))
        if a.name == "value_int":
            return numpy_helper.from_array(np.array(a.i, dtype=np.int64))
        if a.name == "value_ints":
            return numpy_helper.from_array(np.array(list(a.ints), dtype=np.int64))
    return None


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Replace main-graph ``Constant`` nodes by initializers of the same name, in place.

    ORT's quantizer only treats initializers as weights: a Conv whose weight comes from a Constant
    node would get its weight quantized as an activation (needing a calibrated range) or not at
    all. Tensor names are unchanged, so ranges calibrated on either form stay valid.
    Returns the number of nodes converted.
    """
    keep, converted = [], 0
    for node in model.graph.node:
        value = _constant_value(node) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if value is None:
            keep.append(node)
            continue
        init = onnx.TensorProto()
        init.CopyFrom(value)
        init.name = node.output[0]
        model.graph.initializer.append(init)
        converted += 1
    if converted:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return converted


def graph_inputs(model: onnx.ModelProto) -> dict[str, tuple[np.dtype | None, list[int | None] | None]]:
    """The model's real inputs (initializers excluded) -> (numpy dtype, declared shape). In the
    shape, None marks a dynamic or unknown dimension (``dim_param`` or no ``dim_value``); a shape
    of None means the rank itself is not declared. A dtype of None means not a tensor input."""
    inits = {t.name for t in model.graph.initializer}
    out: dict[str, tuple[np.dtype | None, list[int | None] | None]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type) if vi.type.HasField("tensor_type") else None
        shape = (
            [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim] if tt.HasField("shape") else None
        )
        out[vi.name] = (dtype, shape)
    return out


def fmt_shape(shape) -> str:
    """``(batch, 1, 28, 28)``-style text; None prints as ``?``."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def check_ranges(ranges: Mapping[str, tuple[float, float]]) -> Ranges:
    """Validate and normalise ranges to ``{name: (float min, float max)}``: finite, min <= max."""
    out: Ranges = {}
    bad = []
    for name, r in ranges.items():
        try:
            lo, hi = (float(np.asarray(v, dtype=np.float64).reshape(-1)[0]) for v in r)
        except (TypeError, ValueError, IndexError):
            bad.append(f"{name}: {r!r}")
            continue
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            bad.append(f"{name}: ({lo}, {hi})")
            continue
        out[name] = (lo, hi)
    if bad:
        raise QuantError(
            f"invalid activation ranges (need finite (min, max) with min <= max): {', '.join(bad[:5])}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        )
    return out


def amax(r: tuple[float, float]) -> float:
    """The symmetric bound of a range: ``max(|min|, |max|)``."""
    return max(abs(r[0]), abs(r[1]))
