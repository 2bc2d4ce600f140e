"""The task metric dispatcher (model.task) on hand-checkable outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config import Config
from tasks.metrics.task import check_reference, score, worst_class_drops, worst_image_drops


def _cfg(task: str, **model) -> Config:
    cfg = Config()
    cfg.model.task = task
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg


def test_classification_top1_top5_and_per_class():
    scores = np.array([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.2, 0.7, 0, 0, 0], [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])
    labels = np.array([0, 1, 5])
    res = score(_cfg("classification"), {"logits": scores}, labels, ["a", "b", "c", "d", "e", "f"])
    assert res["metric"] == "top1" and res["value"] == pytest.approx(100 / 3)
    assert res["top5"] == pytest.approx(200 / 3)  # sample 2's class 5 is ranked 6th
    assert res["per_class"] == {"a": 100.0, "b": 0.0, "f": 0.0}


def test_segmentation_miou_from_logits():
    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[0, 1, 0, :] = 1.0  # predicted class 1 on the top row, 0 below
    labels = np.array([[[1, 0], [0, 0]]])
    res = score(_cfg("segmentation"), {"logits": logits}, labels, ["background", "digit"])
    # class 0: TP 2, FP 0, FN 1 -> IoU 2/3; class 1: TP 1, FP 1, FN 0 -> IoU 1/2
    assert res["metric"] == "miou" and res["value"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert res["per_class"] == pytest.approx({"background": 200 / 3, "digit": 50.0})


def test_detection_decodes_heads_and_scores_with_coco():
    """One 64x64 image, one box of class 3 centred at (22, 30) of size 12x20, predicted exactly."""
    from tasks.models.decoders import encode_centernet

    cfg = _cfg("detection", outputs=["heatmap", "wh", "offset"], input=Config().model.input)
    cfg.model.input.shape = [1, 64, 64]
    gt = np.full((1, 3, 5), -1, np.int64)
    gt[0, 0] = [3, 16, 20, 28, 40]
    enc = encode_centernet(gt, num_classes=10, out_hw=(16, 16), stride=4)
    hm = np.zeros((1, 10, 16, 16), np.float32)
    row, col = divmod(int(enc["index"][0, 0]), 16)
    hm[0, 3, row, col] = 0.9
    wh = np.zeros((1, 2, 16, 16), np.float32)
    wh[0, :, row, col] = enc["wh"][0, 0]
    off = np.zeros((1, 2, 16, 16), np.float32)
    off[0, :, row, col] = enc["offset"][0, 0]
    res = score(cfg, {"heatmap": hm, "wh": wh, "offset": off}, gt, [str(i) for i in range(10)])
    assert res["metric"] == "map50_95" and res["value"] == pytest.approx(100.0)
    assert res["per_class"]["3"] == pytest.approx(100.0) and res["per_class"]["0"] is None


def test_worst_class_drops_skip_classes_without_figures():
    ref = {"a": 90.0, "b": 80.0, "c": None, "d": 50.0}
    got = {"a": 85.0, "b": 40.0, "c": 10.0, "d": None}
    assert worst_class_drops(ref, got) == [
        {"class": "b", "reference": 80.0, "value": 40.0, "drop": 40.0},
        {"class": "a", "reference": 90.0, "value": 85.0, "drop": 5.0},
    ]


def test_detection_yolov8_by_config_reads_only_eval_outputs():
    """eval.decoder yolov8 with eval.outputs picking the head among two outputs; null thresholds
    take yolov8's defaults (IoU 0.7: a duplicate at IoU 0.8 goes, one at 0.65 would stay)."""
    from tasks.metrics.task import check_decodable
    from tasks.models.errors import DecoderError

    cfg = _cfg("detection", outputs=["proto", "output0"], input=Config().model.input)
    cfg.model.input.shape = [1, 64, 64]
    cfg.eval.decoder, cfg.eval.outputs = "yolov8", ["output0"]
    head = np.zeros((1, 4 + 2, 3), np.float32)
    head[0, :, 0] = [20, 20, 20, 20, 0.9, 0]  # box [10, 10, 30, 30] of class 0
    head[0, :, 1] = [20, 18, 20, 16, 0.8, 0]  # IoU 0.8 with it: suppressed
    head[0, :, 2] = [50, 50, 8, 8, 0.0, 0.7]  # box [46, 46, 54, 54] of class 1
    outputs = {"proto": np.zeros((1, 32, 16, 16), np.float32), "output0": head}
    gt = np.array([[[0, 10, 10, 30, 30], [1, 46, 46, 54, 54]]])
    res = score(cfg, outputs, gt, ["a", "b"])
    assert res["value"] == pytest.approx(100.0) and res["detections"] == 2
    cfg.eval.outputs = None  # both outputs reach yolov8: refused, naming the shapes
    with pytest.raises(DecoderError, match=r"takes one output .* proto \(1, 32, 16, 16\), output0 \(1, 6, 3\)"):
        check_decodable(cfg, outputs, ["a", "b"])


def test_one_channel_segmentation_is_binary_and_judged_by_dice():
    # probabilities (2 images, 1 channel, 2x2); threshold 0.5
    prob = np.array([[[[0.9, 0.8], [0.4, 0.6]]], [[[0.1, 0.2], [0.3, 0.4]]]], np.float32)
    labels = np.array([[[1, 1], [1, 0]], [[0, 0], [0, 255]]])
    res = score(_cfg("segmentation", scores_output="prob"), {"prob": prob}, labels, ["background", "text"])
    # image 0: TP 2, FP 1, FN 1 -> Dice 2/3; image 1: nothing in mask or prediction -> Dice 1
    assert res["metric"] == "dice" and res["value"] == pytest.approx((200 / 3 + 100) / 2)
    assert res["per_image"] == pytest.approx([200 / 3, 100.0])
    assert res["iou"] == pytest.approx((50 + 100) / 2)
    assert res["per_class"] == {"text": pytest.approx(res["value"])}
    # the same map as logits, and a threshold that moves pixels: 0.85 keeps only the 0.9 pixel
    logits = np.log(prob / (1 - prob))
    res_l = score(
        _cfg("segmentation", scores_output="prob", seg_output="logits", seg_threshold=0.85),
        {"prob": logits},
        labels,
        ["background", "text"],
    )
    # image 0: TP 1, FP 0, FN 2 -> Dice 2/4
    assert res_l["per_image"] == pytest.approx([50.0, 100.0])


@pytest.mark.parametrize(
    "labels, classes, match",
    [
        # masks of a multi-class data set against a binary map: named, with the allowed values
        (np.array([[[0, 3], [1, 0]]]), ["background", "fg"], r"scores_output 'prob' has one channel.*values \[3\]"),
        (np.zeros((1, 2, 2), np.int64), [str(c) for c in range(11)], r"one channel.*11 classes \(0, 1, 2, 3, \.\.\.\)"),
        (np.zeros((1, 2, 3), np.int64), ["bg", "fg"], "shape"),
    ],
)
def test_one_channel_segmentation_rejects_data_that_is_not_binary(labels, classes, match):
    from tasks.data.errors import DataError

    with pytest.raises(DataError, match=match):
        score(_cfg("segmentation", scores_output="prob"), {"prob": np.zeros((1, 1, 2, 2))}, labels, classes)


def test_multi_class_segmentation_ignores_255_and_names_bad_class_ids():
    from tasks.data.errors import DataError

    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[0, 1, 0, :] = 1.0
    labels = np.array([[[1, 255], [0, 0]]])  # the 255 pixel (predicted 1) is left out
    res = score(_cfg("segmentation"), {"logits": logits}, labels, ["background", "digit"])
    assert res["per_class"] == pytest.approx({"background": 100.0, "digit": 100.0})
    with pytest.raises(DataError, match=r"2 classes.*\[7\]"):
        score(_cfg("segmentation"), {"logits": logits}, np.array([[[1, 7], [0, 0]]]), ["background", "digit"])


def test_check_reference_refuses_logits_read_as_probabilities():
    from tasks.config import ConfigError

    cfg = _cfg("segmentation", scores_output="prob")
    check_reference(cfg, {"prob": np.array([[[[0.0, 1.0]]]])})  # probabilities: fine
    with pytest.raises(ConfigError, match=r"model.seg_output.*\[-2\.5, 3\].*seg_output=logits"):
        check_reference(cfg, {"prob": np.array([[[[-2.5, 3.0]]]])})
    cfg.model.seg_output = "logits"
    check_reference(cfg, {"prob": np.array([[[[-2.5, 3.0]]]])})
    check_reference(_cfg("segmentation"), {"logits": np.full((1, 3, 2, 2), 9.0)})  # multi-class: not a probability


def test_worst_image_drops_by_index_worst_first():
    ref = [100.0, 90.0, None, 80.0, 70.0]
    got = [100.0, 30.0, 10.0, 79.0, None]
    assert worst_image_drops(ref, got, n=2) == [
        {"image": 1, "reference": 90.0, "value": 30.0, "drop": 60.0},
        {"image": 3, "reference": 80.0, "value": 79.0, "drop": 1.0},
    ]
    assert worst_image_drops([50.0, 60.0], [50.0, 70.0]) == []  # none dropped: nothing to name
    with pytest.raises(ValueError, match="2 reference figures but 1"):
        worst_image_drops([1.0, 2.0], [1.0])


def test_detection_maps_boxes_back_to_original_pixels_with_the_split_meta():
    """A 200x100 (h x w) image letterboxed into 64x64 (scale 0.32, 16 px of padding left and
    right): the model's box in input pixels scores 100 against the label in original pixels only
    once it is mapped back with the meta row, as Ultralytics' val does with scale_boxes."""
    from tasks.data.geometry import boxes_to_input, fit

    cfg = _cfg("detection", outputs=["dets"], input=Config().model.input)
    cfg.model.input.shape = [1, 64, 64]
    cfg.eval.decoder = "boxes"
    f = fit((200, 100), (64, 64), letterbox=True)
    assert f.pad == (0, 16) and f.scale == (0.32, 0.32)
    labels = np.array([[[1, 10.0, 20.0, 60.0, 150.0]]], np.float32)  # original pixels
    x1, y1, x2, y2 = boxes_to_input(labels[0, :, 1:], f.meta)[0]
    dets = np.array([[[x1, y1, x2, y2, 0.9, 1]]], np.float32)
    meta = f.meta[None]
    assert score(cfg, {"dets": dets}, labels, ["a", "b"], meta)["value"] == pytest.approx(100.0)
    assert score(cfg, {"dets": dets}, labels, ["a", "b"])["value"] == 0.0  # unmapped: no overlap


def _keypoint_cfg() -> Config:
    cfg = _cfg("keypoints", outputs=["heatmaps"], input=Config().model.input)
    cfg.model.input.shape = [1, 32, 32]
    cfg.eval.decoder = "heatmap"
    cfg.eval.keypoint_sigmas = [0.05, 0.05]
    cfg.eval.keypoint_names = ["top", "bottom"]
    return cfg


def test_keypoints_decode_heatmaps_and_score_oks_ap_per_keypoint():
    """One 32x32 crop, heatmaps at stride 4 peaking exactly at the labelled keypoints."""
    hm = np.zeros((1, 2, 8, 8), np.float32)
    hm[0, 0, 1, 3] = hm[0, 1, 6, 4] = 1.0
    gt = np.array([[[0, 4, 2, 28, 30, 12, 4, 2, 16, 24, 2]]], np.float32)
    res = score(_keypoint_cfg(), {"heatmaps": hm}, gt, ["digit"])
    assert res["metric"] == "oks_ap" and res["value"] == pytest.approx(100.0)
    assert res["oks_ap50"] == res["oks_ap75"] == pytest.approx(100.0)
    assert res["per_class"] == pytest.approx({"top": 100.0, "bottom": 100.0})


def test_keypoints_that_do_not_fit_the_sigmas_are_named_before_any_build():
    from tasks.data.errors import DataError
    from tasks.metrics.task import check_decodable
    from tasks.models.errors import DecoderError

    cfg = _keypoint_cfg()
    hm = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(DecoderError, match=r"J = 3 heatmaps.*eval.keypoint_sigmas lists 2"):
        check_decodable(cfg, {"heatmaps": hm}, ["digit"])
    labels = np.zeros((1, 1, 5 + 3 * 3), np.float32)
    with pytest.raises(DataError, match=r"\(1, 1, 14\) \(3 keypoints\).*2 sigma\(s\) of eval.keypoint_sigmas"):
        score(cfg, {"heatmaps": hm[:, :2]}, labels, ["digit"])


def test_keypoint_names_default_to_cocos_for_its_sigmas():
    from tasks.metrics.task import keypoint_names

    cfg = Config()
    assert keypoint_names(cfg)[:3] == ["nose", "left_eye", "right_eye"] and len(keypoint_names(cfg)) == 17
    cfg.eval.keypoint_sigmas = [0.1, 0.1]
    assert keypoint_names(cfg) == ["kp0", "kp1"]


def test_keypoints_of_fitted_images_are_scored_in_original_pixels():
    """A 16x24 image letterboxed into the 32x32 input (scale 4/3, 5 px padding on top): the decoded
    keypoints, in input pixels, are mapped back with the split's meta row before OKS."""
    hm = np.zeros((1, 2, 8, 8), np.float32)
    hm[0, 0, 2, 3] = hm[0, 1, 6, 4] = 1.0  # input (12, 8) and (16, 24)
    meta = np.array([[18, 24, 4 / 3, 4 / 3, 4, 0]], np.float32)  # input = orig * 4/3 + (pad_left 0, pad_top 4)
    gt = np.array([[[0, 0, 0, 24, 18, 9, 3, 2, 12, 15, 2]]], np.float32)  # ((12, 8) - (0, 4)) * 3/4 = (9, 3)
    res = score(_keypoint_cfg(), {"heatmaps": hm}, gt, ["digit"], meta)
    assert res["value"] == pytest.approx(100.0)
    assert score(_keypoint_cfg(), {"heatmaps": hm}, gt, ["digit"])["value"] < 50  # unmapped: far off
