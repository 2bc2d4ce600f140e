"""coco_map on hand-checkable cases (COCO: IoU thresholds .50:.05:.95, 101 recall points)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tasks.metrics.detection import coco_map

GT1 = np.array([[[0, 0, 0, 10, 10]]])  # one image, one 10x10 box of class 0


def det(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def test_perfect_detections_score_100():
    gt = np.array(
        [[[0, 0, 0, 10, 10], [1, 20, 20, 50, 40]], [[1, 5, 5, 25, 45], [-1, -1, -1, -1, -1]]]
    )  # second image: one box + padding
    dets = [det([0, 0, 10, 10, 0.9, 0], [20, 20, 50, 40, 0.8, 1]), det([5, 5, 25, 45, 0.7, 1])]
    r = coco_map(dets, gt, ["cat", "dog"])
    assert r["map50_95"] == pytest.approx(100.0)
    assert r["map50"] == pytest.approx(100.0) and r["map75"] == pytest.approx(100.0)
    assert r["per_class_ap"] == {"cat": pytest.approx(100.0), "dog": pytest.approx(100.0)}
    assert (r["images"], r["ground_truth_boxes"], r["detections"]) == (2, 3, 3)
    assert all(type(r[k]) is float for k in ("map50_95", "map50", "map75"))


@pytest.mark.parametrize("height, matched_thresholds", [(6.2, 3), (5.8, 2)])
def test_partial_iou_matches_only_lower_thresholds(height, matched_thresholds):
    # det [0,0,10,h] inside the 10x10 GT: IoU = 10h/100. IoU 0.62 clears .50, .55, .60 (3 of the
    # 10 thresholds) -> AP 100 at those, 0 elsewhere -> mAP 30; IoU 0.58 clears .50, .55 -> 20.
    # (IoU exactly 0.60 also gives 30: COCO matches when IoU >= threshold.)
    r = coco_map([det([0, 0, 10, height, 0.9, 0])], GT1, ["a"])
    assert r["map50"] == pytest.approx(100.0)
    assert r["map75"] == pytest.approx(0.0)
    assert r["map50_95"] == pytest.approx(10.0 * matched_thresholds)


def test_higher_scored_false_positive_halves_ap():
    # ranked: FP (0.9), TP (0.8) -> precision [0, 1/2] at recall [0, 1]; the interpolated envelope
    # is 1/2 at every one of the 101 recall points -> AP 50 at every IoU threshold.
    r = coco_map([det([50, 50, 60, 60, 0.9, 0], [0, 0, 10, 10, 0.8, 0])], GT1, ["a"])
    assert r["map50_95"] == pytest.approx(50.0)
    assert r["map50"] == pytest.approx(50.0)


def test_false_positive_between_true_positives_101_point_interpolation():
    # 2 GT; ranked TP (0.9), FP (0.8), TP (0.7): recall [.5, .5, 1], precision [1, 1/2, 2/3];
    # envelope [1, 2/3, 2/3]. Recall points 0.00..0.50 (51 of them) read 1, 0.51..1.00 (50) read
    # 2/3 -> AP = (51 + 50 * 2/3) / 101 = 83.498...% at every IoU threshold (boxes are exact).
    gt = np.array([[[0, 0, 0, 10, 10], [0, 20, 20, 30, 30]]])
    dets = [det([0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.8, 0], [20, 20, 30, 30, 0.7, 0])]
    expected = (51 + 50 * 2 / 3) / 101 * 100
    r = coco_map(dets, gt, ["a"])
    assert r["map50_95"] == pytest.approx(expected)
    assert r["map50"] == pytest.approx(expected) and r["map75"] == pytest.approx(expected)


def test_no_detections_score_zero_and_empty_arrays_are_fine():
    gt = np.array([[[0, 0, 0, 10, 10]], [[0, 5, 5, 9, 9]]])
    r = coco_map([np.zeros((0, 6)), np.empty((0, 6), dtype=np.float32)], gt, ["a"])
    assert r["map50_95"] == 0.0 and r["map50"] == 0.0 and r["per_class_ap"] == {"a": 0.0}
    assert r["detections"] == 0
    # an empty array next to a non-empty one: the image without a detection costs recall
    r = coco_map([det([0, 0, 10, 10, 0.9, 0]), np.zeros((0, 6))], gt, ["a"])
    # recall tops out at 1/2 with precision 1: recall points 0.00..0.50 (51 of 101) read 1 -> 50.495%
    assert r["map50"] == pytest.approx(51 / 101 * 100)


def test_class_absent_from_ground_truth_is_none_and_excluded_from_mean():
    # class 0 perfect, class 1 has GT but no detection, class 2 has no GT (its detection is ignored)
    gt = np.array([[[0, 0, 0, 10, 10], [1, 20, 20, 30, 30]]])
    dets = [det([0, 0, 10, 10, 0.9, 0], [40, 40, 50, 50, 0.95, 2])]
    r = coco_map(dets, gt, ["a", "b", "c"])
    assert r["per_class_ap"] == {"a": pytest.approx(100.0), "b": 0.0, "c": None}
    assert r["map50_95"] == pytest.approx(50.0)


def test_float_ground_truth_and_no_output_on_stdout(capsys, caplog):
    with caplog.at_level(logging.DEBUG):
        r = coco_map([det([0, 0, 10, 10, 0.9, 0])], GT1.astype(np.float32), ["a"])
    assert r["map50_95"] == pytest.approx(100.0)
    assert capsys.readouterr().out == ""
    assert not [rec for rec in caplog.records if rec.name.startswith("faster_coco_eval")]
    assert logging.getLogger("faster_coco_eval").level == logging.NOTSET  # restored


@pytest.mark.parametrize(
    "dets, gt, match",
    [
        ([det([0, 0, 10, 10, 0.9, 0])], np.zeros((1, 5)), r"ground_truth has shape \(1, 5\)"),
        ([det([0, 0, 10, 10, 0.9, 0])], np.zeros((1, 1, 4)), "expected \\(N images, K boxes, 5\\)"),
        ([], GT1, "got 0 detection arrays for 1"),
        ([np.zeros((1, 5))], GT1, r"detections\[0\] has shape \(1, 5\)"),
        ([det([0, 0, 10, 10, 0.9, 3])], GT1, "class ids outside 0..0"),
        ([det([0, 0, 10, 10, 0.9, 0])], np.array([[[2, 0, 0, 10, 10]]]), "ground_truth has class ids"),
        ([np.zeros((0, 6))], np.full((1, 2, 5), -1), "no boxes"),
    ],
)
def test_bad_inputs_raise_clear_errors(dets, gt, match):
    with pytest.raises(ValueError, match=match):
        coco_map(dets, gt, ["a"])


def test_perfect_yolov8_head_output_scores_100_through_decoder_and_nms():
    """A (N, 4 + C, A) head that predicts every ground-truth box exactly (plus low-score clutter
    and a duplicate that NMS must remove) scores mAP 100 in the real COCO evaluator."""
    from tasks.models.yolo_decoders import decode_yolov8

    gt = np.array([[[0, 10, 10, 30, 50], [2, 40, 5, 60, 25]], [[1, 0, 0, 64, 64], [-1, -1, -1, -1, -1]]])
    head = np.zeros((2, 4 + 3, 6), np.float32)
    for i, rows in enumerate(gt):
        for a, (c, x1, y1, x2, y2) in enumerate(rows[rows[:, 0] >= 0]):
            head[i, :4, a] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
            head[i, 4 + c, a] = 0.9
    head[0, :, 2] = head[0, :, 0] * [1, 1, 1, 0.95, 0.8, 0, 0]  # duplicate of box 0, IoU 0.95, lower score
    head[:, :4, 3:] = 32.0
    head[:, 4:, 3:] = 0.0005  # below the 0.001 threshold
    dets = decode_yolov8({"output0": head}, num_classes=3)
    assert [len(d) for d in dets] == [2, 1]
    r = coco_map(dets, gt, ["a", "b", "c"])
    assert r["map50_95"] == pytest.approx(100.0) and r["detections"] == 3
