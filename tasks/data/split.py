"""Prepared splits on disk: ``<dir>/x.npy`` (float32 NCHW, model-ready), ``<dir>/y.npy`` (labels:
int64, or float32 boxes/keypoints read from files) and, for images read from files, ``<dir>/meta.npy``
(float32 ``(N, 6)`` ``[orig_h, orig_w, scale_y, scale_x, pad_top, pad_left]``: how each image was
fitted to the input, :mod:`tasks.data.geometry`), memory-mapped so that stages stream batches
instead of loading everything. Without ``meta.npy``, labels are in model-input pixels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tasks.data.errors import DataError
from tasks.io import read_json


class Split:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.x = np.load(self.root / "x.npy", mmap_mode="r")
            self.y = np.load(self.root / "y.npy", mmap_mode="r")
        except FileNotFoundError as e:
            raise DataError(f"{self.root}: prepared split missing ({e.filename}); run `dvc repro prepare`") from e
        meta = self.root / "meta.npy"
        self.meta: np.ndarray | None = np.load(meta) if meta.is_file() else None
        """float32 ``(N, 6)`` per image, or None: labels are then in model-input pixels."""

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)`` batches: float32 ``(B, C, H, W)``, labels ``(B, ...)``."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield np.ascontiguousarray(self.x[i:j]), np.asarray(self.y[i:j])


def label_dtype(y: np.ndarray) -> type:
    """int64 for class ids and class maps; float32 for coordinates that are not whole pixels."""
    return np.int64 if np.issubdtype(np.asarray(y).dtype, np.integer) else np.float32


def save_split(root: str | Path, x: np.ndarray, y: np.ndarray, meta: np.ndarray | None = None) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", x.astype(np.float32, copy=False))
    np.save(root / "y.npy", y.astype(label_dtype(y), copy=False))
    if meta is not None:
        np.save(root / "meta.npy", meta.astype(np.float32, copy=False))


def pad_rows(rows: list[np.ndarray], width: int, dtype: type) -> np.ndarray:
    """Per-sample ``(K_i, width)`` arrays -> ``(N, max K_i, width)``, padded with rows of -1 (class
    -1 marks padding)."""
    k = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), k, width), -1, dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class SplitWriter:
    """Writes a prepared split one sample at a time: ``x.npy`` (and a class map ``y.npy``, and
    ``meta.npy``) are memory-mapped files of their final size, so a large split is never wholly in
    memory; per-object labels (a few rows per image) are kept and padded on :meth:`close`."""

    def __init__(self, root: str | Path, n: int, sample_shape: tuple[int, ...], mask: bool, meta: bool) -> None:
        from numpy.lib.format import open_memmap

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.x = open_memmap(self.root / "x.npy", "w+", np.float32, (n, *sample_shape))
        self.y = open_memmap(self.root / "y.npy", "w+", np.int64, (n, *sample_shape[1:])) if mask else None
        self.meta = open_memmap(self.root / "meta.npy", "w+", np.float32, (n, 6)) if meta else None
        self.labels: list[np.ndarray] = []

    def put(self, i: int, x: np.ndarray, label: np.ndarray, meta: np.ndarray | None = None) -> None:
        """Sample ``i``: its input ``sample_shape``, its label (a class map of the input's H, W when
        ``mask``; else a class id, or ``(K, W)`` object rows), its meta row (when ``meta``)."""
        self.x[i] = x
        if self.y is not None:
            self.y[i] = label
        else:
            self.labels.append(np.asarray(label))
        if self.meta is not None:
            self.meta[i] = meta

    def close(self) -> None:
        for m in (self.x, self.y, self.meta):
            if m is not None:
                m.flush()
        if self.y is None:
            labels = self.labels
            if labels and labels[0].ndim == 2:  # object rows: pad to the most objects in an image
                width = max(r.shape[1] for r in labels)
                dtype = np.result_type(*(r.dtype for r in labels))
                y = pad_rows(labels, width, label_dtype(np.empty(0, dtype)))
            else:
                y = np.asarray(labels).reshape(len(labels), *(labels[0].shape if labels else ()))
            np.save(self.root / "y.npy", y.astype(label_dtype(y), copy=False))
        self.x = self.y = self.meta = None  # type: ignore[assignment]


def classes_of(split_dir: str | Path) -> list[str]:
    """Class names the prepare stage wrote beside the split (``../classes.json``); empty if absent
    (classes are then known by index)."""
    path = Path(split_dir).parent / "classes.json"
    return [str(c) for c in read_json(path)] if path.is_file() else []
