"""Where the layers of a DLA build (``target.<name>.tensorrt.dla_core``) ran: read from TensorRT's
build log, mapped onto the uploaded ONNX model, and bounded by ``tensorrt.max_gpu_fallback``.

A DLA build passes ``--allowGPUFallback``, so every layer DLA cannot run goes to the GPU without an
error ("layers that cannot run on DLA silently fall back to GPU execution without an error", TensorRT
developer guide, DLA Runtime Configuration, GPU Fallback Mode). The build log is the record of it;
its lines, as real logs print them (tests/fixtures/trtexec/SOURCES.md, ``*dla*`` files):

- TensorRT 8.5+: ``Layer '<name>' (<TYPE>): Unsupported on DLA. Switching this layer's device type to
  GPU.``, often right after a reason line ``<name>: DLA only supports slicing 4 dimensional tensors.`` /
  ``<name>: DLA cores do not support DIV ElementWise operation.`` (ultralytics PR #16449, issue #23488;
  NVIDIA-AI-IOT/jetson_dla_tutorial issue #3). Older releases: ``Default DLA is enabled but layer
  <name> is not supported on DLA, falling back to GPU.`` (no type; NVIDIA/TensorRT#2318), and ``DLA
  Layer <name> does not support dynamic shapes in any dimension.`` / ``DLA only supports FP16 and Int8
  precision type. Switching <name> device type to GPU.`` (onnx/tensorflow-onnx#1632).
- ``setDefaultDeviceType was called but no layer in the network can run on DLA.`` (#2318): all GPU.
- The engine's placement, ``---------- Layers Running on DLA ----------`` then ``[DlaLayer]
  {ForeignNode[<first>...<last>]}`` per DLA loadable, and ``---------- Layers Running on GPU
  ----------`` then ``[GpuLayer] <TYPE>: <fused layer names>`` (NVIDIA-AI-IOT/jetson_dla_tutorial
  README, trtexec on Orin). Printed at ``[I]`` there; NVIDIA's JetPack tests look for ``[V] [TRT]
  [DlaLayer]``, so newer releases print it with ``--verbose`` only: then the warnings are the record.

The fallback share is counted in the model's ONNX nodes (Q/DQ nodes left out: TensorRT fuses them
into their neighbours): the nodes a warning or a ``[GpuLayer]`` entry names (TensorRT names a layer
after its node, ``node_of_<output>`` for an unnamed one, and a Constant layer after its output
tensor), over all nodes. Layers TensorRT made itself (``(Unnamed Layer* 7) [Shuffle]``) are in no
node and are listed but not counted. Every node counts once whatever it computes: a share, not a
cost. Stdlib + onnx; TensorRT is never needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from tasks.runtimes.base import BuildError
from tasks.runtimes.trtexec_log import level_line

_SWITCH = re.compile(
    r"^Layer '(.+)' \(([A-Za-z0-9_]+)\): Unsupported on DLA\. Switching this layer's device type to GPU"
)
_DEFAULT = re.compile(r"^Default DLA is enabled but layer (.+) is not supported on DLA, falling back to GPU")
_PRECISION = re.compile(r"^(DLA only supports FP16 and Int8 precision type)\. Switching (.+) device type to GPU")
_DYNAMIC = re.compile(r"^DLA Layer (.+) (does not support dynamic shapes in any dimension)")
_NO_DLA = "setDefaultDeviceType was called but no layer in the network can run on DLA"
_REASON = re.compile(r"^(.+?): (.*\bDLA\b.*)$")
_SECTION = re.compile(r"^-+ Layers Running on (DLA|GPU):?\s*-*$", re.IGNORECASE)
_DLA_ENTRY = re.compile(r"^\[DlaLayer\] \{ForeignNode\[(.*)\]\},?$")
_GPU_ENTRY = re.compile(r"^\[GpuLayer\] ([A-Za-z0-9_]+): (.*)$")
_FUSED = re.compile(r"\)*, | \+ |PWN\(|\)+$")
_FUSED_AWAY = ("QuantizeLinear", "DequantizeLinear")
_MAX_NAMED = 8


@dataclass
class DlaPlacement:
    """What one DLA build log says. ``fallbacks``: network layers switched to the GPU, in log order,
    ``{"name", "type" (None where the log gives none), "reason" (None where TensorRT printed none)}``;
    ``dla_subgraphs``: the ``ForeignNode[...]`` of each DLA loadable (``first...last`` layer, or one
    fused layer); ``gpu_layers``: the engine's GPU layers, ``{"type", "name"}`` (``name``: the fused
    layer names); ``no_dla_layer``: TensorRT said no layer can run on DLA."""

    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    dla_subgraphs: list[str] = field(default_factory=list)
    gpu_layers: list[dict[str, str]] = field(default_factory=list)
    no_dla_layer: bool = False


def parse(text: str) -> DlaPlacement:
    """Read a DLA build's log (trtexec or the Python API logger). Never raises."""
    out = DlaPlacement()
    reasons: dict[str, list[str]] = {}
    section = None
    for raw in text.splitlines():
        parsed = level_line(raw.strip())
        if parsed is None:
            continue
        message = parsed[1].removeprefix("[TRT] ").strip()
        if m := _SECTION.match(message):
            section = m.group(1).upper()
        elif section == "DLA" and (m := _DLA_ENTRY.match(message)):
            out.dla_subgraphs.append(m.group(1))
        elif section == "GPU" and (m := _GPU_ENTRY.match(message)):
            out.gpu_layers.append({"type": m.group(1), "name": m.group(2).strip()})
        elif m := _SWITCH.match(message):
            out.fallbacks.append({"name": m.group(1), "type": m.group(2), "reason": None})
        elif m := _DEFAULT.match(message):
            out.fallbacks.append({"name": m.group(1), "type": None, "reason": None})
        elif m := _PRECISION.match(message):
            out.fallbacks.append({"name": m.group(2), "type": None, "reason": m.group(1)})
        elif m := _DYNAMIC.match(message):
            reasons.setdefault(m.group(1), []).append(m.group(2))
        elif message.rstrip(".") == _NO_DLA:
            out.no_dla_layer = True
        elif parsed[0] in "WV" and (m := _REASON.match(message)):
            reasons.setdefault(m.group(1), []).append(m.group(2).rstrip("."))
    seen: dict[str, dict[str, Any]] = {}
    for f in out.fallbacks:  # one entry per layer; a reason printed before or after its switch line
        why = "; ".join(dict.fromkeys(([f["reason"]] if f["reason"] else []) + reasons.get(f["name"], [])))
        f["reason"] = why or None
        kept = seen.setdefault(f["name"], f)
        kept["type"] = kept["type"] or f["type"]
    out.fallbacks = list(seen.values())
    return out


def fused_names(entry: str) -> list[str]:
    """The layer names in one engine layer's printed name: ``SCALE``'s ``71 + (Unnamed Layer* 16)
    [Shuffle] + Mul_8`` -> [71, (Unnamed Layer* 16) [Shuffle], Mul_8]; ``PWN(PWN(Sigmoid_1), Mul_2)``
    -> [Sigmoid_1, Mul_2]."""
    return [n for n in (p.strip() for p in _FUSED.split(entry)) if n]


def _aliases(node: onnx.NodeProto) -> set[str]:
    return {n for n in (node.name, *node.output, f"node_of_{node.output[0]}" if node.output else "") if n}


def share(placement: DlaPlacement, model: onnx.ModelProto) -> tuple[float, int, int, list[str]]:
    """(GPU share, GPU nodes, counted nodes, GPU layer names in no ONNX node) of ``model``'s main graph."""
    nodes = [n for n in model.graph.node if n.op_type not in _FUSED_AWAY]
    gpu_names = {f["name"] for f in placement.fallbacks}
    for layer in placement.gpu_layers:
        gpu_names.update(fused_names(layer["name"]))
    on_gpu = [n for n in nodes if placement.no_dla_layer or _aliases(n) & gpu_names]
    known = {t.name for t in model.graph.initializer}.union(*(_aliases(n) for n in model.graph.node))  # weights fuse
    unmatched = sorted(n for n in gpu_names if n not in known)
    return (len(on_gpu) / len(nodes) if nodes else 0.0), len(on_gpu), len(nodes), unmatched


def _named(fallbacks: list[dict[str, Any]]) -> str:
    shown = [
        f"{f['name']} ({f['type'] or 'type not printed'}: {f['reason'] or 'no reason printed'})"
        for f in fallbacks[:_MAX_NAMED]
    ]
    more = len(fallbacks) - len(shown)
    return "; ".join(shown) + (f" (+{more} more in build.json)" if more > 0 else "")


def record(log_text: str, onnx_path: Path, bound: float | None, target: str, core: int) -> dict[str, Any]:
    """Build-record fields of a DLA build, from its log and the model it built (``onnx_path``):
    ``dla_layers`` (the DLA loadables the log lists), ``gpu_fallback_layers`` (name, type, reason: the
    warnings, or the log's GPU layers where it printed no warning), ``dla_gpu_layers`` (the engine's
    GPU layers), ``gpu_fallback_share`` (GPU nodes / nodes, 0 to 1), ``gpu_fallback_nodes``,
    ``dla_counted_nodes``, ``gpu_fallback_not_in_model`` and ``dla_placement_source`` ("warnings",
    "layer sections", "both" or "none": no line about placement, so nothing fell back). Raises
    ``BuildError`` naming the layers and ``target.<target>.tensorrt.max_gpu_fallback`` when the share
    exceeds ``bound`` (None: no bound)."""
    placement = parse(log_text)
    fallbacks = placement.fallbacks or [
        {"name": g["name"], "type": g["type"], "reason": None} for g in placement.gpu_layers
    ]
    model = onnx.load(str(onnx_path), load_external_data=False)
    fraction, gpu, total, unmatched = share(placement, model)
    sections = bool(placement.dla_subgraphs or placement.gpu_layers)
    source = {(True, True): "both", (True, False): "warnings", (False, True): "layer sections"}.get(
        (bool(placement.fallbacks or placement.no_dla_layer), sections), "none"
    )
    rec = {
        "dla_layers": placement.dla_subgraphs,
        "gpu_fallback_layers": fallbacks,
        "dla_gpu_layers": placement.gpu_layers,
        "gpu_fallback_share": round(fraction, 4),
        "gpu_fallback_nodes": gpu,
        "dla_counted_nodes": total,
        "gpu_fallback_not_in_model": unmatched,
        "dla_placement_source": source,
    }
    if bound is not None and fraction > bound:
        why = "TensorRT found no layer it can run on DLA; " if placement.no_dla_layer else ""
        raise BuildError(
            f"{target}: {fraction:.0%} of the model's layers ({gpu} of {total} ONNX nodes) fell back from DLA "
            f"core {core} to the GPU, above target.{target}.tensorrt.max_gpu_fallback = {bound}: {why}"
            f"{_named(fallbacks)}\n  What to do: replace those operators with ones DLA runs (the pre-flight lint "
            f"names them before the upload), raise target.{target}.tensorrt.max_gpu_fallback (null = no bound), or "
            f"unset target.{target}.tensorrt.dla_core to build for the GPU; the figures of this engine would "
            "otherwise be reported as DLA figures"
        )
    return rec
