"""Where raw images come from: registered Python loaders and .npz files (a :class:`RawSplit` in
memory), and image files read one at a time (:class:`Source`: ImageFolder trees here; COCO, YOLO,
mask folders and unlabelled folders in their own modules).

A :class:`RawSplit` holds uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` (RGB) and int64 labels
whose first axis is the sample (by ``model.task``: ``(N,)`` classes, ``(N, K, 5)`` boxes ``[class,
x1, y1, x2, y2]`` padded with -1, or ``(N, H, W)`` class maps), plus class names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.data.errors import DataError
from tasks.data.images import IMAGE_SUFFIXES, image_files, read_image
from tasks.registry import Registry


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


class Source:
    """A split read one sample at a time (nothing but its index is held in memory per image).

    ``image(i)``: uint8 ``(h, w)`` grayscale or ``(h, w, 3)`` RGB at the file's own size.
    ``label(i, hw)``: the label of image ``i`` whose size is ``hw``, by ``model.task`` (the shared
    contract): a class id (int64 scalar; -1 unlabelled); ``(K, 5)`` float32 boxes ``[class, x1, y1,
    x2, y2]``; ``(K, 5 + 3J)`` keypoint rows; or a class map ``(h, w)`` (255 = ignore). Coordinates
    and class maps are in the image's own pixels when ``fitted`` (prepare fits the image to the
    model's input, maps the class map with it and records the fit in ``meta.npy``), in model-input
    pixels otherwise (arrays from a loader or .npz, preprocessed as they are).
    ``where(i)``: the sample for messages (its file).
    """

    classes: list[str]
    fitted = True
    labelled = True  # False: every label is -1 (an unlabelled folder, for model.task fidelity)
    named = False  # True: class indices come from the data's own list (coco categories), which both splits must share

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def label(self, i: int, hw: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def where(self, i: int) -> str:
        return f"sample #{i}"

    def finish(self, where: str) -> None:
        """Checks of the labels read (``where``: the split, for messages); raises DataError."""


class ArraySource(Source):
    """A :class:`RawSplit` already in memory (a registered loader, an .npz file)."""

    fitted = False

    def __init__(self, raw: RawSplit) -> None:
        self.raw, self.classes = raw, raw.classes

    def __len__(self) -> int:
        return len(self.raw.labels)

    def image(self, i: int) -> np.ndarray:
        return self.raw.images[i]

    def label(self, i: int, hw: tuple[int, int]) -> np.ndarray:
        return self.raw.labels[i]


class FileSource(Source):
    """A source whose samples are the image files ``files``, decoded as ``gray`` or RGB."""

    files: list[Path]
    gray: bool

    def __len__(self) -> int:
        return len(self.files)

    def where(self, i: int) -> str:
        return str(self.files[i])

    def image(self, i: int) -> np.ndarray:
        return read_image(self.files[i], self.gray)


class ImageFolderSource(FileSource):
    """``path/<class>/<image>`` (ImageFolder convention): class = subfolder, sorted by name."""

    def __init__(self, path: str | Path, gray: bool) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: no such image folder (expected one subfolder per class)")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise DataError(f"{root}: no class subfolders found (expected {root}/<class>/<image>.png)")
        found = [(f, i) for i, c in enumerate(self.classes) for f in image_files(root / c, recursive=False)]
        if not found:
            raise DataError(f"{root}: class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.files, self.ids = [f for f, _ in found], [i for _, i in found]
        self.gray = gray

    def label(self, i: int, hw: tuple[int, int]) -> np.ndarray:
        return np.int64(self.ids[i])
