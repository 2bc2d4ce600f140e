"""confusion / segmentation_scores on tiny hand-computed masks."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.metrics.segmentation import confusion, segmentation_scores


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
