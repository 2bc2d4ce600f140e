"""The YOLOv8-style canvas detector: its in-graph box decoding against hand-computed anchors, the
output the ``yolov8`` decoder reads, CIoU and the task-aligned assigner on hand-built cases,
and a short run of its trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from examples.canvas import canvas_splits
from examples.canvas_yolo import MnistYolo, assign, ciou, make_anchors, train_mnist_yolo
from tasks.models.decoders import run_decoder
from tasks.models.load import ARCHS
from tasks.models.trainers import TRAINERS

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]

X = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 64, 64), dtype=np.float32))


def _with_distance(d: float) -> MnistYolo:
    """A model whose box branches output distance ``d`` strides on every side, whatever the input."""
    net = MnistYolo().eval()
    with torch.no_grad():
        for branch in net.box:
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(math.log(math.expm1(d)))  # softplus^-1(d)
    return net


def test_anchors_are_cell_centres_level_by_level():
    points, strides = make_anchors((64, 64))
    assert points.shape == (80, 2) and strides.shape == (80, 1)
    px = points * strides  # pixels
    assert px[0].tolist() == [4, 4] and px[1].tolist() == [12, 4] and px[8].tolist() == [4, 12]  # 8x8, row-major
    assert px[63].tolist() == [60, 60] and px[64].tolist() == [8, 8] and px[79].tolist() == [56, 56]  # then 4x4
    assert strides[:64].eq(8).all() and strides[64:].eq(16).all()


def test_output_is_the_ultralytics_head_in_input_pixels():
    assert ARCHS.get("mnist_yolo") is MnistYolo
    net = _with_distance(1.0)
    assert sum(p.numel() for p in net.parameters()) < 400_000
    with torch.no_grad():
        out = net(X)
    assert out.shape == (2, 4 + 10, 80)
    points, strides = make_anchors((64, 64))
    centre = (points * strides).T  # (2, 80)
    torch.testing.assert_close(out[0, :2], centre, atol=1e-5, rtol=0)  # equal distances: centred on the anchor
    torch.testing.assert_close(out[1, 2:4], (2 * strides).T.expand(2, -1), atol=1e-5, rtol=0)  # w = h = 2 strides
    assert ((out[:, 4:] >= 0) & (out[:, 4:] <= 1)).all()


def test_ltrb_distances_give_the_box_around_the_anchor():
    net = MnistYolo()
    dist = torch.zeros(1, 4, 80)
    dist[0, :, 0] = torch.tensor([0.5, 0.25, 1.5, 2.0])  # l, t, r, b in strides, anchor 0 at (4, 4) px
    dist[0, :, 64] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # anchor 64 at (8, 8) px, stride 16
    b = net.boxes(dist)
    # x1 = 4 - 4 = 0, y1 = 4 - 2 = 2, x2 = 4 + 12 = 16, y2 = 4 + 16 = 20 -> cx 8, cy 11, w 16, h 18
    assert b[0, :, 0].tolist() == [8, 11, 16, 18]
    assert b[0, :, 64].tolist() == [8, 8, 32, 32]


def test_the_yolov8_decoder_reads_the_output():
    """(The ONNX export is tested with the other canvas models in test_canvas.py.)"""
    net = _with_distance(1.2)
    with torch.no_grad():
        out = net(X).numpy()
    dets = run_decoder("yolov8", {"output0": out}, num_classes=10, score_threshold=None)
    assert len(dets) == 2 and all(d.ndim == 2 and d.shape[1] == 6 for d in dets)
    # every anchor predicts a 2.4-stride square around itself: what survives NMS are those boxes
    width = dets[0][:, 2] - dets[0][:, 0]
    assert len(width) and np.isclose(width[:, None], [2.4 * 8, 2.4 * 16], atol=1e-3).any(1).all()


def test_ciou_on_hand_checked_boxes():
    a = torch.tensor([0.0, 0.0, 10.0, 10.0])
    assert ciou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    # same centre and aspect ratio: CIoU is the IoU, 25 / 100
    assert ciou(a, torch.tensor([2.5, 2.5, 7.5, 7.5])).item() == pytest.approx(0.25, abs=1e-6)
    # disjoint: IoU 0 minus the centre-distance term (10^2 / (20^2 + 10^2))
    assert ciou(a, torch.tensor([10.0, 0.0, 20.0, 10.0])).item() == pytest.approx(-100 / 500, abs=1e-6)


def _points() -> torch.Tensor:
    p, s = make_anchors((64, 64))
    return p * s


def test_assigner_picks_the_best_aligned_anchors_inside_the_box():
    points = _points()
    gt = torch.tensor([[[3, 8, 8, 40, 40], [-1, -1, -1, -1, -1]]], dtype=torch.float32)
    inside = ((points > 8) & (points < 40)).all(1)  # 16 anchors at stride 8, 1 at stride 16
    assert int(inside.sum()) == 17
    pred = torch.tensor([10.0, 10.0, 42.0, 42.0]).repeat(1, 80, 1)  # close: IoU ~0.78
    exact = torch.nonzero(inside).flatten()[[0, 5, 16]]  # three anchors predict the box exactly
    pred[0, exact] = gt[0, 0, 1:]
    scores = torch.full((1, 80, 10), 0.5)
    fg, boxes, target = assign(scores, pred, points, gt, 10)
    assert int(fg.sum()) == 10 and (fg[0] <= inside).all() and fg[0, exact].all()  # top 10 of the 17
    assert (boxes[fg] == gt[0, 0, 1:]).all()
    assert (target[~fg] == 0).all() and (target[fg][:, [c for c in range(10) if c != 3]] == 0).all()
    # normalised per box: its best-aligned anchors get the box's best IoU (1), the others less
    torch.testing.assert_close(target[0, exact, 3], torch.ones(3))
    others = fg[0].clone()
    others[exact] = False
    assert ((target[0, others, 3] > 0) & (target[0, others, 3] < 1)).all()


def test_assigner_gives_a_shared_anchor_to_the_box_it_overlaps_most():
    points = _points()
    # anchors at x = 28 and 36 (y = 20) lie in both boxes
    gt = torch.tensor([[[1, 2, 2, 40, 40], [7, 24, 8, 62, 38]]], dtype=torch.float32)
    pred = torch.zeros(1, 80, 4)
    pred[0] = gt[0, 0, 1:]  # every anchor predicts box 0 ...
    shared = torch.nonzero((points == torch.tensor([36.0, 20.0])).all(1)).item()
    pred[0, shared] = gt[0, 1, 1:]  # ... except one shared anchor, which predicts box 1
    fg, boxes, target = assign(torch.full((1, 80, 10), 0.5), pred, points, gt, 10)
    assert fg[0, shared] and (boxes[0, shared] == gt[0, 1, 1:]).all() and target[0, shared].argmax() == 7
    assert target[0, shared, 1] == 0


def test_assigner_ignores_padding_and_empty_images():
    points = _points()
    gt = torch.full((2, 3, 5), -1.0)
    gt[1, 0] = torch.tensor([0, 0, 0, 64, 64])
    fg, _, target = assign(torch.full((2, 80, 10), 0.5), torch.zeros(2, 80, 4) + 1, points, gt, 10)
    assert not fg[0].any() and (target[0] == 0).all()


def test_trainer_runs_and_saves_a_loadable_state_dict(tmp_path):
    assert TRAINERS.get("mnist_yolo") is train_mnist_yolo
    c = canvas_splits(0)["calib"]
    x = ((c.images[:48].astype(np.float32) / 255 - 0.045) / 0.179)[:, None]
    states, calls = [], []
    for run in range(2):
        metrics = train_mnist_yolo(
            x,
            c.boxes[:48],
            tmp_path / f"m{run}.pt",
            epochs=1,
            batch_size=32,
            seed=0,
            progress=lambda *a: calls.append(a),
        )
        assert all(np.isfinite(metrics[k]) for k in ("train_loss", "box_loss", "cls_loss")) and metrics["epochs"] == 1
        model = MnistYolo()
        model.load_state_dict(torch.load(tmp_path / f"m{run}.pt", weights_only=True))
        states.append(model.state_dict())
    assert [a[:2] for a in calls] == [(1, 1), (1, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m0.pt", "m1.pt"]
    for k, v in states[0].items():  # same seed, same weights
        torch.testing.assert_close(states[1][k], v, rtol=0, atol=1e-5)
