"""The keypoint decoders (heatmap, yolov8_pose) on hand-built outputs with hand-checked keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.models.decoders import DECODER_DEFAULTS, run_decoder
from tasks.models.errors import DecoderError
from tasks.models.keypoint_decoders import decode_heatmap, decode_yolov8_pose


def _heatmaps() -> np.ndarray:
    """(2, 3, 8, 8): image 0's keypoint 0 peaks at (x 4, y 3) with a higher right and lower upper
    neighbour; keypoint 1 peaks at x 1 (mmpose refines x only when 1 < x < w - 1); keypoint 2
    nowhere above 0. Image 1: plain peaks at (6, 6), (2, 5), (3, 2) with equal neighbours."""
    hm = np.full((2, 3, 8, 8), -0.1, np.float32)
    hm[0, 0, 3, 4], hm[0, 0, 3, 5], hm[0, 0, 3, 3], hm[0, 0, 2, 4], hm[0, 0, 4, 4] = 0.9, 0.5, 0.2, 0.1, 0.3
    hm[0, 1, 4, 1], hm[0, 1, 4, 2], hm[0, 1, 3, 1] = 0.6, 0.4, 0.3
    hm[1, 0, 6, 6], hm[1, 1, 5, 2], hm[1, 2, 2, 3] = 0.8, 0.7, 0.6
    return hm


def test_heatmap_quarter_shift_towards_the_higher_neighbour_scaled_to_input_pixels():
    res = decode_heatmap({"heatmaps": _heatmaps()}, input_hw=(32, 32), num_keypoints=3)
    assert len(res) == 2 and all(r.shape == (1, 6 + 9) and r.dtype == np.float32 for r in res)
    kp0 = res[0][0, 6:].reshape(3, 3)
    # (4 + 0.25, 3 + 0.25) cells x 4 px: right neighbour 0.5 > left 0.2, lower 0.3 > upper 0.1
    assert kp0[0] == pytest.approx([17.0, 13.0, 0.9])
    # x = 1 is not refined (mmpose's bound); y = 4 moves up towards 0.3 > -0.1
    assert kp0[1] == pytest.approx([4.0, 15.0, 0.6])
    # no maximum above 0: mmpose's -1 cell, scaled
    assert kp0[2] == pytest.approx([-4.0, -4.0, -0.1])
    assert res[1][0, 6:].reshape(3, 3) == pytest.approx(np.array([[24, 24, 0.8], [8, 20, 0.7], [12, 8, 0.6]]))


def test_heatmap_one_instance_per_crop_box_is_the_input_score_is_the_mean_maximum():
    res = decode_heatmap({"heatmaps": _heatmaps()}, input_hw=(32, 24))
    assert res[1][0, :6] == pytest.approx([0, 0, 24, 32, (0.8 + 0.7 + 0.6) / 3, 0])
    assert res[1][0, 6:9] == pytest.approx([6 * 3, 6 * 4, 0.8])  # x scaled by 24/8, y by 32/8


def test_heatmap_keypoint_count_must_match_the_sigmas():
    with pytest.raises(DecoderError, match=r"J = 3 heatmaps.*eval.keypoint_sigmas lists 17"):
        run_decoder("heatmap", {"hm": _heatmaps()}, input_hw=(32, 32), num_keypoints=17)
    with pytest.raises(DecoderError, match=r"takes one output"):
        decode_heatmap({"a": _heatmaps(), "b": _heatmaps()})
    with pytest.raises(DecoderError, match=r"\(N, J, h, w\)"):
        decode_heatmap({"a": np.zeros((2, 3, 8))})


# an Ultralytics pose head with one class and J = 2: anchors 0 and 1 overlap (IoU 0.8), anchor 2
# is apart, anchor 3 scores below the threshold
BOXES = [[15, 15, 10, 10], [15, 15, 10, 8], [60, 60, 10, 10], [30, 30, 4, 4]]
SCORES = [0.9, 0.8, 0.3, 0.0005]
KPTS = [[11, 12, 0.9, 18, 17, 0.8], [1, 1, 0.1, 2, 2, 0.2], [58, 61, 0.7, 62, 59, 0.4], [0, 0, 0, 0, 0, 0]]


def pose(kpts=KPTS) -> dict[str, np.ndarray]:
    rows = np.concatenate([np.array(BOXES), np.array(SCORES)[:, None], np.array(kpts)], axis=1)
    return {"output0": rows.T[None].astype(np.float32)}


def test_yolov8_pose_nms_keeps_each_instance_with_its_own_anchors_keypoints():
    (res,) = run_decoder("yolov8_pose", pose(), score_threshold=None, iou_threshold=None, num_keypoints=2)
    assert res.shape == (2, 6 + 6)
    assert res[0] == pytest.approx([10, 10, 20, 20, 0.9, 0, *KPTS[0]])
    assert res[1] == pytest.approx([55, 55, 65, 65, 0.3, 0, *KPTS[2]])
    assert DECODER_DEFAULTS["yolov8_pose"] == {"score_threshold": 0.001, "iou_threshold": 0.7, "max_detections": 300}


def test_yolov8_pose_without_visibility_takes_the_instance_score():
    xy = [[k for i, k in enumerate(row) if i % 3 != 2] for row in KPTS]
    (res,) = decode_yolov8_pose(pose(xy), num_keypoints=2, max_detections=1)
    assert res == pytest.approx(np.array([[10, 10, 20, 20, 0.9, 0, 11, 12, 0.9, 18, 17, 0.9]]))


def test_yolov8_pose_keypoint_count_must_match_the_sigmas():
    with pytest.raises(DecoderError, match=r"6 keypoint rows with C = 1.*J = 2.*eval.keypoint_sigmas lists 17"):
        decode_yolov8_pose(pose(), num_keypoints=17, num_classes=1)
