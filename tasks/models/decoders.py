"""Host-side decoders that turn a detector's raw ONNX outputs into boxes, by registered name.

A decoder is ``fn(outputs, **options) -> list[np.ndarray]``: ``outputs`` maps output names to
the arrays a runtime returned for one batch; the result holds one float32 ``(D, 6)`` array per
image, rows ``[x1, y1, x2, y2, score, class]`` in input pixels, sorted by score descending.
:func:`run_decoder` passes a decoder only the options its signature names (``input_hw``,
``score_threshold``, ``iou_threshold``, ``max_detections``, ``multi_label``, ``num_classes``), with
the decoder's registered defaults for the eval settings left null. Outputs that do not fit the
decoder raise :class:`~tasks.models.errors.DecoderError`. The YOLO-family decoders (``yolov8``,
``yolov5``, ``boxes``) live in :mod:`tasks.models.yolo_decoders`.

Coordinates are continuous: pixel ``i`` spans ``[i, i + 1)``, so a box ``[x1, x2)`` of pixel
columns (x2 exclusive, as in the dataset labels) covers ``x1 <= x <= x2`` and has width ``x2 - x1``.
The target encoder the detector is trained with lives here too, so that both sides agree.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tasks.models.errors import DecoderError
from tasks.registry import Registry, UnknownName

Decoder = Callable[..., list[np.ndarray]]
DECODERS: Registry[Decoder] = Registry("detection decoder")
# eval settings a decoder uses when the config leaves them null
DECODER_DEFAULTS: dict[str, dict[str, Any]] = {}


def register_decoder(name: str, **defaults: Any) -> Callable[[Decoder], Decoder]:
    """Register a decoder as ``name`` with its defaults for ``score_threshold``, ``max_detections``
    and (NMS decoders) ``iou_threshold``."""

    def deco(fn: Decoder) -> Decoder:
        DECODERS.register(name)(fn)
        DECODER_DEFAULTS[name] = defaults
        return fn

    return deco


def get_decoder(name: str) -> Decoder:
    """The decoder registered as ``name``; an unknown name raises :class:`~tasks.registry.UnknownName` listing the known ones."""
    return DECODERS.get(name)


def run_decoder(name: str, outputs: Mapping[str, np.ndarray], **options: Any) -> list[np.ndarray]:
    """Decode ``outputs`` with the decoder ``name``: an option that is None takes the decoder's
    registered default, and only the options the decoder's signature names are passed."""
    fn = get_decoder(name)
    options = {k: DECODER_DEFAULTS[name].get(k) if v is None else v for k, v in options.items()}
    accepted = inspect.signature(fn).parameters
    return fn(dict(outputs), **{k: v for k, v in options.items() if k in accepted and v is not None})


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (in the units of ``h``, ``w``) within which a corner-shifted box keeps
    IoU >= ``min_overlap`` with the true one (the smallest of its three cases)."""
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def encode_centernet(
    boxes: np.ndarray, *, num_classes: int, out_hw: tuple[int, int], stride: int = 4
) -> dict[str, np.ndarray]:
    """Training targets for a CenterNet head, the exact inverse of :func:`decode_centernet`.

    ``boxes`` int or float ``(N, K, 5)`` rows ``[class, x1, y1, x2, y2]`` in input pixels, x2/y2
    exclusive; rows with class < 0 are padding. The box centre ``c = ((x1 + x2) / 2, (y1 + y2) / 2)``
    (pixels) falls in cell ``(col, row) = floor(c / stride)``; the offset is ``c / stride - (col, row)``
    in ``[0, 1)`` cells and the size ``(x2 - x1, y2 - y1)`` in pixels, so the decoder's
    ``(col + offset) * stride -/+ size / 2`` gives the box back exactly.

    Returns float32 ``heatmap`` ``(N, num_classes, H, W)`` (a Gaussian per box, peak 1 at its cell,
    sigma = (2 * radius + 1) / 6 cells, overlaps combined with max), int64 ``index`` ``(N, K)``
    (flat ``row * W + col``), float32 ``wh`` ``(N, K, 2)`` pixels, float32 ``offset`` ``(N, K, 2)``
    cells, and bool ``mask`` ``(N, K)`` (which rows are boxes).
    """
    boxes = np.asarray(boxes, np.float64)
    n, k = boxes.shape[:2]
    h, w = out_hw
    heatmap = np.zeros((n, num_classes, h, w), np.float32)
    index = np.zeros((n, k), np.int64)
    wh = np.zeros((n, k, 2), np.float32)
    offset = np.zeros((n, k, 2), np.float32)
    mask = boxes[..., 0] >= 0
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    for i, j in zip(*np.nonzero(mask)):
        cls, x1, y1, x2, y2 = boxes[i, j]
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        col, row = min(int(np.floor(cx)), w - 1), min(int(np.floor(cy)), h - 1)
        radius = max(0, int(gaussian_radius((y2 - y1) / stride, (x2 - x1) / stride)))
        sigma = (2 * radius + 1) / 6
        g = np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2)).astype(np.float32)
        np.maximum(heatmap[i, int(cls)], g, out=heatmap[i, int(cls)])
        index[i, j] = row * w + col
        wh[i, j] = (x2 - x1, y2 - y1)
        offset[i, j] = (cx - col, cy - row)
    return {"heatmap": heatmap, "index": index, "wh": wh, "offset": offset, "mask": mask}


def _is_peak(hm: np.ndarray) -> np.ndarray:
    """bool, same shape as ``hm`` ``(..., H, W)``: the cell equals the max of its 3x3 neighbourhood."""
    h, w = hm.shape[-2:]
    pad = np.pad(hm, [(0, 0)] * (hm.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    neighbourhood = np.max(np.stack([pad[..., dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]), axis=0)
    return hm >= neighbourhood


@register_decoder("centernet", score_threshold=0.01, max_detections=100)
def decode_centernet(
    outputs: dict[str, np.ndarray],
    *,
    input_hw: tuple[int, int] | None = None,
    stride: int = 4,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    heatmap: str = "heatmap",
    wh: str = "wh",
    offset: str = "offset",
) -> list[np.ndarray]:
    """Boxes from CenterNet outputs; the inverse of :func:`encode_centernet`.

    ``outputs[heatmap]`` float ``(B, C, H, W)`` per-class centre probabilities (sigmoid applied),
    ``outputs[wh]`` ``(B, 2, H, W)`` box width, height in input pixels, ``outputs[offset]``
    ``(B, 2, H, W)`` sub-cell centre offset (x, y) in cells; ``input_hw``, when given, sets
    ``stride = input height // H`` (else ``stride``). A cell is a detection when it equals
    the 3x3 max of its class map and its score >= ``score_threshold``; the ``max_detections`` best
    per image (across classes) are kept. Centre = ``((col + offset_x) * stride, (row + offset_y) * stride)``
    pixels, box = centre -/+ size / 2, clipped to the input ``[0, W * stride] x [0, H * stride]``.

    Returns per image a float32 ``(D, 6)`` array ``[x1, y1, x2, y2, score, class]`` (x2 = x1 + w,
    exclusive like the labels), score descending.
    """
    for key in (heatmap, wh, offset):
        if key not in outputs:
            raise UnknownName(
                f"centernet decoder: no output {key!r} among {', '.join(outputs)}; "
                "set the decoder's heatmap/wh/offset names to the model's output names"
            )
    hm = np.asarray(outputs[heatmap], np.float32)
    size, off = np.asarray(outputs[wh], np.float32), np.asarray(outputs[offset], np.float32)
    if hm.ndim != 4 or size.shape != (hm.shape[0], 2, *hm.shape[2:]) or off.shape != size.shape:
        raise DecoderError(
            f"eval.decoder centernet expects heatmap (B, C, H, W) and wh, offset (B, 2, H, W); "
            f"got {hm.shape}, {size.shape}, {off.shape}: set eval.decoder to the decoder of the model's head"
        )
    _, _, h, w = hm.shape
    if input_hw is not None:
        stride = input_hw[0] // h
    keep = _is_peak(hm) & (hm >= score_threshold)
    results = []
    for b in range(hm.shape[0]):
        cls, row, col = np.nonzero(keep[b])
        score = hm[b, cls, row, col]
        order = np.argsort(-score, kind="stable")[:max_detections]
        cls, row, col, score = cls[order], row[order], col[order], score[order]
        cx = (col + off[b, 0, row, col]) * stride
        cy = (row + off[b, 1, row, col]) * stride
        bw, bh = size[b, 0, row, col], size[b, 1, row, col]
        x1, x2 = np.clip(cx - bw / 2, 0, w * stride), np.clip(cx + bw / 2, 0, w * stride)
        y1, y2 = np.clip(cy - bh / 2, 0, h * stride), np.clip(cy + bh / 2, 0, h * stride)
        results.append(np.stack([x1, y1, x2, y2, score, cls], axis=1).astype(np.float32).reshape(-1, 6))
    return results


from tasks.models import (  # noqa: E402, F401  (registers heatmap, yolov8_pose; yolov8, yolov5, boxes)
    keypoint_decoders,
    yolo_decoders,
)
