"""Keypoint example: top-down crops of real MNIST digits with the 4 extremal points of each digit.

Loader ``mnist_keypoints``: each digit of a split of :func:`examples.mnist.mnist_digits` (train 3,500
/ calib 500 / eval 1,000, disjoint) is resized to a random side in ``DIGIT_SIZE`` and pasted at a
random position on a 32x32 black crop, as a person detector's box would frame a person loosely.
Its keypoints are computed from the crop: the top-most, bottom-most, left-most and right-most ink
pixel (> ``INK``); where several pixels share the extreme row (column), the middle one of them
(the lower median). Coordinates are pixel indices (pixel ``(row, col)`` is point ``(col, row)``),
HRNet's and mmpose's convention for heatmaps. Labels int64 ``(N, 1, 5 + 3 * 4)``: class 0
("digit"), the digit's tight box ``[x1, y1, x2, y2]`` (pixels > 0, x2/y2 exclusive: its area is
the OKS scale), then ``x, y, 2`` (visible) per keypoint.

Architecture and trainer ``mnist_heatmap``: a tiny fully convolutional net whose output
``heatmaps`` ``(B, 4, 16, 16)`` (stride 2) is decoded on the host by ``eval.decoder: heatmap``.
The crops' pixel mean is 0.081 and std 0.233 after scaling by 1/255 (train split, seed 0).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from examples.canvas import resize_digit
from examples.canvas_models import _cbr, _fit
from examples.mnist import mnist_digits
from tasks.data.sources import LOADERS, RawSplit
from tasks.models.keypoint_decoders import encode_heatmaps
from tasks.models.load import ARCHS
from tasks.models.trainers import TRAINERS

CROP = 32  # crop side, pixels
DIGIT_SIZE = (20, 30)  # side of the resized digit, pixels, inclusive
INK = 127  # a pixel above this is ink for the keypoints
KEYPOINTS = ("top", "bottom", "left", "right")
STRIDE = 2  # heatmap stride: a 32x32 crop gives 16x16 heatmaps
SIGMA = 1.0  # training heatmaps' Gaussian, heatmap cells


def extremal_points(image: np.ndarray) -> np.ndarray:
    """int64 ``(4, 2)`` ``(x, y)`` pixel indices of the top-most, bottom-most, left-most and
    right-most ink pixel of uint8 ``image`` ``(H, W)``; ties: the lower median along the edge."""
    rows, cols = np.nonzero(image > INK)
    if not len(rows):
        raise ValueError("the image has no ink pixel")

    def middle(values: np.ndarray) -> int:
        return int(np.sort(values)[(len(values) - 1) // 2])

    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    return np.array(
        [
            (middle(cols[rows == top]), top),
            (middle(cols[rows == bottom]), bottom),
            (left, middle(rows[cols == left])),
            (right, middle(rows[cols == right])),
        ],
        np.int64,
    )


def make_crops(digits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Crops uint8 ``(N, 32, 32)`` of ``digits`` uint8 ``(N, 28, 28)`` and their labels int64
    ``(N, 1, 17)`` (module docstring). Deterministic given ``rng``'s state."""
    n = len(digits)
    images = np.zeros((n, CROP, CROP), np.uint8)
    labels = np.zeros((n, 1, 5 + 3 * len(KEYPOINTS)), np.int64)
    sizes = rng.integers(DIGIT_SIZE[0], DIGIT_SIZE[1] + 1, size=n)
    for i, (digit, size) in enumerate(zip(digits, sizes, strict=True)):
        x, y = (int(v) for v in rng.integers(0, CROP - size + 1, size=2))
        images[i, y : y + size, x : x + size] = resize_digit(digit, int(size))
        rows, cols = np.nonzero(images[i])
        kp = extremal_points(images[i])
        labels[i, 0, :5] = (0, cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        labels[i, 0, 5:] = np.concatenate([kp, np.full((len(kp), 1), 2)], axis=1).ravel()
    return images, labels


@LOADERS.register("mnist_keypoints")
@functools.lru_cache(maxsize=2)
def mnist_keypoints(seed: int) -> dict[str, RawSplit]:
    """Keypoint splits: images uint8 (N, 32, 32); labels int64 (N, 1, 17); classes ["digit"]."""
    out = {}
    for k, (name, split) in enumerate(mnist_digits(seed).items()):
        images, labels = make_crops(split.images, np.random.default_rng([seed, k, 0x4B9]))
        out[name] = RawSplit(images, labels, ["digit"])
    return out


@ARCHS.register("mnist_heatmap")
class MnistHeatmap(nn.Module):
    """Top-down keypoint net: input float32 (B, 1, 32, 32), output ``heatmaps`` float32
    (B, num_keypoints, 16, 16), one map per keypoint peaking at it (SimpleBaseline/HRNet style:
    no activation, trained with MSE against Gaussians). Finding the top-most ink needs the whole
    digit in view, hence the 8x8 and 4x4 context brought back to 16x16."""

    def __init__(self, num_keypoints: int = len(KEYPOINTS), width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_cbr(1, w, 2), _cbr(w, 2 * w))  # 16x16: no full-resolution layer (CPU time)
        self.s8 = nn.Sequential(_cbr(2 * w, 4 * w, 2), _cbr(4 * w, 4 * w))  # 8x8
        self.s4 = nn.Sequential(_cbr(4 * w, 4 * w, 2), _cbr(4 * w, 4 * w))  # 4x4: the whole digit
        self.up8 = nn.Conv2d(4 * w, 4 * w, 1)
        self.up16 = nn.Conv2d(4 * w, 2 * w, 1)
        self.head = nn.Conv2d(2 * w, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
        f16 = self.stem(x)
        f8 = self.s8(f16)
        f8 = f8 + up(self.up8(self.s4(f8)))
        return self.head(f16 + up(self.up16(f8)))


@TRAINERS.register("mnist_heatmap")
def train_mnist_heatmap(
    x: np.ndarray,
    y: np.ndarray,
    out: Path,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress=None,
) -> dict:
    """Train :class:`MnistHeatmap` and save its state_dict to ``out``.

    ``x`` float32 (N, 1, 32, 32) preprocessed; ``y`` int64 (N, 1, 17) (module docstring). Loss: MSE
    against Gaussian heatmaps (``encode_heatmaps``, sigma ``SIGMA`` cells, peak 1), x 100 so that
    its scale reads like a percentage. Returns the last epoch's mean loss and the training time (s).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    kp = np.asarray(y)[:, 0, 5:].reshape(len(y), -1, 3)
    target = torch.from_numpy(encode_heatmaps(kp, out_hw=(CROP // STRIDE, CROP // STRIDE), stride=STRIDE, sigma=SIGMA))
    model = MnistHeatmap(num_keypoints=kp.shape[1])

    def loss_fn(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return 100 * F.mse_loss(model(xt[idx]), target[idx]), {}

    metrics = _fit(
        model, loss_fn, len(xt), out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    return {**metrics, "epochs": epochs, "train_s": time.perf_counter() - start}
