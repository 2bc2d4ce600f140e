"""Task fidelity: each precision against the FP32 model's own decoded outputs, on hand-checkable
outputs; nothing here has labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.config import Config
from tasks.data.errors import DataError
from tasks.metrics import fidelity
from tasks.metrics.task import LABELS, score


def _cfg(fidelity_of: str, **model) -> Config:
    cfg = Config()
    cfg.model.task, cfg.eval.fidelity_of = "fidelity", fidelity_of
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg


def _scored(cfg: Config, fp32: dict, got: dict, classes=()) -> tuple[dict, dict]:
    """(FP32 against its own targets, the precision against them), through the task dispatcher."""
    truth = fidelity.targets(cfg, fp32, list(classes))
    return score(cfg, fp32, truth, list(classes)), score(cfg, got, truth, list(classes))


def test_classification_is_top1_agreement_per_fp32_class():
    fp32 = np.array([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.7, 0.2, 0, 0, 0], [0.1, 0.6, 0.3, 0, 0, 0], [0, 0, 0, 0, 0, 1]])
    got = fp32.copy()
    got[2] = [0.1, 0.3, 0.6, 0, 0, 0]  # FP32 said class 1, the precision says 2 (FP32's 1 is its second)
    got[3] = [0, 0, 0, 0, 0.6, 0.5]  # FP32's 5 is only the precision's second best
    ref, res = _scored(_cfg("classification"), {"logits": fp32}, {"logits": got})
    assert ref["metric"] == res["metric"] == "top1_agreement" and ref["value"] == 100.0
    assert res["value"] == pytest.approx(50.0) and res["top5_agreement"] == pytest.approx(100.0)
    assert res["per_class"] == {"0": 100.0, "1": 50.0, "5": 0.0}  # classes FP32 never predicts are absent
    assert LABELS[res["metric"]] == "top-1 agreement %"


def test_classification_targets_are_fp32s_top1_and_class_names_are_used_when_they_fit():
    fp32 = {"logits": np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)}
    cfg = _cfg("classification")
    np.testing.assert_array_equal(fidelity.targets(cfg, fp32)["top1"], [1, 0])
    _, res = _scored(cfg, fp32, fp32, ["cat", "dog"])
    assert res["per_class"] == {"cat": 100.0, "dog": 100.0}


def _boxes(rows_per_image: list[list[list[float]]], k: int = 4) -> np.ndarray:
    """An NMS-ended model's output (N, K, 6) ``[x1, y1, x2, y2, score, class]``, class -1 = padding."""
    out = np.full((len(rows_per_image), k, 6), -1.0, np.float32)
    for i, rows in enumerate(rows_per_image):
        out[i, : len(rows)] = rows
    return out


def _detection_cfg() -> Config:
    cfg = _cfg("detection", outputs=["dets"])
    cfg.eval.decoder = "boxes"
    cfg.model.input.shape = [1, 64, 64]
    return cfg


def test_detection_takes_fp32_boxes_above_the_threshold_as_ground_truth():
    fp32 = _boxes(
        [
            [[10, 10, 30, 30, 0.9, 0], [40, 40, 60, 60, 0.2, 1]],  # the 0.2 box is below 0.25: not ground truth
            [[5, 5, 25, 45, 0.8, 1]],
        ]
    )
    cfg = _detection_cfg()
    truth = fidelity.targets(cfg, {"dets": fp32})
    np.testing.assert_array_equal(truth["boxes"][:, 0], [[0, 10, 10, 30, 30], [1, 5, 5, 25, 45]])
    assert truth["boxes"].shape == (2, 1, 5)
    ref, same = _scored(cfg, {"dets": fp32}, {"dets": fp32.copy()})
    assert ref["metric"] == "map_vs_fp32" and ref["value"] == pytest.approx(100.0) == same["value"]
    assert LABELS["map_vs_fp32"] == "mAP vs FP32"


def test_detection_drops_when_the_precision_misses_or_moves_fp32_boxes():
    fp32 = _boxes([[[10, 10, 30, 30, 0.9, 0]], [[5, 5, 25, 45, 0.8, 1]]])
    missed = fp32.copy()
    missed[1, 0, 5] = -1  # no box in image 2: class 1 has AP 0
    _, res = _scored(_detection_cfg(), {"dets": fp32}, {"dets": missed})
    assert res["value"] == pytest.approx(50.0) and res["per_class"] == {"0": 100.0, "1": 0.0}
    moved = fp32.copy()
    moved[:, 0, [0, 2]] += 4  # 20 px wide boxes moved 4 px: IoU 16/24 = 0.67, a hit at IoU .50-.65 only
    _, res = _scored(_detection_cfg(), {"dets": fp32}, {"dets": moved})
    assert 0 < res["value"] < 100 and res["map50"] == pytest.approx(100.0)


def test_detection_without_any_fp32_box_above_the_threshold_is_a_clear_error():
    fp32 = _boxes([[[10, 10, 30, 30, 0.2, 0]]])
    with pytest.raises(DataError, match="eval.fidelity_score_threshold 0.25"):
        fidelity.targets(_detection_cfg(), {"dets": fp32})


def test_segmentation_is_miou_against_fp32s_argmax():
    fp32 = np.zeros((1, 2, 2, 2), np.float32)
    fp32[0, 1, 0, :] = 1.0  # FP32: class 1 on the top row
    got = np.zeros_like(fp32)
    got[0, 1, 0, 0] = 1.0  # the precision: class 1 only top-left
    ref, res = _scored(_cfg("segmentation"), {"logits": fp32}, {"logits": got}, ["background", "digit"])
    # background: TP 2, FN 0, FP 1 -> 2/3; digit: TP 1, FN 1 -> 1/2
    assert ref["value"] == 100.0 and res["metric"] == "miou_vs_fp32"
    assert res["value"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert res["per_class"] == pytest.approx({"background": 200 / 3, "digit": 50.0})


def test_one_channel_segmentation_is_iou_per_image_against_fp32s_mask():
    fp32 = np.array([[[[0.9, 0.8], [0.1, 0.1]]], [[[0.1, 0.1], [0.1, 0.1]]]], np.float32)  # (2, 1, 2, 2)
    got = np.array([[[[0.9, 0.3], [0.1, 0.1]]], [[[0.1, 0.1], [0.1, 0.1]]]], np.float32)
    ref, res = _scored(_cfg("segmentation"), {"logits": fp32}, {"logits": got})
    assert ref["metric"] == res["metric"] == "iou_vs_fp32" and ref["value"] == 100.0
    assert res["per_image"] == [50.0, 100.0]  # image 2: nothing in FP32's mask, nothing predicted
    assert res["value"] == pytest.approx(75.0) and LABELS["iou_vs_fp32"] == "IoU vs FP32 %"


def test_none_scores_the_worst_outputs_sqnr_on_a_percent_scale():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 16)).astype(np.float32), rng.normal(size=(8, 4)).astype(np.float32)
    noisy = a + np.float32(0.1) * rng.normal(size=a.shape).astype(np.float32)
    cfg = _cfg("none", outputs=["a", "b"])
    ref, res = _scored(cfg, {"a": a, "b": b}, {"a": noisy, "b": b})
    assert ref["metric"] == "sqnr_score" and ref["value"] == 100.0 and ref["sqnr_db"] == {"a": None, "b": None}
    nsr = float(np.sum((noisy.astype(np.float64) - a) ** 2) / np.sum(a.astype(np.float64) ** 2))
    assert res["value"] == pytest.approx(100 * (1 - nsr)) and res["per_class"]["b"] == 100.0
    assert res["sqnr_db"]["a"] == pytest.approx(-10 * math.log10(nsr))
    # the gate: a drop of 1 point is an SQNR of 20 dB
    assert fidelity.sqnr_score(1.0, 0.01) == pytest.approx(99.0)
    assert fidelity.sqnr_score(1.0, 2.0) == 0.0 and fidelity.sqnr_score(0.0, 0.0) == 100.0


def test_every_decoding_has_a_scorer_and_a_header():
    assert set(fidelity.MODES) == {"classification", "detection", "segmentation", "keypoints", "none"}
    assert all(m.metric in LABELS for m in fidelity.MODES.values())


def test_keypoints_are_oks_ap_against_fp32s_keypoints():
    cfg = _cfg("keypoints", outputs=["heatmaps"], input=Config().model.input)
    cfg.model.input.shape = [1, 32, 32]
    cfg.eval.decoder, cfg.eval.keypoint_sigmas, cfg.eval.keypoint_names = "heatmap", [0.05, 0.05], ["a", "b"]
    fp32 = np.zeros((2, 2, 8, 8), np.float32)
    fp32[:, 0, 2, 3] = fp32[:, 1, 6, 4] = 0.9
    got = fp32.copy()
    got[1, 1, 6, 4], got[1, 1, 6, 6] = 0.0, 0.8  # image 1's keypoint b moves 8 px (2 cells)
    ref, res = _scored(cfg, {"heatmaps": fp32}, {"heatmaps": got})
    assert ref["metric"] == res["metric"] == "oks_ap_vs_fp32" and ref["value"] == pytest.approx(100.0)
    assert res["per_class"]["a"] == pytest.approx(100.0) and res["per_class"]["b"] < 100.0
    assert 0 < res["value"] < 100 and LABELS[res["metric"]] == "OKS AP vs FP32"
    fp32[:] = 0.1  # every FP32 crop scores 0.1, below eval.fidelity_score_threshold 0.25
    with pytest.raises(DataError, match="no instance scoring above eval.fidelity_score_threshold"):
        fidelity.targets(cfg, {"heatmaps": fp32})
