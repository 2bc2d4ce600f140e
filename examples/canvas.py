"""Detection and segmentation examples: real MNIST digits pasted onto 64x64 black canvases.

Loaders ``mnist_boxes`` (boxes per canvas), ``mnist_masks`` (a class per pixel) and
``mnist_binmasks`` (digit vs background per pixel) share one generator. Each split's canvases are built only from the digits of the same split of
:func:`examples.mnist.mnist_digits` (train 3,500 / calib 500 / eval 1,000 disjoint digits), so no
digit appears in two splits. The models and trainers are in :mod:`examples.canvas_models`.

The models take the canvases through ``tasks.data.preprocess`` with ``model.input.shape``
[1, 64, 64]; the training canvases' pixel mean is 0.045 and std 0.179 (after scaling by 1/255).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from examples.mnist import mnist_digits
from tasks.data.sources import LOADERS, RawSplit

CANVAS = 64  # canvas side, pixels
MAX_DIGITS = 3  # digits per canvas: 1..MAX_DIGITS, uniformly
DIGIT_SIZE = (18, 34)  # side of a resized (square) digit, pixels, inclusive range
MAX_IOU = 0.1  # a placement whose tight box overlaps an earlier one more than this is retried
PLACEMENT_TRIES = 50  # after this many rejected positions the canvas keeps fewer digits
MASK_THRESHOLD = 127  # a digit pixel above this is labelled as the digit in the masks
SPLITS = {"train": 3000, "calib": 300, "eval": 500}  # canvases per split
DIGIT_CLASSES = [str(i) for i in range(10)]


@dataclass
class Canvases:
    """One split of generated canvases.

    images uint8 (N, 64, 64), black 0 background; boxes int64 (N, 3, 5) rows
    [class, x1, y1, x2, y2] in pixels, x2/y2 exclusive, the tight box of the pasted digit's pixels
    > 0, padding rows -1; masks uint8 (N, 64, 64), 0 background, 1 + class where a digit's pixel
    > 127 (later digits overwrite earlier ones); sources int64 (N, 3): index of each pasted digit
    in the split of ``mnist_digits`` it came from, -1 for padding.
    """

    images: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    sources: np.ndarray


def resize_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """uint8 (28, 28) -> uint8 (size, size), bilinear (MNIST digits are square, so aspect is kept)."""
    from PIL import Image

    return np.asarray(Image.fromarray(digit).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [x1, y1, x2, y2] pixel boxes with exclusive x2/y2 (area = (x2 - x1) * (y2 - y1))."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def make_canvases(digits: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> Canvases:
    """Paste 1..3 random ``digits`` uint8 (M, 28, 28) with int ``labels`` (M,) onto each of ``n`` canvases.

    A digit is resized to a random side in ``DIGIT_SIZE`` and placed fully inside the canvas at a
    random position whose tight box has IoU <= ``MAX_IOU`` with the earlier ones (else the position
    is redrawn, up to ``PLACEMENT_TRIES`` times, then the digit is dropped; the first always fits).
    Overlapping pixels are combined with max. Deterministic given ``rng``'s state.
    """
    images = np.zeros((n, CANVAS, CANVAS), np.uint8)
    masks = np.zeros((n, CANVAS, CANVAS), np.uint8)
    boxes = np.full((n, MAX_DIGITS, 5), -1, np.int64)
    sources = np.full((n, MAX_DIGITS), -1, np.int64)
    lo, hi = DIGIT_SIZE
    for i in range(n):
        placed = 0
        for _ in range(int(rng.integers(1, MAX_DIGITS + 1))):
            src = int(rng.integers(len(digits)))
            size = int(rng.integers(lo, hi + 1))
            patch = resize_digit(digits[src], size)
            rows, cols = np.nonzero(patch.any(axis=1))[0], np.nonzero(patch.any(axis=0))[0]
            tight = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])  # within the patch
            for _ in range(PLACEMENT_TRIES):
                x, y = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
                box = tight + (x, y, x, y)
                if all(box_iou(box, boxes[i, j, 1:]) <= MAX_IOU for j in range(placed)):
                    break
            else:
                continue
            region = (slice(y, y + size), slice(x, x + size))
            np.maximum(images[i][region], patch, out=images[i][region])
            masks[i][region][patch > MASK_THRESHOLD] = 1 + int(labels[src])
            boxes[i, placed] = (int(labels[src]), *box)
            sources[i, placed] = src
            placed += 1
    return Canvases(images, boxes, masks, sources)


@functools.lru_cache(maxsize=2)
def canvas_splits(seed: int) -> dict[str, Canvases]:
    """The canvases of every split in ``SPLITS``, each from the same split of ``mnist_digits(seed)``."""
    digits = mnist_digits(seed)
    out = {}
    for k, (name, n) in enumerate(SPLITS.items()):
        rng = np.random.default_rng([seed, k, 0xCA7])  # one stream per split: sizes can change independently
        out[name] = make_canvases(digits[name].images, digits[name].labels, n, rng)
    return out


@LOADERS.register("mnist_boxes")
@functools.lru_cache(maxsize=2)
def mnist_boxes(seed: int) -> dict[str, RawSplit]:
    """Detection splits: images uint8 (N, 64, 64); labels int64 (N, 3, 5) [class, x1, y1, x2, y2]
    in pixels, x2/y2 exclusive, padding rows -1; classes "0".."9"."""
    return {name: RawSplit(c.images, c.boxes, list(DIGIT_CLASSES)) for name, c in canvas_splits(seed).items()}


@LOADERS.register("mnist_masks")
@functools.lru_cache(maxsize=2)
def mnist_masks(seed: int) -> dict[str, RawSplit]:
    """Segmentation splits: images uint8 (N, 64, 64); labels int64 (N, 64, 64), 0 background,
    1 + digit where the digit's pixel > 127; classes "background", "0".."9"."""
    return {
        name: RawSplit(c.images, c.masks.astype(np.int64), ["background", *DIGIT_CLASSES])
        for name, c in canvas_splits(seed).items()
    }


@LOADERS.register("mnist_binmasks")
@functools.lru_cache(maxsize=2)
def mnist_binmasks(seed: int) -> dict[str, RawSplit]:
    """Binary segmentation splits: the ``mnist_masks`` canvases with every digit as one class:
    images uint8 (N, 64, 64); labels int64 (N, 64, 64), 0 background, 1 where a digit's pixel
    > 127; classes "background", "digit"."""
    return {
        name: RawSplit(c.images, (c.masks > 0).astype(np.int64), ["background", "digit"])
        for name, c in canvas_splits(seed).items()
    }
