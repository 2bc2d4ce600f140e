"""Greedy class-aware non-maximum suppression on the host, vectorised numpy, with the semantics of
Ultralytics' ``non_max_suppression`` (ultralytics/utils/nms.py) for the boxes it is handed:

- candidates are ranked by score, highest first; equal scores keep their input order (stable);
- at most ``max_candidates`` of them (Ultralytics' ``max_nms``, 30000) enter NMS, the best by score;
- a box is dropped when its IoU with a kept box of the same class is strictly above
  ``iou_threshold`` (``TorchNMS.nms`` keeps ``iou <= iou_threshold``); ``agnostic`` ignores classes;
- the first ``max_detections`` kept boxes are returned (``i[:max_det]``), so the loop stops there.

Boxes of different classes never suppress each other: each kept box is compared only with the
not-yet-suppressed candidates of its own class (exact, unlike Ultralytics' coordinate offset of
``class * max_wh``, which is equivalent for boxes under 7680 px). IoU is computed in float64.
"""

from __future__ import annotations

import numpy as np

MAX_CANDIDATES = 30000  # Ultralytics' max_nms


def _iou(i: int, rest: np.ndarray, x1, y1, x2, y2, area) -> np.ndarray:
    """IoU of box ``i`` with boxes ``rest`` (indices into the coordinate columns); 0 where the union is 0."""
    w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0)
    h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0)
    inter = w * h
    return inter / np.maximum(area[i] + area[rest] - inter, np.finfo(np.float64).tiny)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x1, y1, x2, y2]`` box with each row of ``boxes`` ``(M, 4)``; 0 where the union is empty."""
    b = np.vstack([box, boxes]).astype(np.float64)
    return _iou(0, np.arange(1, len(b)), *b.T, (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    max_detections: int,
    *,
    agnostic: bool = False,
    max_candidates: int = MAX_CANDIDATES,
) -> np.ndarray:
    """Indices into ``boxes`` ``(M, 4)`` ``[x1, y1, x2, y2]`` of the kept boxes, best score first.

    ``scores`` ``(M,)``, ``classes`` ``(M,)`` (any integer-valued dtype). Returns int64 ``(K,)``,
    ``K <= max_detections``; empty when ``M == 0``.
    """
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")[:max_candidates]
    n = order.size
    if n == 0 or max_detections <= 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = np.asarray(boxes, np.float64)[order].T.copy()
    area = (x2 - x1) * (y2 - y1)
    cls = np.zeros(n, np.int64) if agnostic else np.asarray(classes)[order].astype(np.int64)
    # positions (in ranked order) of each class's candidates, ascending
    by_class = np.argsort(cls, kind="stable")
    starts = np.flatnonzero(np.r_[True, cls[by_class][1:] != cls[by_class][:-1]])
    groups = dict(zip(cls[by_class][starts].tolist(), np.split(by_class, starts[1:]), strict=True))
    alive = np.ones(n, bool)
    keep: list[int] = []
    i = 0
    while len(keep) < max_detections:
        keep.append(i)
        alive[i] = False
        same = groups[int(cls[i])]
        later = same[np.searchsorted(same, i, side="right") :]
        later = later[alive[later]]
        if later.size:
            alive[later[_iou(i, later, x1, y1, x2, y2, area) > iou_threshold]] = False
        nxt = int(np.argmax(alive[i + 1 :])) + i + 1 if i + 1 < n else n
        if nxt >= n or not alive[nxt]:
            break
        i = nxt
    return order[np.asarray(keep, np.int64)]
