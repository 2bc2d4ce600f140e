"""Prepared splits on disk: ``<dir>/x.npy`` (float32 NCHW, model-ready) and ``<dir>/y.npy``
(int64 labels), memory-mapped so that stages stream batches instead of loading everything."""

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

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)`` batches: float32 ``(B, C, H, W)``, int64 ``(B,)``."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield np.ascontiguousarray(self.x[i:j]), np.asarray(self.y[i:j])


def save_split(root: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", x.astype(np.float32, copy=False))
    np.save(root / "y.npy", y.astype(np.int64, copy=False))


def classes_of(split_dir: str | Path) -> list[str]:
    """Class names the prepare stage wrote beside the split (``../classes.json``); empty if absent
    (classes are then known by index)."""
    path = Path(split_dir).parent / "classes.json"
    return [str(c) for c in read_json(path)] if path.is_file() else []
