"""The CenterNet decoder on hand-built outputs, and its agreement with the training target encoder."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.models.decoders import DECODERS, decode_centernet, encode_centernet, get_decoder


def _outputs(b: int = 1, c: int = 3, h: int = 16, w: int = 16) -> dict[str, np.ndarray]:
    return {
        "heatmap": np.zeros((b, c, h, w), np.float32),
        "wh": np.zeros((b, 2, h, w), np.float32),
        "offset": np.zeros((b, 2, h, w), np.float32),
    }


def _put(out, b, cls, row, col, score, wh=(8.0, 12.0), off=(0.5, 0.25)) -> None:
    out["heatmap"][b, cls, row, col] = score
    out["wh"][b, :, row, col] = wh
    out["offset"][b, :, row, col] = off


def test_registered():
    assert "centernet" in DECODERS.names()
    assert get_decoder("centernet") is decode_centernet
    with pytest.raises(KeyError, match="centernet"):
        get_decoder("yolo")


def test_known_peaks_give_exact_boxes():
    out = _outputs(b=2)
    _put(out, 0, 1, 5, 7, 0.9, wh=(10, 20), off=(0.5, 0.25))  # centre (30, 21) px
    _put(out, 0, 2, 2, 3, 0.6, wh=(4, 6), off=(0.0, 0.5))  # centre (12, 10) px
    _put(out, 1, 0, 10, 10, 0.7, wh=(8, 8), off=(0.75, 0.75))  # centre (43, 43) px
    dets = decode_centernet(out)
    assert len(dets) == 2 and all(d.dtype == np.float32 and d.shape[1] == 6 for d in dets)
    np.testing.assert_allclose(dets[0], [[25, 11, 35, 31, 0.9, 1], [10, 7, 14, 13, 0.6, 2]], atol=1e-6)
    np.testing.assert_allclose(dets[1], [[39, 39, 47, 47, 0.7, 0]], atol=1e-6)


def test_only_local_maxima_per_class_survive():
    out = _outputs()
    _put(out, 0, 0, 4, 4, 0.8)
    _put(out, 0, 0, 4, 5, 0.5)  # neighbour of a higher peak in the same class: suppressed
    _put(out, 0, 0, 4, 7, 0.4)  # two cells away: a peak of its own
    _put(out, 0, 1, 4, 5, 0.3)  # same cell as the suppressed one, other class: a peak
    det = decode_centernet(out)[0]
    np.testing.assert_allclose(det[:, 4], [0.8, 0.4, 0.3], atol=1e-6)
    np.testing.assert_array_equal(det[:, 5], [0, 0, 1])


def test_threshold_max_detections_and_order():
    out = _outputs(c=2)
    scores = np.linspace(0.02, 0.95, 20, dtype=np.float32)
    for k, s in enumerate(scores):  # isolated cells, classes alternating
        _put(out, 0, k % 2, 2 * (k // 8), 2 * (k % 8), s)
    det = decode_centernet(out, score_threshold=0.5)[0]
    assert len(det) == int((scores >= 0.5).sum()) and (det[:, 4] >= 0.5).all()
    assert (np.diff(det[:, 4]) <= 0).all()
    top = decode_centernet(out, score_threshold=0.0, max_detections=5)[0]
    np.testing.assert_allclose(top[:, 4], scores[::-1][:5], atol=1e-6)
    assert decode_centernet(out, score_threshold=0.99)[0].shape == (0, 6)


def test_boxes_clip_to_the_input_and_names_are_configurable():
    out = _outputs()
    _put(out, 0, 0, 0, 15, 0.9, wh=(20, 20), off=(0.5, 0.5))  # centre (62, 2) px on a 64x64 input
    renamed = {"hm": out["heatmap"], "size": out["wh"], "reg": out["offset"]}
    det = decode_centernet(renamed, heatmap="hm", wh="size", offset="reg")[0]
    np.testing.assert_allclose(det[0, :4], [52, 0, 64, 12], atol=1e-6)
    with pytest.raises(KeyError, match="'heatmap'"):
        decode_centernet(renamed)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    n, k = 40, 3
    boxes = np.full((n, k, 5), -1, np.int64)
    cells_seen = set()
    for i in range(n):
        for j in range(int(rng.integers(1, k + 1))):
            w, h = rng.integers(4, 35, size=2)
            x1, y1 = rng.integers(0, 64 - w + 1), rng.integers(0, 64 - h + 1)
            boxes[i, j] = (rng.integers(10), x1, y1, x1 + w, y1 + h)
    t = encode_centernet(boxes, num_classes=10, out_hw=(16, 16), stride=4)
    assert t["heatmap"].shape == (n, 10, 16, 16) and t["heatmap"].dtype == np.float32
    assert t["heatmap"].max() == 1 and t["heatmap"].min() >= 0
    assert ((t["offset"] >= 0) & (t["offset"] < 1)).all()
    np.testing.assert_array_equal(t["mask"], boxes[..., 0] >= 0)
    # a perfect network: the target heatmap and, at each centre cell, the target size and offset
    out = {
        "heatmap": t["heatmap"],
        "wh": np.zeros((n, 2, 16, 16), np.float32),
        "offset": np.zeros((n, 2, 16, 16), np.float32),
    }
    for i, j in zip(*np.nonzero(t["mask"])):
        row, col = divmod(int(t["index"][i, j]), 16)
        assert t["heatmap"][i, boxes[i, j, 0], row, col] == 1
        out["wh"][i, :, row, col] = t["wh"][i, j]
        out["offset"][i, :, row, col] = t["offset"][i, j]
        cells_seen.add((i, row, col))
    dets = decode_centernet(out, score_threshold=0.99)
    for i, det in enumerate(dets):
        gt = boxes[i][boxes[i, :, 0] >= 0]
        if len({(r, c) for (ii, r, c) in cells_seen if ii == i}) < len(gt):
            continue  # two boxes share a centre cell: one target wins, as in training
        assert len(det) == len(gt)
        for g in gt:
            match = det[(det[:, 5] == g[0]) & (np.abs(det[:, :4] - g[1:]).max(axis=1) <= 1)]
            assert len(match) == 1, (i, g, det)
            np.testing.assert_allclose(match[0, :4], g[1:], atol=1e-4)  # exact up to float32 rounding


def test_null_settings_keep_the_example_thresholds():
    """The config leaves score_threshold/max_detections null: centernet keeps the values the
    example always ran with (0.01, 100), and input_hw sets the stride."""
    from tasks.models.decoders import run_decoder

    out = _outputs()
    _put(out, 0, 0, 5, 7, 0.02)
    _put(out, 0, 1, 9, 9, 0.005)  # below 0.01
    (det,) = run_decoder(
        "centernet", out, input_hw=(64, 64), score_threshold=None, max_detections=None, iou_threshold=None
    )
    np.testing.assert_allclose(det, [[26, 15, 34, 27, 0.02, 0]], atol=1e-6)  # centre (30, 21) px at stride 4
