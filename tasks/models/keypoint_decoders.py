"""Keypoint decoders, registered by name beside the box decoders (:mod:`tasks.models.decoders`: the
same calling convention and defaults), for ``model.task: keypoints``.

A keypoint decoder returns one float32 ``(D, 6 + 3J)`` array per image, rows ``[x1, y1, x2, y2,
score, class, x_1, y_1, s_1, ..., x_J, y_J, s_J]`` in input pixels, score descending: an instance's
box, its score and class, then per keypoint its position and confidence. ``num_keypoints`` (J, the
length of ``eval.keypoint_sigmas``) must match the outputs, else :class:`DecoderError`.

- ``heatmap``: top-down pose models (HRNet, SimpleBaseline, ViTPose) output ``(N, J, h, w)``
  heatmaps for one person crop each. As mmpose's ``MSRAHeatmap.decode`` (``get_heatmap_maximum`` then
  ``refine_keypoints``, the same rule as HRNet's ``get_final_preds``): the argmax ``(x, y)`` in
  heatmap cells (``-1`` where the maximum is <= 0), moved a quarter cell towards the higher of its
  two neighbours on each axis (x only when ``1 < x < w - 1`` and ``y > 0``, y only when
  ``1 < y < h - 1`` and ``x > 0``: mmpose's bounds, kept so that figures match its evaluation), then scaled by ``input / heatmap`` size, so heatmap cell ``i`` is input
  coordinate ``i * stride``. One instance per image, whose box is the whole input (the crop), class
  0, score = the mean of the J maxima (HRNet's and mmpose's instance score before rescoring),
  keypoint confidence = its maximum.
- ``yolov8_pose``: the Ultralytics pose head ``(N, 4 + C + 3J, A)`` (or ``4 + C + 2J`` for
  ``kpt_shape [J, 2]``): cx, cy, w, h, per-class scores, then x, y (and visibility, sigmoid applied)
  per keypoint, in input pixels. As Ultralytics' pose validation: candidates scoring above
  ``score_threshold`` (multi-label when C > 1), class-aware NMS (:mod:`tasks.models.nms`), at
  most ``max_detections``; each kept candidate carries its anchor's keypoints. Without visibility,
  a keypoint's confidence is the instance's score.
"""

from __future__ import annotations

import numpy as np

from tasks.models.decoders import register_decoder
from tasks.models.errors import DecoderError
from tasks.models.nms import nms
from tasks.models.yolo_decoders import candidates

KEYPOINT_DECODERS = ("heatmap", "yolov8_pose")


def _one_output(name: str, layout: str, outputs: dict[str, np.ndarray], ndim: int) -> np.ndarray:
    shapes = ", ".join(f"{n} {tuple(np.shape(a))}" for n, a in outputs.items()) or "none"
    if len(outputs) != 1:
        raise DecoderError(
            f"eval.decoder {name} takes one output {layout}; got {len(outputs)}: {shapes}. "
            "Set eval.outputs to the name of that one output"
        )
    out = np.asarray(next(iter(outputs.values())))
    if out.ndim != ndim:
        raise DecoderError(f"eval.decoder {name} expects an output {layout}; got {shapes}")
    return out


def _count_mismatch(name: str, shape: tuple, found: str, num_keypoints: int) -> DecoderError:
    return DecoderError(
        f"eval.decoder {name}: the output {shape} holds {found}, but eval.keypoint_sigmas lists "
        f"{num_keypoints} sigma(s) (one per keypoint; COCO's 17 by default): give one sigma per keypoint "
        "of the model, in its order"
    )


@register_decoder("heatmap")
def decode_heatmap(
    outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int] | None = None, num_keypoints: int | None = None
) -> list[np.ndarray]:
    """One instance per image from top-down heatmaps ``(N, J, h, w)``; ``input_hw`` (the model's
    input size, pixels) sets the scale (``None``: heatmap cells are pixels)."""
    hm = _one_output("heatmap", "(N, J, h, w)", outputs, 4)
    n, j, h, w = hm.shape
    if num_keypoints is not None and j != num_keypoints:
        raise _count_mismatch("heatmap", hm.shape, f"J = {j} heatmaps", num_keypoints)
    flat = hm.reshape(n, j, h * w)
    idx = flat.argmax(axis=2)
    val = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0].astype(np.float32)
    y, x = np.divmod(idx, w)
    # the neighbours of every maximum (clipped reads: the bounds below discard the clipped ones)
    b, k = np.indices((n, j))
    dx = hm[b, k, y, np.minimum(x + 1, w - 1)] - hm[b, k, y, np.maximum(x - 1, 0)]
    dy = hm[b, k, np.minimum(y + 1, h - 1), x] - hm[b, k, np.maximum(y - 1, 0), x]
    found = val > 0
    fx = np.where(found, x, -1).astype(np.float64)
    fy = np.where(found, y, -1).astype(np.float64)
    shift_x = found & (fx > 1) & (fx < w - 1) & (fy > 0)  # mmpose's bounds, its y > 0 included
    shift_y = found & (fy > 1) & (fy < h - 1) & (fx > 0)
    fx += np.where(shift_x, np.sign(dx) * 0.25, 0.0)
    fy += np.where(shift_y, np.sign(dy) * 0.25, 0.0)
    in_h, in_w = input_hw if input_hw is not None else (h, w)
    kpts = np.stack([fx * (in_w / w), fy * (in_h / h), val], axis=2).reshape(n, 3 * j)
    head = np.column_stack(
        [np.zeros(n), np.zeros(n), np.full(n, in_w), np.full(n, in_h), val.mean(axis=1), np.zeros(n)]
    )
    rows = np.concatenate([head, kpts], axis=1).astype(np.float32)
    return [rows[i : i + 1] for i in range(n)]


def encode_heatmaps(keypoints: np.ndarray, *, out_hw: tuple[int, int], stride: float, sigma: float = 2.0) -> np.ndarray:
    """Training targets for a heatmap head, in :func:`decode_heatmap`'s convention (heatmap cell
    ``i`` is input coordinate ``i * stride``): ``keypoints`` ``(N, J, 3)`` ``x, y, v`` in input
    pixels -> float32 ``(N, J, h, w)``, a Gaussian of ``sigma`` cells peaking at
    ``(x, y) / stride`` (the exact point, as mmpose's ``unbiased`` encoding; 1 at a whole cell),
    all zero where ``v == 0``."""
    kp = np.asarray(keypoints, np.float64)
    h, w = out_hw
    gx = np.exp(-((np.arange(w) - kp[..., 0, None] / stride) ** 2) / (2 * sigma**2))  # (N, J, w)
    gy = np.exp(-((np.arange(h) - kp[..., 1, None] / stride) ** 2) / (2 * sigma**2))  # (N, J, h)
    hm = gy[..., :, None] * gx[..., None, :] * (kp[..., 2] > 0)[..., None, None]
    return hm.astype(np.float32)


def _pose_layout(shape: tuple, c: int, num_keypoints: int | None) -> int:
    """Values per keypoint (3: x, y, visibility; 2: x, y) of a ``(N, 4 + C + dims * J, A)`` head."""
    rest = shape[1] - 4 - c
    if num_keypoints is None:
        if rest > 0 and rest % 3 == 0:
            return 3
        raise DecoderError(
            f"eval.decoder yolov8_pose expects (N, 4 + C + 3J, A); {shape} leaves {rest} rows for keypoints with C = {c}"
        )
    for dims in (3, 2):
        if rest == dims * num_keypoints:
            return dims
    found = f"{rest} keypoint rows with C = {c} class(es) (J = {rest / 3:g} with x, y, visibility)"
    raise _count_mismatch("yolov8_pose", shape, found, num_keypoints)


@register_decoder("yolov8_pose", score_threshold=0.001, iou_threshold=0.7, max_detections=300)
def decode_yolov8_pose(
    outputs: dict[str, np.ndarray],
    *,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.7,
    max_detections: int = 300,
    multi_label: bool = True,
    num_classes: int | None = None,
    num_keypoints: int | None = None,
    agnostic: bool = False,
) -> list[np.ndarray]:
    """Instances from an Ultralytics ``(N, 4 + C + 3J, A)`` pose head; C = ``num_classes`` (the
    dataset's; 1 when unknown, the person class)."""
    out = _one_output("yolov8_pose", "(N, 4 + C + 3J, A)", outputs, 3)
    c = num_classes or 1
    dims = _pose_layout(out.shape, c, num_keypoints)
    j = (out.shape[1] - 4 - c) // dims
    results = []
    for pred in out:
        anchor, cls, score = candidates(pred[4 : 4 + c].T.astype(np.float64), score_threshold, multi_label)
        cx, cy, bw, bh = pred[:4, anchor].astype(np.float64)
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        keep = nms(boxes, score, cls, iou_threshold, max_detections, agnostic=agnostic)
        kp = pred[4 + c :, anchor[keep]].T.reshape(len(keep), j, dims).astype(np.float64)
        if dims == 2:
            kp = np.concatenate([kp, np.broadcast_to(score[keep, None, None], (len(keep), j, 1))], axis=2)
        rows = np.concatenate([boxes[keep], score[keep, None], cls[keep, None], kp.reshape(len(keep), 3 * j)], axis=1)
        results.append(rows.astype(np.float32).reshape(-1, 6 + 3 * j))
    return results
