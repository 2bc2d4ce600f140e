"""Split checks: shared samples found by content, classes without samples."""

from __future__ import annotations

import numpy as np

from tasks.data.checks import empty_classes, shared


def test_shared_samples_are_found_by_content_not_position():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    b = np.concatenate([rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), a[[4, 1]]])
    assert shared(a, b) == [(4, 3), (1, 4)]
    assert shared(a, a[:0]) == []


def test_same_pixels_in_another_shape_are_not_the_same_sample():
    img = np.arange(16, dtype=np.uint8)
    assert shared(img.reshape(1, 4, 4), img.reshape(1, 2, 8)) == []


def test_empty_classes_only_for_one_label_per_sample():
    assert empty_classes(np.array([0, 0, 2]), ["a", "b", "c", "d"]) == ["b", "d"]
    assert empty_classes(np.zeros((3, 4, 4), np.int64), ["bg", "x"]) == []  # masks: not counted
    assert empty_classes(np.array([0, 1]), []) == []


def test_constant_samples_counts_blank_images():
    from tasks.data.checks import constant_samples

    blank, real = np.full((3, 1, 4, 4), 0.5, np.float32), np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4)
    assert constant_samples([blank, real]) == (3, 5)
    assert constant_samples([]) == (0, 0)
