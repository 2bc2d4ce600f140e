"""The YOLO-family decoders (yolov8, yolov5, boxes) on hand-built outputs with hand-checked boxes."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import stage
from tasks.models.decoders import DECODERS, run_decoder
from tasks.models.errors import DecoderError
from tasks.models.yolo_decoders import decode_boxes, decode_yolov5, decode_yolov8

# four anchors, cx, cy, w, h in input pixels, and their corners
XYWH = [[15, 15, 10, 10], [15, 15, 10, 8], [60, 60, 10, 10], [60, 60, 10, 10]]
XYXY = [[10, 10, 20, 20], [10, 11, 20, 19], [55, 55, 65, 65], [55, 55, 65, 65]]
# per-class scores (3 classes): anchor 1 overlaps anchor 0 by IoU 0.8 and is also class 1 at 0.6;
# anchor 2 scores below 0.001 everywhere
CLS = [[0.9, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 0.0005], [0.0, 0.0, 0.3]]


def v8(xywh=XYWH, cls=CLS) -> dict[str, np.ndarray]:
    """(1, 4 + C, A), as Ultralytics exports."""
    return {"output0": np.concatenate([np.array(xywh, np.float32), np.array(cls, np.float32)], 1).T[None]}


def test_registered_with_ultralytics_val_defaults():
    from tasks.models.decoders import DECODER_DEFAULTS

    assert {"centernet", "yolov8", "yolov5", "boxes"} <= set(DECODERS.names())
    assert DECODER_DEFAULTS["yolov8"] == {"score_threshold": 0.001, "iou_threshold": 0.7, "max_detections": 300}
    assert DECODER_DEFAULTS["yolov5"]["iou_threshold"] == 0.6


def test_yolov8_multi_label_keeps_second_class_of_a_suppressed_anchor():
    (det,) = decode_yolov8(v8(), iou_threshold=0.5)
    assert det.dtype == np.float32 and det.shape == (3, 6)
    np.testing.assert_allclose(det, [[*XYXY[0], 0.9, 0], [*XYXY[1], 0.6, 1], [*XYXY[3], 0.3, 2]], rtol=1e-6)


def test_yolov8_best_class_only_without_multi_label():
    (det,) = decode_yolov8(v8(), iou_threshold=0.5, multi_label=False)
    np.testing.assert_allclose(det, [[*XYXY[0], 0.9, 0], [*XYXY[3], 0.3, 2]], rtol=1e-6)


def test_yolov8_score_threshold_is_strict():
    (det,) = decode_yolov8(v8(), score_threshold=0.3, iou_threshold=0.5)
    assert det[:, 4].tolist() == pytest.approx([0.9, 0.6])  # 0.3 is not > 0.3


def test_yolov8_batch_and_max_detections():
    out = v8()["output0"]
    empty = np.zeros_like(out)
    dets = decode_yolov8({"o": np.concatenate([out, empty])}, iou_threshold=0.5, max_detections=2)
    assert [d.shape for d in dets] == [(2, 6), (0, 6)]
    assert dets[0][:, 4].tolist() == pytest.approx([0.9, 0.6])


def test_default_iou_differs_by_decoder():
    # two class-0 boxes with IoU 65/100 = 0.65: yolov8 (0.7) keeps both, yolov5 (0.6) drops one
    xywh, cls = [[5, 5, 10, 10], [5, 3.25, 10, 6.5]], [[0.9], [0.8]]
    (d8,) = run_decoder("yolov8", v8(xywh, cls), score_threshold=None, iou_threshold=None, max_detections=None)
    yolo5 = np.concatenate([np.array(xywh), np.ones((2, 1)), np.array(cls)], 1)[None]
    (d5,) = run_decoder("yolov5", {"o": yolo5}, score_threshold=None, iou_threshold=None, max_detections=None)
    assert len(d8) == 2 and len(d5) == 1


def test_yolov5_score_is_objectness_times_class():
    obj = [[1.0], [0.5], [0.002], [1.0]]
    out = np.concatenate([np.array(XYWH), np.array(obj), np.array(CLS)], 1)[None].astype(np.float32)
    (det,) = decode_yolov5({"output": out}, iou_threshold=0.5)
    # anchor 1: class 0 at 0.4 is suppressed by anchor 0, class 1 at 0.3 kept; anchor 2: 0.002 x 0.0005
    np.testing.assert_allclose(det, [[*XYXY[0], 0.9, 0], [*XYXY[1], 0.3, 1], [*XYXY[3], 0.3, 2]], rtol=1e-6)


def test_boxes_drops_padding_and_low_scores_and_sorts():
    rows = [
        [0, 0, 5, 5, 0.4, 1],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 9, 9, 0.8, 0],
        [2, 2, 3, 3, 0.0005, 2],
        [0, 0, 1, 1, 0.9, -1],
    ]
    (det,) = decode_boxes({"output0": np.array([rows], np.float32)})
    np.testing.assert_allclose(det, [[1, 1, 9, 9, 0.8, 0], [0, 0, 5, 5, 0.4, 1]], rtol=1e-6)
    (top,) = decode_boxes({"output0": np.array([rows], np.float32)}, max_detections=1)
    assert top[:, 4].tolist() == pytest.approx([0.8])


def test_boxes_efficient_nms_four_outputs_use_num_detections():
    count = np.array([[2], [0]], np.int32)
    boxes = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    scores = np.array([[0.9, 0.5, 0.7], [0.9, 0.9, 0.9]], np.float32)  # row 2 of image 0 is past num_detections
    classes = np.array([[3, 1, 2], [0, 0, 0]], np.int32)
    dets = decode_boxes({"num_dets": count, "det_boxes": boxes, "det_scores": scores, "det_classes": classes})
    np.testing.assert_allclose(dets[0], [[0, 1, 2, 3, 0.9, 3], [4, 5, 6, 7, 0.5, 1]], rtol=1e-6)
    assert dets[1].shape == (0, 6)


def test_yolov8_transposed_output_is_named_not_misread():
    out = v8()["output0"].transpose(0, 2, 1)  # (1, A=4, 4 + 3) given as (N, 4 + C, A)
    with pytest.raises(DecoderError) as e:
        decode_yolov8({"output0": out}, num_classes=3)
    msg = str(e.value)
    for frag in ("eval.decoder yolov8", "(N, 4 + C, A)", "output0 (1, 4, 7)", "C = 0", "transposed"):
        assert frag in msg


def test_class_count_must_match_the_dataset():
    with pytest.raises(DecoderError, match=r"C = 3, not the 80 classes"):
        decode_yolov8(v8(), num_classes=80)
    out = np.zeros((1, 10, 5 + 4), np.float32)
    with pytest.raises(DecoderError, match=r"eval.decoder yolov5 .*\(1, 10, 9\).*C = 4, not the 3 classes"):
        decode_yolov5({"o": out}, num_classes=3)


@pytest.mark.parametrize(
    "decoder, outputs, fragment",
    [
        (decode_yolov8, {"a": np.zeros((1, 7, 4)), "b": np.zeros((1, 32, 8, 8))}, "takes one output"),
        (decode_yolov8, {"a": np.zeros((7, 4))}, "rank 2"),
        (decode_boxes, {"a": np.zeros((1, 10, 5))}, "(N, K, 6)"),
        # EfficientNMS's outputs in the wrong order
        (decode_boxes, {k: np.zeros(s) for k, s in zip("abcd", [(1, 5, 4), (1, 1), (1, 5), (1, 5)])}, "in that order"),
    ],
)
def test_bad_shapes_name_the_decoder_and_shapes(decoder, outputs, fragment):
    with pytest.raises(DecoderError) as e:
        decoder(outputs)
    assert fragment in str(e.value) and "eval." in str(e.value)
    assert str(next(iter(outputs.values())).shape) in str(e.value)


def test_boxes_class_ids_outside_the_dataset():
    rows = np.array([[[0, 0, 5, 5, 0.4, 7]]], np.float32)
    with pytest.raises(DecoderError, match=r"class ids \[7.0\] outside 0..2"):
        decode_boxes({"o": rows}, num_classes=3)


def test_decoder_error_is_a_clear_stage_error(capsys):
    with pytest.raises(SystemExit) as e, stage.stage_errors("parity"):
        decode_yolov8(v8(), num_classes=80)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("edgeforge parity: error: eval.decoder yolov8") and "Traceback" not in err
