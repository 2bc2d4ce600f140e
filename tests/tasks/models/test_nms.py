"""Greedy class-aware NMS on hand-checked boxes (Ultralytics semantics: drop when IoU > threshold)."""

from __future__ import annotations

import numpy as np

from tasks.models.nms import iou_one_to_many, nms

A = [0, 0, 10, 10]  # 100 px^2
B = [0, 0, 10, 8]  # inside A: IoU 80/100 = 0.8
C = [0, 0, 10, 5]  # inside A: IoU 50/100 = 0.5 exactly
FAR = [50, 50, 60, 60]  # no overlap


def run(boxes, scores, classes=None, iou=0.5, max_det=300, **kw) -> list[int]:
    classes = np.zeros(len(boxes)) if classes is None else classes
    return nms(
        np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(classes), iou, max_det, **kw
    ).tolist()


def test_iou_hand_checked():
    np.testing.assert_allclose(iou_one_to_many(np.array(A, float), np.array([A, B, C, FAR], float)), [1, 0.8, 0.5, 0])


def test_overlapping_same_class_suppressed():
    assert run([B, A], [0.8, 0.9]) == [1]  # A scores higher and B overlaps it by 0.8 > 0.5


def test_different_classes_both_kept():
    assert run([A, B], [0.9, 0.8], classes=[0, 1]) == [0, 1]


def test_agnostic_suppresses_across_classes():
    assert run([A, B], [0.9, 0.8], classes=[0, 1], agnostic=True) == [0]


def test_iou_equal_to_threshold_kept_above_dropped():
    assert run([A, C], [0.9, 0.8], iou=0.5) == [0, 1]  # IoU exactly 0.5: kept (drop only when >)
    assert run([A, C], [0.9, 0.8], iou=0.49) == [0]


def test_output_ordered_by_score():
    assert run([FAR, A, [100, 100, 110, 110]], [0.2, 0.9, 0.5]) == [1, 2, 0]


def test_suppressed_box_does_not_suppress_others():
    # A (0.9) suppresses m (IoU 80/120); m would suppress n (IoU 80/120), but m is gone, and A-n IoU = 60/140
    m, n = [0, 2, 10, 12], [0, 4, 10, 14]
    np.testing.assert_allclose(iou_one_to_many(np.array(m, float), np.array([A, n], float)), [2 / 3, 2 / 3])
    assert run([A, m, n], [0.9, 0.8, 0.7]) == [0, 2]


def test_ties_keep_input_order():
    assert run([FAR, A, [100, 100, 110, 110]], [0.5, 0.5, 0.5]) == [0, 1, 2]
    assert run([A, B], [0.5, 0.5]) == [0]  # the earlier of two tied overlapping boxes wins
    assert run([B, A], [0.5, 0.5]) == [0]


def test_max_detections_keeps_the_best():
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(5)]  # disjoint
    assert run(boxes, [0.1, 0.5, 0.3, 0.9, 0.7], max_det=2) == [3, 4]


def test_candidate_cap_keeps_best_scores_before_nms():
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(5)]
    assert run(boxes, [0.1, 0.5, 0.3, 0.9, 0.7], max_candidates=3) == [3, 4, 1]


def test_empty_input_and_zero_area_boxes():
    assert run([], []) == []
    # two degenerate (zero-area) boxes at the same point: union 0 -> IoU 0, both kept
    assert run([[5, 5, 5, 5], [5, 5, 5, 5]], [0.9, 0.8]) == [0, 1]


def test_chain_within_each_class_independently():
    # class 0: A, B (IoU 0.8: suppressed); class 1: B, D (IoU 40/80 = 0.5: kept at 0.5); B of
    # class 1 survives A of class 0
    d = [0, 0, 10, 4]
    boxes, classes = [A, B, B, d], [0, 0, 1, 1]
    assert run(boxes, [0.9, 0.8, 0.7, 0.6], classes=classes, iou=0.5) == [0, 2, 3]
    assert run(boxes, [0.9, 0.8, 0.7, 0.6], classes=classes, iou=0.45) == [0, 2]
