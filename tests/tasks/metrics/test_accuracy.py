"""top1 and agreement on hand-checkable score arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.metrics.accuracy import agreement, top1

SCORES = np.array(
    [
        [0.1, 0.9, 0.0],  # -> 1
        [0.8, 0.1, 0.1],  # -> 0
        [0.2, 0.3, 0.5],  # -> 2
        [0.6, 0.3, 0.1],  # -> 0
    ]
)


def test_top1_percent():
    assert top1(SCORES, np.array([1, 0, 2, 0])) == pytest.approx(100.0)
    assert top1(SCORES, np.array([1, 0, 0, 1])) == pytest.approx(50.0)
    assert top1(SCORES, np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    assert top1(SCORES[:3], np.array([1, 2, 2])) == pytest.approx(200 / 3)


def test_top1_returns_python_float():
    assert type(top1(SCORES, np.array([1, 0, 2, 0]))) is float


def test_top1_without_samples_raises():
    with pytest.raises(ValueError, match="no samples"):
        top1(np.zeros((0, 3)), np.zeros((0,), dtype=np.int64))


def test_agreement_percent():
    other = SCORES.copy()
    assert agreement(SCORES, other) == pytest.approx(100.0)
    other[2] = [1.0, 0.0, 0.0]  # 2 -> 0
    assert agreement(SCORES, other) == pytest.approx(75.0)
    assert agreement(SCORES, -SCORES) == pytest.approx(0.0)  # argmax -> argmin everywhere
    # scaling the scores does not change the predicted class
    assert agreement(SCORES, SCORES * 7.5 + 3) == pytest.approx(100.0)


def test_per_class_top1_and_worst_class_drops_by_hand():
    from tasks.metrics.accuracy import per_class_top1, worst_class_drops

    labels = np.array([0, 0, 1, 1, 2, 2])
    ref = np.eye(3)[labels]  # perfect
    got = np.eye(3)[[0, 0, 1, 0, 0, 0]]  # class 1 half right, class 2 all wrong
    r, g = per_class_top1(ref, labels), per_class_top1(got, labels)
    assert r == {0: 100.0, 1: 100.0, 2: 100.0} and g == {0: 100.0, 1: 50.0, 2: 0.0}
    worst = worst_class_drops(r, g, n=2)
    assert [(w["class"], w["drop"]) for w in worst] == [(2, 100.0), (1, 50.0)]


def test_topk_by_hand():
    from tasks.metrics.accuracy import topk

    scores = np.array(
        [
            [0.1, 0.6, 0.3],  # ranking 1, 2, 0
            [0.5, 0.2, 0.3],  # ranking 0, 2, 1
            [0.2, 0.2, 0.6],  # ranking 2, then the 0/1 tie -> 0 before 1
        ]
    )
    labels = np.array([2, 1, 1])
    assert topk(scores, labels, 1) == pytest.approx(0.0)
    assert topk(scores, labels, 2) == pytest.approx(100 / 3)  # only sample 0 (label 2 is 2nd)
    assert topk(scores, labels, 3) == pytest.approx(100.0)
    # the tie: label 0 ties label 1 and wins it (lower index) -> in the top 2; label 1 does not
    assert topk(scores[2:], np.array([0]), 2) == pytest.approx(100.0)
    assert topk(scores[2:], np.array([1]), 2) == pytest.approx(0.0)
    # same as the stable argsort rule and as top1 at k=1
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, (200, 6)).astype(float)  # many ties
    y = rng.integers(0, 6, 200)
    order = np.argsort(-s, axis=1, kind="stable")
    for k in (1, 2, 3, 6):
        assert topk(s, y, k) == pytest.approx((order[:, :k] == y[:, None]).any(axis=1).mean() * 100)
    assert topk(s, y, 1) == top1(s, y)
    assert type(topk(s, y, 2)) is float


def test_topk_rejects_bad_k_and_shapes():
    from tasks.metrics.accuracy import topk

    with pytest.raises(ValueError, match=r"k=4 is outside 1..3"):
        topk(SCORES, np.array([1, 0, 2, 0]), 4)
    with pytest.raises(ValueError, match=r"k=0 is outside"):
        topk(SCORES, np.array([1, 0, 2, 0]), 0)
    with pytest.raises(ValueError, match="expected \\(N, K\\) and \\(N,\\)"):
        topk(SCORES, np.array([1, 0]), 1)
    with pytest.raises(ValueError, match="no samples"):
        topk(np.zeros((0, 3)), np.zeros((0,), dtype=np.int64), 1)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        topk(SCORES, np.array([1, 0, 2, 3]), 1)
