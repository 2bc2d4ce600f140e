"""confusion / segmentation_scores (multi-class) and binarize / binary_counts / binary_scores (one
output channel) on tiny hand-computed masks."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.metrics.segmentation import binarize, binary_counts, binary_scores, confusion, segmentation_scores


def test_two_by_two_by_hand():
    target = np.array([[[0, 0], [1, 1]]])
    pred = np.array([[[0, 1], [1, 1]]])
    conf = confusion(pred, target, 2)
    assert conf.dtype == np.int64
    assert conf.tolist() == [[1, 1], [0, 2]]  # rows = target, cols = prediction
    s = segmentation_scores(conf, ["bg", "fg"])
    # TP [1, 2], FP [0, 1], FN [1, 0]
    assert s["per_class_iou"] == {"bg": pytest.approx(50.0), "fg": pytest.approx(200 / 3)}
    assert s["per_class_dice"] == {"bg": pytest.approx(200 / 3), "fg": pytest.approx(80.0)}
    assert s["miou"] == pytest.approx((50 + 200 / 3) / 2)
    assert s["mean_dice"] == pytest.approx((200 / 3 + 80) / 2)
    assert s["pixel_accuracy"] == pytest.approx(75.0)
    assert all(type(s[k]) is float for k in ("miou", "mean_dice", "pixel_accuracy"))


def test_three_by_three_with_ignore_index_and_absent_class():
    target = np.array([[[0, 0, 1], [0, 1, 1], [255, 255, 1]]])
    pred = np.array([[[0, 1, 1], [0, 1, 2], [2, 2, 1]]])  # the two "2"s on void pixels do not count
    conf = confusion(pred, target, 4, ignore_index=255)
    assert conf.tolist() == [[2, 1, 0, 0], [0, 3, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    s = segmentation_scores(conf, ["a", "b", "c", "d"])
    # TP [2, 3, 0, 0], FP [0, 1, 1, 0], FN [1, 1, 0, 0]: "c" predicted but never present -> 0 and
    # counted; "d" absent from both -> None and left out of the means.
    assert s["per_class_iou"] == {"a": pytest.approx(200 / 3), "b": pytest.approx(60.0), "c": 0.0, "d": None}
    assert s["per_class_dice"] == {"a": pytest.approx(80.0), "b": pytest.approx(75.0), "c": 0.0, "d": None}
    assert s["miou"] == pytest.approx((200 / 3 + 60) / 3)
    assert s["mean_dice"] == pytest.approx((80 + 75) / 3)
    assert s["pixel_accuracy"] == pytest.approx(500 / 7)


def test_streamed_batches_sum_to_the_whole():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, (4, 5, 6))
    pred = rng.integers(0, 3, (4, 5, 6))
    target[0, 0, :3] = 9
    whole = confusion(pred, target, 3, ignore_index=9)
    streamed = confusion(pred[:3], target[:3], 3, ignore_index=9) + confusion(pred[3:], target[3:], 3, ignore_index=9)
    assert np.array_equal(whole, streamed)
    assert whole.sum() == target.size - 3


def test_perfect_prediction_scores_100():
    target = np.array([[[0, 1, 2], [2, 1, 0], [0, 0, 0]]])
    s = segmentation_scores(confusion(target, target, 3), ["a", "b", "c"])
    assert s["miou"] == pytest.approx(100.0) and s["mean_dice"] == pytest.approx(100.0)
    assert s["pixel_accuracy"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (np.zeros((1, 2, 2), int), np.zeros((1, 2, 3), int), r"pred has shape \(1, 2, 2\) but target has \(1, 2, 3\)"),
        (np.zeros((1, 2, 2)), np.zeros((1, 2, 2), int), "pred has dtype float64"),
        (np.full((1, 2, 2), 3), np.zeros((1, 2, 2), int), r"pred holds class ids \[3\] outside 0..2"),
        (np.zeros((1, 2, 2), int), np.full((1, 2, 2), -1), r"target holds class ids \[-1\]"),
    ],
)
def test_confusion_rejects_bad_inputs(pred, target, match):
    with pytest.raises(ValueError, match=match):
        confusion(pred, target, 3)


def test_scores_reject_bad_confusion():
    with pytest.raises(ValueError, match=r"conf has shape \(2, 2\); expected \(3, 3\)"):
        segmentation_scores(np.eye(2, dtype=np.int64), ["a", "b", "c"])
    with pytest.raises(ValueError, match="no pixels"):
        segmentation_scores(np.zeros((2, 2), np.int64), ["a", "b"])


# --- binary (one output channel) ---------------------------------------------------------------


def test_binarize_probabilities_strictly_above_the_threshold_and_logits_alike():
    prob = np.array([[[[0.2, 0.5], [0.51, 0.9]]]], np.float32)  # (1, 1, 2, 2)
    assert binarize(prob, 0.5).tolist() == [[[False, False], [True, True]]]
    assert binarize(prob[:, 0], 0.3).tolist() == [[[False, True], [True, True]]]  # (N, H, W) works too
    logit = np.log(prob / (1 - prob))
    # sigmoid(z) > t  <=>  z > log(t / (1 - t)): the same mask without a sigmoid
    assert binarize(logit, 0.3, logits=True).tolist() == binarize(prob, 0.3).tolist()
    assert binarize(np.array([[[-0.1, 0.1]]]), 0.5, logits=True).tolist() == [[[False, True]]]


def test_binary_counts_and_scores_by_hand():
    # image 0: TP 2, FP 1, FN 1, TN 0 -> Dice 4/6, IoU 2/4
    # image 1: mask and prediction empty -> Dice 1, IoU 1 (nothing to find, nothing found)
    # image 2: foreground in the mask only -> Dice 0, IoU 0
    # image 3: every pixel ignored (255) -> no figure
    target = np.array([[[1, 1], [1, 0]], [[0, 0], [0, 0]], [[0, 1], [0, 0]], [[255, 255], [255, 255]]], dtype=np.int64)
    pred = np.array([[[1, 1], [0, 1]], [[0, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [1, 1]]], dtype=bool)
    c = binary_counts(pred, target)
    assert c.tolist() == [[2, 1, 1, 0], [0, 0, 0, 4], [0, 0, 1, 3], [0, 0, 0, 0]]
    s = binary_scores(c)
    assert s["per_image_dice"][:3] == pytest.approx([200 / 3, 100.0, 0.0]) and s["per_image_dice"][3] is None
    assert s["per_image_iou"][:3] == pytest.approx([50.0, 100.0, 0.0]) and s["per_image_iou"][3] is None
    assert s["dice"] == pytest.approx((200 / 3 + 100 + 0) / 3)
    assert s["iou"] == pytest.approx((50 + 100 + 0) / 3)
    # pooled: TP 2, FP 1, FN 2 -> Dice 4/7, IoU 2/5; pixels right: TP 2 + TN 7 of 12 scored
    assert s["global_dice"] == pytest.approx(400 / 7)
    assert s["global_iou"] == pytest.approx(40.0)
    assert s["pixel_accuracy"] == pytest.approx(900 / 12)


def test_binary_prediction_only_foreground_scores_zero_and_ignore_can_be_off():
    target = np.zeros((1, 2, 2), np.int64)
    pred = np.array([[[True, False], [False, False]]])
    s = binary_scores(binary_counts(pred, target))
    assert s["per_image_dice"] == [0.0] and s["per_image_iou"] == [0.0]
    assert s["global_dice"] == 0.0
    with pytest.raises(ValueError, match=r"values \[255\]"):
        binary_counts(pred, np.full((1, 2, 2), 255), ignore_index=None)


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (np.zeros((1, 2, 2), bool), np.array([[[0, 2], [1, 0]]]), r"values \[2\].*0 and 1 \(255 = ignore\)"),
        (np.zeros((1, 2, 2), bool), np.zeros((1, 2, 3), np.int64), "shape"),
        (np.zeros((2, 2), bool), np.zeros((2, 2), np.int64), "shape"),
    ],
)
def test_binary_counts_rejects_bad_masks(pred, target, match):
    with pytest.raises(ValueError, match=match):
        binary_counts(pred, target)


def test_binary_scores_reject_nothing_to_score():
    with pytest.raises(ValueError, match="not empty"):
        binary_scores(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        binary_scores(np.ones((2, 3), np.int64))
