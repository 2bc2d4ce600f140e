"""End-to-end batch-1 latency, split into what an application on the device spends per image:

``preprocess`` (a decoded uint8 image of the data's original size fitted and normalised into the model's
input by the project's own code path: :func:`tasks.data.geometry.fit` / ``warp_image`` and
:func:`tasks.data.preprocess.preprocess`, as the prepare stage does), ``input_copy`` (into the runtime's
tensor; host-to-device on a GPU), ``compute``, ``output_copy`` (out of the runtime's tensors;
device-to-host on a GPU) and ``decode`` (host-side decoding: ``eval.decoder`` and NMS with the boxes
mapped back to the original image, argmax for classification and segmentation).

Local targets (ONNX Runtime, OpenVINO) are timed in-process, all five parts in one chain per call
(the sessions' ``steps``: ORT's IOBinding, an OpenVINO InferRequest; agent ``time_chain``): each
part's median over the same calls, ``total_ms`` the median of the whole calls (not the sum of the
medians, which is ``sum_of_parts_ms``). Devices: ONNX Runtime and OpenVINO targets time the copies
and compute through the agent; TensorRT targets take trtexec's own split (H2D Latency, GPU Compute
Time, D2H Latency medians); decoding is timed on this host (the device's CPU is usually slower) on
the FP32 ONNX model's outputs for the same image; preprocessing is not measured there (the agent
carries no EdgeForge code), nor is a whole call. A part that is not measured is ``None`` and its
``what`` says why. Times in milliseconds.
"""

from __future__ import annotations

import dataclasses
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tasks.agent.agent import time_chain
from tasks.config import Config
from tasks.config.load import decoded_as
from tasks.data.geometry import detections_to_original, fit, instances_to_original, warp_image
from tasks.data.preprocess import input_hw, preprocess
from tasks.data.split import Split, classes_of

PARTS = ("preprocess", "input_copy", "compute", "output_copy", "decode")
COPIES = {
    "onnxruntime": (
        "IOBinding bind_cpu_input (the CPU provider reads a float32 batch in place; an FP16 model's cast is here)",
        "run_with_iobinding",
        "copy_outputs_to_cpu, as float32",
    ),
    "openvino": (
        "set_input_tensor, shared as EdgeForge's session shares it (no copy)",
        "InferRequest start_async + wait",
        "get_output_tensor(i).data copied out, as float32",
    ),
}

#: part, trtexec_log summary key, the line trtexec prints
TRTEXEC_PARTS = (
    ("input_copy", "h2d_latency", "H2D Latency"),
    ("compute", "gpu_compute_time", "GPU Compute Time"),
    ("output_copy", "d2h_latency", "D2H Latency"),
)


def host_cpu() -> str:
    """This machine's CPU model with its family and model numbers (``/proc/cpuinfo``: a VM may name
    only the vendor, "AMD EPYC"), for saying where a figure was taken."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    info = dict(re.findall(r"^(model name|cpu family|model)\s*:\s*(.+?)\s*$", text, re.M)[:3])
    if "model name" in info:
        return f"{info['model name']} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
    return platform.processor() or platform.machine()


def source_image(split: Split, cfg: Config) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(image, meta row, what)``: a uint8 ``(h, w)`` or ``(h, w, 3)`` image the size of the eval
    split's first image before it was fitted (``meta.npy``; the model's input size when the split has
    no meta), its pixels rebuilt from the prepared sample (the split keeps no decoded images)."""
    from PIL import Image

    spec = cfg.model.input
    x = np.asarray(split.x[0], np.float32).transpose(1, 2, 0)  # (H, W, C), normalised
    px = (x * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)) / np.float32(spec.scale)
    px = np.clip(np.rint(px), 0, 255).astype(np.uint8)
    px = px[..., ::-1] if spec.channel_order == "bgr" else px
    # decoded as a file source decodes it: gray (h, w) for a gray model, else RGB (h, w, 3)
    if spec.channel_order == "gray":
        px = px[..., 0] if px.shape[-1] == 1 else px.mean(axis=-1).astype(np.uint8)
    elif px.shape[-1] == 1:
        px = np.repeat(px, 3, axis=-1)
    meta = None if split.meta is None else np.asarray(split.meta[0], np.float32)
    hw = (int(meta[0]), int(meta[1])) if meta is not None else px.shape[:2]
    if px.shape[:2] != hw:
        px = np.asarray(Image.fromarray(px).resize(hw[::-1], Image.BILINEAR))
    size = "x".join(map(str, px.shape))
    where = "its original size (meta.npy)" if meta is not None else "the model's input size (the split has no meta.npy)"
    return (
        px,
        meta,
        f"uint8 {size} image at {where}, pixels rebuilt from eval sample 0 (the split keeps no decoded images)",
    )


def preprocessor(cfg: Config, meta: np.ndarray | None) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The prepare stage's path from a decoded image to a float32 ``(1, C, H, W)`` batch: fitted
    (resize or letterbox) when the split recorded fits, then :func:`preprocess`."""
    spec = cfg.model.input
    if meta is None:
        return (lambda img: preprocess(img[None], spec)), "preprocess (resize when needed, normalise, NCHW)"

    def run(img: np.ndarray) -> np.ndarray:
        f = fit(img.shape[:2], input_hw(spec), spec.letterbox)
        return preprocess(warp_image(img, f, spec.pad_value)[None], spec)

    how = "letterbox" if spec.letterbox else "resize"
    return run, f"fit + warp_image ({how}) + preprocess (normalise, NCHW), as the prepare stage does"


def decoder(cfg: Config, classes: list[str], meta: np.ndarray | None) -> tuple[Callable[[dict], Any], str]:
    """Host-side decoding of one image's outputs (by output name), by what the outputs decode as."""
    from tasks.metrics.task import decode

    as_, m = decoded_as(cfg), cfg.model
    n = len(classes) if classes and cfg.model.task != "fidelity" else None
    rows = None if meta is None else meta[None]
    t = cfg.bench.end_to_end_score_threshold
    if t is not None:  # a deployment's threshold, not validation's
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, score_threshold=t))
    score = f"score threshold {t:g} (bench.end_to_end_score_threshold)" if t is not None else "eval's thresholds"
    if as_ == "detection":
        return (lambda o: detections_to_original(decode(cfg, o, n), rows)), (
            f"eval.decoder {cfg.eval.decoder} ({score}, NMS) + boxes mapped to the original image"
        )
    if as_ == "keypoints":
        return (lambda o: instances_to_original(decode(cfg, o, n), rows)), (
            f"eval.decoder {cfg.eval.decoder} ({score}) + instances mapped to the original image"
        )
    if as_ == "classification":
        return (lambda o: np.argmax(o[m.scores_output], axis=-1)), f"top-1 class (argmax of {m.scores_output})"
    if as_ == "segmentation":
        return (lambda o: _mask(o[m.scores_output], cfg)), f"class per pixel of {m.scores_output} (at the input size)"
    return (lambda o: o), "none (eval.fidelity_of: none compares raw outputs)"


def _mask(scores: np.ndarray, cfg: Config) -> np.ndarray:
    from tasks.metrics.segmentation import binarize
    from tasks.metrics.task import one_channel

    if one_channel(scores):
        return binarize(scores, cfg.model.seg_threshold, cfg.model.seg_output == "logits")
    return scores.argmax(axis=1)


def summarize(times: dict[str, list[float] | None], what: dict[str, str]) -> dict[str, Any]:
    """Per-call seconds by part (None: not measured) -> the ``end_to_end`` record (ms)."""

    def med(v):
        return float(np.median(v)) * 1e3 if v else None

    res: dict[str, Any] = {f"{p}_ms": med(times.get(p)) for p in PARTS}
    res["total_ms"] = med(times.get("total"))
    measured = [res[f"{p}_ms"] for p in PARTS if res[f"{p}_ms"] is not None]
    res["sum_of_parts_ms"] = float(sum(measured)) if measured else None
    res["iterations"] = max((len(v) for v in times.values() if v), default=0)
    res["what"] = what
    return res


def local(cfg: Config, session, split: Split, runtime: str) -> dict[str, Any]:
    """All five parts timed in this process, in one chain per call (``session``: a loaded
    ``Session`` with ``steps``, as ONNX Runtime's and OpenVINO's are)."""
    image, meta, image_what = source_image(split, cfg)
    pre, pre_what = preprocessor(cfg, meta)
    dec, dec_what = decoder(cfg, classes_of(split.root), meta)
    described = getattr(session, "copies", None) or COPIES.get(runtime)  # a model may describe its own steps
    split_io = hasattr(session, "steps") and described is not None
    steps = session.steps() if split_io else [("compute", session.infer)]
    chain = [("preprocess", pre), *steps, ("decode", dec)]
    times = time_chain(chain, image, cfg.bench.end_to_end_iterations, max_s=cfg.bench.end_to_end_max_s)
    no_split = f"not measured: {runtime}'s session has no split of copies from compute (counted in compute)"
    copy_in, compute, copy_out = described if split_io else (no_split, "infer (copies included)", no_split)
    what = {
        "image": image_what,
        "preprocess": pre_what,
        "input_copy": copy_in,
        "compute": compute,
        "output_copy": copy_out,
        "decode": dec_what,
        "total": f"median of {len(times['total'])} whole calls, image to decoded result, in this process",
        "where": f"this machine ({host_cpu()})",
    }
    return summarize(times, what)


def _host_decode(cfg: Config, split: Split, onnx_path: Path | None) -> tuple[list[float] | None, str]:
    """Decoding timed on this host on the FP32 ONNX model's outputs for eval sample 0."""
    if onnx_path is None or not Path(onnx_path).is_file():
        return None, "not measured: no ONNX model to produce outputs to decode on this host"
    from tasks.agent.agent import OrtModel

    outputs = OrtModel(onnx_path, None, ["CPUExecutionProvider"]).infer(np.ascontiguousarray(split.x[:1]))
    dec, dec_what = decoder(cfg, classes_of(split.root), None if split.meta is None else split.meta[0])
    times = time_chain([("decode", dec)], outputs, cfg.bench.end_to_end_iterations, max_s=cfg.bench.end_to_end_max_s)
    return times["decode"], (
        f"{dec_what}; timed on this host ({host_cpu()}) on the FP32 ONNX model's outputs, not on the device: "
        "the device's CPU is usually slower, so its figure is higher"
    )


def _trtexec_split(trtexec: dict | None) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """trtexec's batch-1 medians (ms -> s) of H2D Latency, GPU Compute Time and D2H Latency."""
    b1 = (trtexec or {}).get("b1") or {}
    why = b1.get("skipped") or ("trtexec did not run" if not b1 else None)
    times: dict[str, list[float] | None] = {}
    what: dict[str, str] = {}
    for part, key, label in TRTEXEC_PARTS:
        stats = (b1.get(key) or {}) if not why else {}
        median = stats.get("median")
        if median is not None and part != "compute" and not stats.get("max"):
            # trtexec prints 0 when it excluded data transfers (--noDataTransfers, TensorRT 11's default)
            median, missing = None, f"trtexec's {label} is 0: it did not include data transfers"
        else:
            missing = why or f"trtexec printed no {label}"
        times[part] = [median / 1e3] if median is not None else None
        what[part] = (
            f"trtexec's {label} median (batch 1, on the device)" if median is not None else f"not measured: {missing}"
        )
    return times, what


def remote(cfg: Config, split: Split, runtime: str, info: dict, onnx_path: Path | None) -> dict[str, Any]:
    """A device's split: the agent's copies and compute (ONNX Runtime, OpenVINO: ``info["io_split_s"]``)
    or trtexec's (TensorRT: ``info["trtexec"]``), decoding timed on this host."""
    if runtime == "tensorrt":
        times, what = _trtexec_split(info.get("trtexec"))
    else:
        split_s = info.get("io_split_s") or {}
        times = {p: split_s.get(p) for p in ("input_copy", "compute", "output_copy")}
        labels = COPIES.get(runtime, ("", "", ""))
        what = {
            p: f"{label}, timed by the agent on the device" if times[p] else "not measured: the agent sent no split"
            for p, label in zip(("input_copy", "compute", "output_copy"), labels)
        }
    times["decode"], what["decode"] = _host_decode(cfg, split, onnx_path)
    times["preprocess"] = times["total"] = None
    what["preprocess"] = (
        "not measured: the device agent carries no EdgeForge preprocessing code (stdlib and the runtime only)"
    )
    what["total"] = "not measured: no whole image-to-result call runs on the device; sum_of_parts_ms adds the parts"
    what["where"] = "the device (copies, compute); this host for decoding"
    return summarize(times, what)


def line(e2e: dict[str, Any], compute_p50_ms: float | None) -> str:
    """One log line: the total beside the compute-only p50, and the parts."""

    def ms(v):
        return "n/a" if v is None else f"{v:.3f}"

    parts = ", ".join(f"{p.replace('_', ' ')} {ms(e2e[f'{p}_ms'])}" for p in PARTS)
    return (
        f"end to end (batch 1): {ms(e2e['total_ms'])} ms median whole call, sum of part medians "
        f"{ms(e2e['sum_of_parts_ms'])} ms ({parts}); compute-only p50 {ms(compute_p50_ms)} ms"
    )
