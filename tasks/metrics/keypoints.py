"""Keypoint AP with the COCO protocol (object keypoint similarity, OKS), computed by
``faster-coco-eval``'s keypoint mode (``iouType="keypoints"``, ``kpt_oks_sigmas`` per keypoint).

The COCO ground truth and results are built in memory from arrays, as in
:mod:`tasks.metrics.detection` (ids from 1, category id = class index + 1), and scored with the
library's keypoint defaults: OKS thresholds 0.50:0.05:0.95, 101-point interpolated precision, at
most 20 detections per image, area range "all". Percent points (0..100) throughout.

OKS of a detection d with a ground-truth instance g over g's labelled keypoints (v > 0):
``mean_j exp(-|d_j - g_j|^2 / (2 * area_g * (2 * sigma_j)^2))``. **area_g is the instance's box
area** (``(x2 - x1) * (y2 - y1)`` from its label row): COCO uses the segment area when the dataset
has one, which is smaller than the box (about 0.53 of it for people, the factor COCO's crowd mode
uses), so the same error scores a little higher here than against COCO's own annotations. An
instance with no labelled keypoint is ignored, as COCO does.

Per keypoint: the mean OKS similarity ``exp(-e_j)`` of that keypoint over the instances where it is
labelled, each instance taking the detection of its image and class with the highest OKS (0 when
its image has none): a figure per keypoint, so that the report's worst-class machinery names the
keypoint a precision moved most.
"""

from __future__ import annotations

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from tasks.metrics.detection import _quiet, _silenced


def _check(detections: list[np.ndarray], gt: np.ndarray, sigmas: np.ndarray, num_classes: int) -> int:
    j = len(sigmas)
    if gt.ndim != 3 or gt.shape[2] != 5 + 3 * j:
        raise ValueError(
            f"ground_truth has shape {gt.shape}; expected (N images, K instances, 5 + 3 * {j}) for {j} keypoints, "
            "rows [class, x1, y1, x2, y2, x_1, y_1, v_1, ...] (class -1 = padding)"
        )
    if len(detections) != gt.shape[0]:
        raise ValueError(f"got {len(detections)} detection arrays for {gt.shape[0]} ground-truth images")
    for i, d in enumerate(detections):
        if d.size and (d.ndim != 2 or d.shape[1] != 6 + 3 * j):
            raise ValueError(f"detections[{i}] has shape {d.shape}; expected (D, 6 + 3 * {j}) for {j} keypoints")
    cls = gt[..., 0]
    bad = (cls != -1) & ((cls < 0) | (cls >= num_classes) | (cls != np.round(cls)))
    if bad.any():
        raise ValueError(
            f"ground_truth has class ids outside 0..{num_classes - 1} (and -1 padding): {sorted(set(cls[bad].tolist()))}"
        )
    return j


def per_keypoint_similarity(
    detections: list[np.ndarray], gt: np.ndarray, sigmas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(sums, counts)``, float64 ``(J,)`` each: the summed OKS similarity of every keypoint over the
    instances where it is labelled (the best-OKS detection of the instance's image and class),
    and how many instances label it."""
    j = len(sigmas)
    var = (2 * np.asarray(sigmas, np.float64)) ** 2
    sums, counts = np.zeros(j), np.zeros(j)
    for i, rows in enumerate(gt):
        rows = rows[rows[:, 0] != -1]
        g = rows[:, 5:].reshape(-1, j, 3)
        vis = g[..., 2] > 0
        rows, g, vis = rows[vis.any(axis=1)], g[vis.any(axis=1)], vis[vis.any(axis=1)]
        if not len(rows):
            continue
        counts += vis.sum(axis=0)
        d = np.asarray(detections[i], np.float64).reshape(-1, 6 + 3 * j)
        if not len(d):
            continue
        area = (rows[:, 3] - rows[:, 1]) * (rows[:, 4] - rows[:, 2])
        dk = d[:, 6:].reshape(-1, j, 3)
        dist2 = ((dk[None, :, :, :2] - g[:, None, :, :2]) ** 2).sum(axis=3)  # (G, D, J)
        sim = np.exp(-dist2 / var / (area[:, None, None] + np.spacing(1)) / 2)
        oks = (sim * vis[:, None]).sum(axis=2) / vis.sum(axis=1)[:, None]
        oks[rows[:, 0][:, None] != d[:, 5][None, :]] = -1  # only detections of the instance's class
        best = oks.argmax(axis=1)
        found = oks[np.arange(len(rows)), best] >= 0
        sums += (sim[np.arange(len(rows)), best] * vis * found[:, None]).sum(axis=0)
    return sums, counts


def oks_ap(
    detections: list[np.ndarray],
    ground_truth: np.ndarray,
    sigmas: list[float],
    keypoint_names: list[str],
    class_names: list[str],
) -> dict:
    """COCO keypoint AP of ``detections`` against ``ground_truth``.

    Args:
        detections: one float array per image, ``(D_i, 6 + 3J)`` rows ``[x1, y1, x2, y2, score,
            class, x_1, y_1, s_1, ...]`` in pixels (a keypoint decoder's output).
        ground_truth: ``(N, K, 5 + 3J)`` rows ``[class, x1, y1, x2, y2, x_1, y_1, v_1, ...]`` in the
            same pixels, v COCO's visibility (0 unlabelled, 1 occluded, 2 visible); class -1 = padding.
        sigmas: J per-keypoint OKS sigmas; keypoint_names: J names; class_names: index = class id.

    Returns:
        ``{"oks_ap", "oks_ap50", "oks_ap75"}`` (percent); ``"per_keypoint"``: ``{name: mean OKS
        similarity in percent, or None when no instance labels it}``; ``"images"``, ``"instances"``
        (non-padding instances with a labelled keypoint), ``"detections"``.

    Raises:
        ValueError: bad shapes or class ids, or no instance with a labelled keypoint (AP undefined).
    """
    gt = np.asarray(ground_truth, np.float64)
    sig = np.asarray(sigmas, np.float64)
    j = _check([np.asarray(d) for d in detections], gt, sig, len(class_names))
    images = [{"id": i + 1, "width": 0, "height": 0} for i in range(gt.shape[0])]
    categories = [{"id": c + 1, "name": str(n), "keypoints": list(keypoint_names)} for c, n in enumerate(class_names)]
    anns = []
    for i, rows in enumerate(gt):
        for row in rows[rows[:, 0] != -1]:
            x1, y1, x2, y2 = (float(v) for v in row[1:5])
            kp = row[5:].reshape(j, 3)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(row[0]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "keypoints": kp.ravel().tolist(),
                    "num_keypoints": int((kp[:, 2] > 0).sum()),
                    "iscrowd": 0,
                }
            )
    labelled = sum(a["num_keypoints"] > 0 for a in anns)
    if not labelled:
        raise ValueError(
            f"ground_truth holds no instance with a labelled keypoint (v > 0) in its {gt.shape[0]} images; "
            "OKS AP is undefined without ground truth"
        )
    results = [
        {"image_id": i + 1, "category_id": int(d[5]) + 1, "keypoints": d[6:].tolist(), "score": float(d[4])}
        for i, det in enumerate(detections)
        for d in np.asarray(det, np.float64).reshape(-1, 6 + 3 * j)
    ]
    with _silenced():
        coco_gt = COCO({"images": images, "annotations": anns, "categories": categories}, print_function=_quiet)
        coco_dt = coco_gt.loadRes(results) if results else COCO(print_function=_quiet)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="keypoints", kpt_oks_sigmas=sig, print_function=_quiet)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    sums, counts = per_keypoint_similarity(detections, gt, sig)
    per = {
        str(name): float(100 * s / n) if n else None for name, s, n in zip(keypoint_names, sums, counts, strict=True)
    }
    return {
        "oks_ap": max(float(ev.stats[0]), 0.0) * 100.0,
        "oks_ap50": max(float(ev.stats[1]), 0.0) * 100.0,
        "oks_ap75": max(float(ev.stats[2]), 0.0) * 100.0,
        "per_keypoint": per,
        "images": int(gt.shape[0]),
        "instances": int(labelled),
        "detections": len(results),
    }
