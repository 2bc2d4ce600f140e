"""Where raw images come from: registered Python loaders, ImageFolder trees and .npz files.

Every source yields a :class:`RawSplit`: uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` (RGB)
and int64 labels whose first axis is the sample (by ``model.task``: ``(N,)`` classes, ``(N, K, 5)``
boxes ``[class, x1, y1, x2, y2]`` padded with -1, or ``(N, H, W)`` class maps), plus class names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.data.errors import DataError
from tasks.registry import Registry

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class RawSplit:
    images: np.ndarray  # uint8 (N, H, W) grayscale or (N, H, W, 3) RGB
    labels: np.ndarray  # int64 (N,) classes, (N, K, 5) boxes or (N, H, W) class maps
    classes: list[str]


# A loader returns its splits by name: at least "calib" and "eval" (and "train" to train on).
LOADERS: Registry[Callable[[int], dict[str, RawSplit]]] = Registry("data loader")


def load_loader_split(name: str, split: str, seed: int) -> RawSplit:
    import examples  # noqa: F401  registers the bundled loaders

    splits = LOADERS.get(name)(seed)
    if split not in splits:
        raise DataError(f"data loader {name!r} has no {split!r} split; it has: {', '.join(splits)}")
    return splits[split]


def load_npz(path: str | Path) -> RawSplit:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file (expected arrays x: images, y: integer labels)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise DataError(f"{path}: needs arrays 'x' (images) and 'y' (labels); it has {', '.join(z.files)}")
            x, y = z["x"], z["y"]
            classes = [str(c) for c in z["classes"]] if "classes" in z else None
    except (OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz file ({e})") from e
    if x.ndim not in (3, 4) or len(x) != len(y):
        raise DataError(
            f"{path}: x must be (N, H, W) or (N, H, W, C) with one label per image; got x {x.shape}, y {y.shape}"
        )
    if x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"{path}: x holds values outside 0..255; store raw pixels (uint8)")
        x = x.astype(np.uint8)
    y = y.astype(np.int64)
    # masks: 255 is VOC's "ignore" label, not a 256th class
    ids = y[y != 255] if y.ndim == 3 else y
    classes = classes or [str(i) for i in range(int(ids.max(initial=0)) + 1)]
    return RawSplit(x, y, classes)


def load_imagefolder(path: str | Path, size_hw: tuple[int, int], gray: bool) -> RawSplit:
    """Read ``path/<class>/<image>`` (ImageFolder convention), resized to ``size_hw``."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such image folder (expected one subfolder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class subfolders found (expected {root}/<class>/<image>.png)")
    images, labels = [], []
    for idx, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if gray else "RGB").resize(size_hw[::-1], Image.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8))
            except OSError as e:
                raise DataError(f"{f}: cannot read image ({e})") from e
            labels.append(idx)
    if not images:
        raise DataError(f"{root}: class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return RawSplit(np.stack(images), np.asarray(labels, dtype=np.int64), classes)
