"""COCO OKS AP through faster-coco-eval, and the per-keypoint similarity, on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.metrics.keypoints import oks_ap

SIGMAS = [0.05, 0.1]
NAMES = ["top", "bottom"]


def _gt() -> np.ndarray:
    """Two images, one 20x20 instance each (area 400) with two visible keypoints; a padding row."""
    gt = np.full((2, 2, 11), -1.0)
    gt[0, 0] = [0, 0, 0, 20, 20, 5, 2, 2, 6, 18, 2]
    gt[1, 0] = [0, 10, 10, 30, 30, 15, 12, 2, 16, 28, 2]
    return gt


def _det(gt_row: np.ndarray, score: float, shift=(0.0, 0.0)) -> np.ndarray:
    kp = gt_row[5:].reshape(2, 3).copy()
    kp[:, :2] += shift
    return np.array([[*gt_row[1:5], score, gt_row[0], *kp.ravel()]])


def test_exact_keypoints_score_100():
    gt = _gt()
    res = oks_ap([_det(gt[0, 0], 0.9), _det(gt[1, 0], 0.8)], gt, SIGMAS, NAMES, ["digit"])
    assert (res["oks_ap"], res["oks_ap50"], res["oks_ap75"]) == pytest.approx((100.0, 100.0, 100.0))
    assert res["per_keypoint"] == pytest.approx({"top": 100.0, "bottom": 100.0})
    assert (res["images"], res["instances"], res["detections"]) == (2, 2, 2)


def test_per_keypoint_similarity_is_cocos_oks_term_with_the_box_area():
    gt = _gt()
    res = oks_ap([_det(gt[0, 0], 0.9, (0.0, 2.0)), _det(gt[1, 0], 0.8)], gt, SIGMAS, NAMES, ["digit"])
    # exp(-d^2 / (2 * area * (2 sigma)^2)), d = 2 px, area 400
    top, bottom = np.exp(-4 / (2 * 400 * 0.1**2)), np.exp(-4 / (2 * 400 * 0.2**2))
    assert res["per_keypoint"]["top"] == pytest.approx(100 * (top + 1) / 2)
    assert res["per_keypoint"]["bottom"] == pytest.approx(100 * (bottom + 1) / 2)
    oks = (top + bottom) / 2  # 0.745: a match at OKS thresholds 0.50 to 0.70, not 0.75
    assert 0.7 < oks < 0.75
    assert res["oks_ap50"] == pytest.approx(100.0) and res["oks_ap75"] < 100.0
    assert res["oks_ap"] < res["oks_ap50"]


def test_unlabelled_keypoints_and_missing_detections():
    gt = _gt()
    gt[1, 0, 10] = 0  # image 1's bottom keypoint is not labelled: it does not count
    res = oks_ap([_det(gt[0, 0], 0.9), np.zeros((0, 12))], gt, SIGMAS, NAMES, ["digit"])
    assert res["per_keypoint"] == pytest.approx({"top": 50.0, "bottom": 100.0})  # image 1 has no detection
    assert res["oks_ap"] == pytest.approx(50.0, abs=1.0)  # recall 0.5 at precision 1
    gt[..., 7::3] = 0  # nothing labelled anywhere
    with pytest.raises(ValueError, match="no instance with a labelled keypoint"):
        oks_ap([_det(_gt()[0, 0], 0.9), np.zeros((0, 12))], gt, SIGMAS, NAMES, ["digit"])


def test_detections_of_another_class_do_not_match():
    gt = _gt()
    det = _det(gt[0, 0], 0.9)
    det[0, 5] = 1
    res = oks_ap([det, _det(gt[1, 0], 0.8)], gt, SIGMAS, NAMES, ["a", "b"])
    assert res["per_keypoint"] == pytest.approx({"top": 50.0, "bottom": 50.0})


def test_shapes_and_class_ids_are_checked():
    gt = _gt()
    with pytest.raises(ValueError, match=r"5 \+ 3 \* 3"):
        oks_ap([np.zeros((0, 15))] * 2, gt, [0.1] * 3, ["a", "b", "c"], ["digit"])
    gt[0, 0, 0] = 4
    with pytest.raises(ValueError, match=r"class ids outside 0..0"):
        oks_ap([np.zeros((0, 12))] * 2, gt, SIGMAS, NAMES, ["digit"])
