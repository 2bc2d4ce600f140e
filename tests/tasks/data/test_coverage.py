"""tasks.data.coverage: what a prepared split covers (classes, brightness, original sizes) and the
warnings when the calibration split lacks a class the evaluation split has."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.data.coverage import brightness, class_counts, coverage, image_sizes, summary_line
from tasks.data.split import save_split


def test_class_counts_count_samples_pixels_or_objects_by_task():
    assert class_counts(np.array([0, 2, 2, -1]), "classification", ["a", "b", "c"]) == {"a": 1, "b": 0, "c": 2}
    masks = np.array([[[0, 0, 1], [255, 1, 1]]])  # 255 = ignore, never a class
    assert class_counts(masks, "segmentation", ["background", "digit"]) == {"background": 2, "digit": 3}
    boxes = np.full((2, 3, 5), -1.0, np.float32)  # padding rows are class -1
    boxes[0, :2, 0], boxes[1, 0, 0] = [1, 1], 0
    assert class_counts(boxes, "detection", ["cat", "dog"]) == {"cat": 1, "dog": 2}
    keypoints = np.full((1, 2, 5 + 3 * 2), -1.0, np.float32)
    keypoints[0, 0, 0] = 0
    assert class_counts(keypoints, "keypoints", ["person"]) == {"person": 1}
    # unlabelled (fidelity) data: nothing to count; an id beyond the class list is named by its number
    assert class_counts(np.full(4, -1), "classification", []) == {}
    assert class_counts(np.array([0, 3]), "classification", ["a"]) == {"a": 1, "1": 0, "2": 0, "3": 1}


def test_brightness_is_taken_over_the_model_ready_values():
    x = np.stack([np.full((1, 2, 2), v, np.float32) for v in np.linspace(-1, 1, 101)])
    x[0, 0, 0, 0] = -3.0
    b = brightness(x)
    assert b["pixel_range"] == [-3.0, 1.0]
    m = b["per_image_mean"]
    assert m["p50"] == pytest.approx(0.0, abs=1e-6) and m["max"] == 1.0 and m["min"] == pytest.approx(-1.5)
    assert m["p5"] == pytest.approx(-0.9, abs=1e-4) and m["p95"] == pytest.approx(0.9, abs=1e-4)


def test_image_sizes_read_the_original_heights_and_widths_from_meta():
    meta = np.array([[480, 640, 0.5, 0.5, 0, 0], [240, 320, 1, 1, 0, 0], [600, 800, 0.4, 0.4, 8, 0]], np.float32)
    s = image_sizes(meta)
    assert (s["height"]["min"], s["height"]["p50"], s["height"]["max"]) == (240, 480, 600)
    assert (s["width"]["min"], s["width"]["max"]) == (320, 800)


def _split(root, labels, value=0.0, meta=None):
    labels = np.asarray(labels)
    save_split(root, np.full((len(labels), 1, 4, 4), value, np.float32), labels)
    if meta is not None:
        np.save(root / "meta.npy", np.asarray(meta, np.float32))


def test_coverage_warns_for_each_class_evaluation_has_and_calibration_lacks(tmp_path):
    (tmp_path / "classes.json").write_text(json.dumps(["zero", "one", "two"]))
    _split(tmp_path / "calib", [0, 0, 1], value=0.5)
    _split(tmp_path / "eval", [0, 1, 2, 2], value=-0.5, meta=[[100, 200, 1, 1, 0, 0]] * 4)
    cov = coverage(tmp_path / "calib", tmp_path / "eval", "classification")
    assert cov["calib"]["per_class"] == {"zero": 2, "one": 1, "two": 0}
    assert cov["eval"]["per_class"] == {"zero": 1, "one": 1, "two": 2}
    assert cov["calib"]["samples"] == 3 and cov["calib"]["counted"] == "samples"
    assert "image_size" not in cov["calib"]  # no meta.npy: the split's labels are in model-input pixels
    assert cov["eval"]["image_size"]["width"]["max"] == 200
    assert cov["eval"]["brightness"]["per_image_mean"]["p50"] == -0.5
    [warning] = cov["warnings"]
    assert "'two'" in warning and "2 samples in the evaluation split" in warning and "data.calib" in warning
    line = summary_line(cov)
    assert line.startswith("calib 3 samples, 2/3 classes, brightness p5-p95 0.50..0.50; eval 4 samples, 3/3")
    assert "100-100 x 200-200 px" in line and line.endswith("1 warning")


def test_coverage_of_matching_or_unlabelled_splits_has_no_warnings(tmp_path):
    _split(tmp_path / "calib", [-1, -1])  # unlabelled images (task fidelity): y is -1, classes.json []
    _split(tmp_path / "eval", [-1, -1, -1])
    cov = coverage(tmp_path / "calib", tmp_path / "eval", "classification")
    assert cov["warnings"] == [] and cov["eval"]["per_class"] == {}
    assert "unlabelled" in summary_line(cov)


def test_pixels_per_class_are_summed_over_the_chunks_a_large_split_is_read_in(tmp_path):
    from tasks.data.coverage import CHUNK, split_coverage

    n = CHUNK + 44  # two chunks
    masks = np.zeros((n, 4, 4), np.int64)
    masks[:, 0, :2] = 1  # two digit pixels per mask
    masks[-1, 3, 3] = 255  # ignored
    (tmp_path / "classes.json").write_text(json.dumps(["background", "digit"]))
    _split(tmp_path / "eval", masks)
    cov = split_coverage(tmp_path / "eval", "segmentation")
    assert cov["counted"] == "pixels" and cov["per_class"] == {"background": 14 * n - 1, "digit": 2 * n}
