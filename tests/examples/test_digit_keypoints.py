"""The keypoint example: extremal points against hand-drawn digits, the crops' labels against their
pixels, the heatmap targets against the decoder, the model's ONNX export and a short training run."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from examples.digit_keypoints import (
    CROP,
    INK,
    STRIDE,
    MnistHeatmap,
    extremal_points,
    mnist_keypoints,
    train_mnist_heatmap,
)
from examples.mnist import mnist_digits
from tasks.data.sources import load_loader_split
from tasks.models.keypoint_decoders import decode_heatmap, encode_heatmaps
from tasks.models.trainers import TRAINERS

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]


def test_extremal_points_take_the_middle_of_a_flat_edge():
    img = np.zeros((10, 10), np.uint8)
    img[2, 3:8] = 255  # a flat top row: columns 3..7, the middle is 5
    img[2:9, 4] = 200  # a stem down to row 8
    img[5, 1:4] = 128  # an arm to the left at row 5
    img[6, 6] = INK  # not ink: INK itself is below the threshold
    assert extremal_points(img).tolist() == [[5, 2], [4, 8], [1, 5], [7, 2]]
    with pytest.raises(ValueError, match="no ink"):
        extremal_points(np.zeros((4, 4), np.uint8))


def test_loader_labels_fit_the_crops():
    splits = mnist_keypoints(0)
    assert {k: len(v.labels) for k, v in splits.items()} == {k: len(v.labels) for k, v in mnist_digits(0).items()}
    ev = load_loader_split("mnist_keypoints", "eval", 0)
    assert ev.images.shape == (1000, CROP, CROP) and ev.labels.shape == (1000, 1, 17) and ev.classes == ["digit"]
    for img, row in zip(ev.images[:50], ev.labels[:50, 0], strict=True):
        rows, cols = np.nonzero(img)
        assert row[:5].tolist() == [0, cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        kp = row[5:].reshape(4, 3)
        assert (kp[:, 2] == 2).all() and (img[kp[:, 1], kp[:, 0]] > INK).all()
        assert kp[0, 1] == kp[:, 1].min() and kp[1, 1] == kp[:, 1].max()
        assert kp[2, 0] == kp[:, 0].min() and kp[3, 0] == kp[:, 0].max()
    again = mnist_keypoints.__wrapped__(0)["eval"]  # deterministic given the seed
    assert np.array_equal(again.images, ev.images) and np.array_equal(again.labels, ev.labels)


def test_heatmap_targets_decode_back_to_the_keypoints():
    kp = np.array([[[10, 6, 2], [11, 25, 2], [4, 17, 2], [27, 12, 2]]])
    hm = encode_heatmaps(kp, out_hw=(CROP // STRIDE, CROP // STRIDE), stride=STRIDE, sigma=1.0)
    assert hm.shape == (1, 4, 16, 16) and hm.max() == pytest.approx(1.0)
    (row,) = decode_heatmap({"heatmaps": hm}, input_hw=(CROP, CROP), num_keypoints=4)
    got = row[0, 6:].reshape(4, 3)
    # even coordinates are whole cells; odd ones sit between two cells and come back within 0.5 px
    assert np.abs(got[:, :2] - kp[0, :, :2]).max() <= 0.5
    assert encode_heatmaps(np.array([[[3, 3, 0]]]), out_hw=(4, 4), stride=1).max() == 0  # unlabelled


def test_onnx_export_matches_torch(tmp_path):
    net = MnistHeatmap().eval()
    x = torch.randn(2, 1, CROP, CROP)
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        net, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=["heatmaps"]
    )
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-4, rtol=0)
    assert got.shape == (2, 4, 16, 16)


def test_trainer_runs_and_saves_a_loadable_state_dict(tmp_path):
    assert TRAINERS.get("mnist_heatmap") is train_mnist_heatmap
    c = mnist_keypoints(0)["calib"]
    x = ((c.images[:48].astype(np.float32) / 255 - 0.081) / 0.233)[:, None]
    calls = []
    metrics = train_mnist_heatmap(x, c.labels[:48], tmp_path / "m.pt", epochs=1, progress=lambda *a: calls.append(a))
    assert np.isfinite(metrics["train_loss"]) and metrics["epochs"] == 1 and [a[:2] for a in calls] == [(1, 1)]
    MnistHeatmap().load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
