"""Decoders for YOLO-family detectors, registered by name beside ``centernet`` (see
:mod:`tasks.models.decoders` for the calling convention; boxes come out in input pixels).

- ``yolov8``: the Ultralytics head of YOLOv8 / YOLO11 / YOLO26 one-to-many exports, one output
  ``(N, 4 + C, A)``: rows 0..3 are cx, cy, w, h in input pixels, rows 4.. per-class scores (sigmoid
  applied, no objectness). Post-processing as Ultralytics validation (``non_max_suppression`` with
  ``multi_label=True``): every class scoring ``> score_threshold`` at an anchor is a candidate
  (``multi_label=false``: only its best class), then class-aware NMS (:mod:`tasks.models.nms`).
- ``yolov5``: one output ``(N, A, 5 + C)``: cx, cy, w, h, objectness, per-class scores (YOLOv5,
  YOLOv7, YOLOX-style exports); anchors with objectness ``<= score_threshold`` are dropped, the
  score is objectness x class score, then as ``yolov8`` (YOLOv5's ``non_max_suppression``).
- ``boxes``: models that end in NMS. Either one output ``(N, K, 6+)`` rows
  ``[x1, y1, x2, y2, score, class, ...]`` (Ultralytics end-to-end exports, ``nms=True`` exports),
  rows scoring ``<= score_threshold`` or with a negative class being padding; or TensorRT
  EfficientNMS's four outputs in order ``num_detections`` ``(N, 1)`` int32, ``detection_boxes``
  ``(N, K, 4)`` (corners), ``detection_scores`` ``(N, K)``, ``detection_classes`` ``(N, K)`` int32
  (NVIDIA/TensorRT plugin/efficientNMSPlugin/README.md, "Outputs"); only the first
  ``num_detections[i]`` rows of image i count.

Defaults (``eval.*`` null) are Ultralytics' / YOLOv5's validation settings: score 0.001, at most 300
detections, IoU 0.7 (Ultralytics ``iou`` default) or 0.6 (YOLOv5 ``val.py --iou-thres``).
"""

from __future__ import annotations

import numpy as np

from tasks.models.decoders import register_decoder
from tasks.models.errors import DecoderError
from tasks.models.nms import nms


def _shapes(outputs: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{n} {tuple(np.shape(a))}" for n, a in outputs.items()) or "none"


def _single(name: str, layout: str, outputs: dict[str, np.ndarray]) -> np.ndarray:
    if len(outputs) != 1:
        raise DecoderError(
            f"eval.decoder {name} takes one output {layout}; got {len(outputs)}: {_shapes(outputs)}. "
            "Set eval.outputs to the name of that one output"
        )
    (out,) = outputs.values()
    out = np.asarray(out)
    if out.ndim != 3:
        raise DecoderError(f"eval.decoder {name} expects an output {layout}; got {_shapes(outputs)} (rank {out.ndim})")
    return out


def _check_classes(name: str, layout: str, c: int, num_classes: int | None, outputs, hint: str = "") -> None:
    if c < 1 or (num_classes is not None and c != num_classes):
        expected = f"the {num_classes} classes of the dataset" if num_classes is not None else "at least one class"
        raise DecoderError(
            f"eval.decoder {name} expects an output {layout}; {_shapes(outputs)} gives C = {c}, "
            f"not {expected}.{hint} Check eval.decoder, eval.outputs and the dataset's classes"
        )


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """``(A, 4)`` centre-size boxes -> corners, float64."""
    b = np.asarray(cxcywh, np.float64)
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def candidates(
    cls_scores: np.ndarray, score_threshold: float, multi_label: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(anchor, class, score)`` of the candidates among ``cls_scores`` ``(A, C)``: with
    ``multi_label`` and C > 1 (as Ultralytics), one per class scoring above the threshold,
    anchor-major; else each anchor's best class, when it scores above the threshold."""
    if multi_label and cls_scores.shape[1] > 1:
        anchor, cls = np.nonzero(cls_scores > score_threshold)
        return anchor, cls, cls_scores[anchor, cls]
    cls = np.argmax(cls_scores, axis=1)
    score = cls_scores[np.arange(len(cls)), cls]
    anchor = np.flatnonzero(score > score_threshold)
    return anchor, cls[anchor], score[anchor]


def _postprocess(
    boxes: np.ndarray,
    cls_scores: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    multi_label: bool,
    agnostic: bool,
) -> np.ndarray:
    """Candidates of one image (``boxes`` ``(A, 4)`` cx, cy, w, h; ``cls_scores`` ``(A, C)``), then NMS
    -> float32 ``(D, 6)``."""
    anchor, cls, score = candidates(cls_scores, score_threshold, multi_label)
    xyxy = _xyxy(boxes[anchor])
    keep = nms(xyxy, score, cls, iou_threshold, max_detections, agnostic=agnostic)
    return np.concatenate([xyxy[keep], score[keep, None], cls[keep, None]], axis=1).astype(np.float32).reshape(-1, 6)


@register_decoder("yolov8", score_threshold=0.001, iou_threshold=0.7, max_detections=300)
def decode_yolov8(
    outputs: dict[str, np.ndarray],
    *,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.7,
    max_detections: int = 300,
    multi_label: bool = True,
    num_classes: int | None = None,
    agnostic: bool = False,
) -> list[np.ndarray]:
    """Boxes from an Ultralytics ``(N, 4 + C, A)`` head; ``num_classes`` (the dataset's) must equal C."""
    layout = "(N, 4 + C, A)"
    out = _single("yolov8", layout, outputs)
    c = out.shape[1] - 4
    transposed = num_classes is not None and out.shape[2] - 4 == num_classes
    hint = (
        " It looks transposed, (N, A, 4 + C): export the (N, 4 + C, A) head as Ultralytics does." if transposed else ""
    )
    _check_classes("yolov8", layout, c, num_classes, outputs, hint)
    results = []
    for pred in out:
        scores = pred[4:]
        anchors = np.flatnonzero(scores.max(axis=0) > score_threshold)  # Ultralytics' xc pre-filter
        results.append(
            _postprocess(
                pred[:4, anchors].T,
                scores[:, anchors].T,
                score_threshold,
                iou_threshold,
                max_detections,
                multi_label,
                agnostic,
            )
        )
    return results


@register_decoder("yolov5", score_threshold=0.001, iou_threshold=0.6, max_detections=300)
def decode_yolov5(
    outputs: dict[str, np.ndarray],
    *,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_detections: int = 300,
    multi_label: bool = True,
    num_classes: int | None = None,
    agnostic: bool = False,
) -> list[np.ndarray]:
    """Boxes from a ``(N, A, 5 + C)`` head with objectness; score = objectness x class score."""
    layout = "(N, A, 5 + C)"
    out = _single("yolov5", layout, outputs)
    _check_classes("yolov5", layout, out.shape[2] - 5, num_classes, outputs)
    results = []
    for pred in out:
        pred = pred[pred[:, 4] > score_threshold]  # YOLOv5's xc: objectness above the threshold
        scores = pred[:, 5:].astype(np.float64) * pred[:, 4:5]
        results.append(
            _postprocess(pred[:, :4], scores, score_threshold, iou_threshold, max_detections, multi_label, agnostic)
        )
    return results


def _efficient_nms(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    count, boxes, scores, classes = (np.asarray(a) for a in outputs.values())
    n, k = scores.shape[:2] if scores.ndim == 2 else (-1, -1)
    if not (count.shape in ((n, 1), (n,)) and boxes.shape == (n, k, 4) and classes.shape == (n, k)):
        raise DecoderError(
            "eval.decoder boxes with four outputs expects TensorRT EfficientNMS's num_detections (N, 1), "
            f"detection_boxes (N, K, 4), detection_scores (N, K), detection_classes (N, K), in that order; "
            f"got {_shapes(outputs)}. Set eval.outputs to those four names in that order"
        )
    valid = np.arange(k)[None, :] < count.reshape(n, 1)
    return boxes, scores, classes, valid


@register_decoder("boxes", score_threshold=0.001, max_detections=300)
def decode_boxes(
    outputs: dict[str, np.ndarray],
    *,
    score_threshold: float = 0.001,
    max_detections: int = 300,
    num_classes: int | None = None,
) -> list[np.ndarray]:
    """Detections of a model that ends in NMS: ``(N, K, 6+)`` rows, or EfficientNMS's four outputs.
    Rows scoring ``> score_threshold`` (as Ultralytics' end-to-end path), the best
    ``max_detections`` per image by score."""
    if len(outputs) == 4:
        boxes, scores, classes, valid = _efficient_nms(outputs)
    else:
        layout = "(N, K, 6) [x1, y1, x2, y2, score, class] or EfficientNMS's four outputs"
        out = _single("boxes", layout, outputs)
        if out.shape[2] < 6:
            raise DecoderError(f"eval.decoder boxes expects an output {layout}; got {_shapes(outputs)}")
        boxes, scores, classes = out[..., :4], out[..., 4], out[..., 5]
        valid = classes >= 0
    keep = valid & (scores > score_threshold)
    if num_classes is not None:
        bad = keep & ((classes >= num_classes) | (classes != np.round(classes)))
        if bad.any():
            raise DecoderError(
                f"eval.decoder boxes: {_shapes(outputs)} holds class ids "
                f"{sorted(set(np.asarray(classes)[bad].tolist()))[:10]} outside 0..{num_classes - 1} "
                "(the dataset's classes); check the model's class order and the dataset"
            )
    results = []
    for b in range(len(scores)):
        i = np.flatnonzero(keep[b])
        i = i[np.argsort(-scores[b, i], kind="stable")][:max_detections]
        rows = np.concatenate([boxes[b, i], scores[b, i, None], classes[b, i, None]], axis=1)
        results.append(rows.astype(np.float32).reshape(-1, 6))
    return results
