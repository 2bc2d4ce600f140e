"""Object-detection mAP with the COCO protocol, computed by ``faster-coco-eval``.

The COCO ground truth and results are built in memory from arrays (no JSON files) and scored by
the library's ``COCOeval_faster`` with ``iouType="bbox"`` and its default parameters: IoU
thresholds 0.50:0.05:0.95, 101-point interpolated precision, at most 100 detections per image,
area range "all". Every number returned is in percent points (0..100) so that a drop reads like
a top-1 drop.

Conventions the library imposes, handled here:

* image, category and annotation ids start at 1: COCO matching marks "unmatched" with id 0, so a
  ground-truth annotation with id 0 would never count as matched; category id = class index + 1;
* a class with no ground-truth box has AP -1 in the library (undefined); it is ``None`` here and
  left out of the means, and detections of such a class change nothing;
* the library reports progress through ``logging`` (``faster_coco_eval`` logger, INFO/DEBUG),
  not stdout; those messages are silenced here (its warnings still pass) and stdout is captured.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster


def _quiet(*_args, **_kwargs) -> None:
    """Swallow the library's progress messages so stage logs stay clean."""


@contextlib.contextmanager
def _silenced():
    """Hold the library's logger at WARNING and capture stdout while it runs."""
    log = logging.getLogger("faster_coco_eval")
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(level)


def _check(detections: list[np.ndarray], ground_truth: np.ndarray, num_classes: int) -> np.ndarray:
    gt = np.asarray(ground_truth)
    if gt.ndim != 3 or gt.shape[2] != 5:
        raise ValueError(
            f"ground_truth has shape {gt.shape}; expected (N images, K boxes, 5) with rows "
            "[class, x1, y1, x2, y2] (class -1 = padding)"
        )
    if len(detections) != gt.shape[0]:
        raise ValueError(
            f"got {len(detections)} detection arrays for {gt.shape[0]} ground-truth images; "
            "expected one (D_i, 6) array per image"
        )
    for i, d in enumerate(detections):
        d = np.asarray(d)
        if d.size == 0:
            continue
        if d.ndim != 2 or d.shape[1] != 6:
            raise ValueError(
                f"detections[{i}] has shape {d.shape}; expected (D, 6) rows "
                "[x1, y1, x2, y2, score, class] (or an empty (0, 6) array)"
            )
        cls = d[:, 5]
        if np.any((cls < 0) | (cls >= num_classes) | (cls != np.round(cls))):
            raise ValueError(f"detections[{i}] has class ids outside 0..{num_classes - 1}: {sorted(set(cls.tolist()))}")
    cls = gt[..., 0]
    bad = (cls != -1) & ((cls < 0) | (cls >= num_classes) | (cls != np.round(cls)))
    if bad.any():
        raise ValueError(
            f"ground_truth has class ids outside 0..{num_classes - 1} (and -1 padding): "
            f"{sorted(set(cls[bad].tolist()))}"
        )
    return gt


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_map(detections: list[np.ndarray], ground_truth: np.ndarray, class_names: list[str]) -> dict:
    """COCO bbox mAP of ``detections`` against ``ground_truth``.

    Args:
        detections: one float array per image, shape (D_i, 6), rows ``[x1, y1, x2, y2, score,
            class]`` in pixels (x2 = x1 + width); class is a 0-based index; (0, 6) when none.
        ground_truth: int or float array (N, K, 5), rows ``[class, x1, y1, x2, y2]`` in the same
            pixel convention; rows whose class is -1 are padding.
        class_names: the K_classes names, index = class id.

    Returns:
        ``{"map50_95", "map50", "map75"}``: floats in percent points (0..100);
        ``"per_class_ap"``: ``{name: AP@[.5:.95] in percent, or None when the class has no
        ground-truth box}``; ``"images"``: N; ``"ground_truth_boxes"``: non-padding GT rows;
        ``"detections"``: total detection rows.

    Raises:
        ValueError: bad shapes or class ids, or no ground-truth box at all (mAP is undefined).
    """
    gt = _check(detections, ground_truth, len(class_names))
    images = [{"id": i + 1, "width": 0, "height": 0} for i in range(gt.shape[0])]
    categories = [{"id": c + 1, "name": str(n)} for c, n in enumerate(class_names)]
    anns = []
    for i, rows in enumerate(gt):
        for row in rows[rows[:, 0] != -1]:
            x, y, w, h = _xywh(row[1:5])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(row[0]) + 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    if not anns:
        raise ValueError(
            f"ground_truth holds no boxes (all {gt.shape[0]} images are padding only); "
            "mAP is undefined without ground truth"
        )
    results = [
        {"image_id": i + 1, "category_id": int(d[5]) + 1, "bbox": _xywh(d[:4]), "score": float(d[4])}
        for i, det in enumerate(detections)
        for d in np.asarray(det, dtype=np.float64).reshape(-1, 6)
    ]

    with _silenced():
        coco_gt = COCO({"images": images, "annotations": anns, "categories": categories}, print_function=_quiet)
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=_quiet)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()

    # precision: [T iou thresholds, R recall points, K categories, A area ranges, M maxDets]
    precision = ev.eval["precision"][:, :, :, ev.params.areaRngLbl.index("all"), -1]
    cat_index = {cat_id: k for k, cat_id in enumerate(ev.params.catIds)}
    per_class = {}
    for c, name in enumerate(class_names):
        p = precision[:, :, cat_index[c + 1]]
        per_class[str(name)] = float(p[p > -1].mean() * 100.0) if (p > -1).any() else None
    return {
        "map50_95": float(ev.stats[0]) * 100.0,
        "map50": float(ev.stats[1]) * 100.0,
        "map75": float(ev.stats[2]) * 100.0,
        "per_class_ap": per_class,
        "images": int(gt.shape[0]),
        "ground_truth_boxes": len(anns),
        "detections": len(results),
    }
