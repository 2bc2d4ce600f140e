"""Fitting images to the model's input (resize, letterbox) and mapping boxes and keypoints back."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.data.geometry import (
    boxes_to_input,
    boxes_to_original,
    detections_to_original,
    fit,
    keypoints_to_original,
    warp_image,
    warp_mask,
)


def test_resize_stretches_each_axis():
    f = fit((100, 50), (64, 32), letterbox=False)
    assert f.resized_hw == (64, 32) and f.pad == (0, 0) and f.scale == (0.64, 0.64)
    f = fit((100, 200), (50, 50), letterbox=False)
    np.testing.assert_allclose(f.meta, [100, 200, 0.5, 0.25, 0, 0])


@pytest.mark.parametrize(
    ("orig", "inp", "resized", "pad"),
    [
        ((480, 640), (640, 640), (480, 640), (80, 0)),  # scaled 1.0: 160 rows of padding, 80 on top
        ((720, 1280), (640, 640), (360, 640), (140, 0)),  # scaled down by 0.5
        ((100, 50), (64, 64), (64, 32), (0, 16)),  # scaled up (Ultralytics' val scales up too)
        ((101, 64), (64, 64), (64, 41), (0, 11)),  # odd padding: round(d / 2 - 0.1) before, the rest after
    ],
)
def test_letterbox_keeps_the_aspect_ratio_and_centres_the_padding(orig, inp, resized, pad):
    f = fit(orig, inp, letterbox=True)
    assert f.resized_hw == resized and f.pad == pad
    assert f.scale[0] == f.scale[1] == pytest.approx(min(inp[0] / orig[0], inp[1] / orig[1]))


def test_warp_image_pads_with_the_pad_value_and_masks_with_ignore():
    img = np.full((100, 50), 7, np.uint8)
    f = fit(img.shape, (64, 64), letterbox=True)
    out = warp_image(img, f, pad_value=114)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert (out[:, :16] == 114).all() and (out[:, 48:] == 114).all() and (out[:, 16:48] == 7).all()
    rgb = warp_image(np.zeros((100, 50, 3), np.uint8), f, pad_value=0)
    assert rgb.shape == (64, 64, 3)
    mask = np.zeros((100, 50), np.uint8)
    mask[:, 25:] = 3
    m = warp_mask(mask, f)
    assert m.dtype == np.int64 and set(np.unique(m[:, :16])) == {255}  # padding is ignore, not background
    assert set(np.unique(m[:, 16:48])) == {0, 3}  # nearest: no in-between class ids


def test_boxes_round_trip_and_clip_to_the_image():
    f = fit((720, 1280), (640, 640), letterbox=True)
    boxes = np.array([[100.0, 50.0, 400.0, 700.0, 0.9, 2]], np.float32)
    back = boxes_to_original(boxes_to_input(boxes, f.meta), f.meta)
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    # a box reaching into the padding is clipped to the image
    out = boxes_to_original(np.array([[-5.0, 100.0, 650.0, 150.0]]), f.meta)
    np.testing.assert_allclose(out[0, [0, 2]], [0, 1280])
    assert boxes_to_original(np.zeros((0, 6), np.float32), f.meta).shape == (0, 6)


def test_keypoints_map_back_and_keep_their_visibility():
    f = fit((200, 100), (64, 64), letterbox=True)  # scale 0.32, 16 px padding left
    kp = np.array([[[16.0 + 0.32 * 50, 0.32 * 100, 2.0]]], np.float32)
    np.testing.assert_allclose(keypoints_to_original(kp, f.meta), [[[50.0, 100.0, 2.0]]], rtol=1e-6)


def test_detections_without_meta_are_unchanged():
    dets = [np.ones((2, 6), np.float32), np.zeros((0, 6), np.float32)]
    assert detections_to_original(dets, None) is dets
    meta = np.stack([fit((128, 128), (64, 64), False).meta] * 2)
    out = detections_to_original(dets, meta)
    np.testing.assert_allclose(out[0][:, :4], 2.0) and np.testing.assert_allclose(out[0][:, 4:], 1.0)
    with pytest.raises(ValueError, match="meta rows"):
        detections_to_original(dets, meta[:1])


def test_keypoint_instances_map_box_and_points_back_and_keep_scores():
    from tasks.data.geometry import fit, instances_to_original, keypoints_to_original

    f = fit((200, 100), (64, 64), letterbox=True)
    inst = np.array([[16.0, 0.0, 48.0, 64.0, 0.9, 0.0, 20.0, 10.0, 0.8, 40.0, 50.0, 0.7]], np.float32)
    (got,) = instances_to_original([inst], f.meta[None])
    assert got[0, :4] == pytest.approx([0.0, 0.0, 100.0, 200.0])
    assert got[0, 4:6] == pytest.approx([0.9, 0.0])
    pts = keypoints_to_original(inst[0, 6:].reshape(2, 3), f.meta)
    assert got[0, 6:] == pytest.approx(pts.reshape(-1)) and got[0, [8, 11]] == pytest.approx([0.8, 0.7])
    assert instances_to_original([inst], None)[0] is inst
