"""Prepare one split from its source, one sample at a time: each image is decoded, hashed (for the
calibration/evaluation overlap check), fitted to the model's input (:mod:`tasks.data.geometry`),
preprocessed and written into memory-mapped arrays, so a large set is never wholly in memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.config import Config
from tasks.data.checks import digest
from tasks.data.geometry import fit, warp_image, warp_mask
from tasks.data.preprocess import input_hw, preprocess
from tasks.data.sources import Source
from tasks.data.split import SplitWriter


@dataclass
class Streamed:
    digests: list[bytes]  # one per sample of the whole split
    class_ids: np.ndarray | None  # classification: the class of every sample of the whole split
    used: np.ndarray  # indices (into the whole split) written, in order


def subset(cfg: Config, split: str, n: int) -> np.ndarray:
    """Indices of the ``data.<split>.limit`` samples used out of ``n``: a subset drawn with
    ``data.seed``, in order (all when no limit)."""
    limit = getattr(cfg.data, split).limit
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(cfg.data.seed).choice(n, limit, replace=False))


def write_split(cfg: Config, split: str, src: Source, used: np.ndarray, out: Path) -> Streamed:
    """Write samples ``used`` of ``src`` to ``out`` (``x.npy``, ``y.npy``, and ``meta.npy`` for a
    source whose images are fitted); every sample is read once, for its digest."""
    spec = cfg.model.input
    classify = cfg.model.task == "classification"
    take = np.zeros(len(src), bool)
    take[used] = True
    writer = SplitWriter(
        out, len(used), tuple(spec.shape), mask=cfg.model.task == "segmentation" and src.labelled, meta=src.fitted
    )
    digests, ids, k = [], [], 0
    for i in range(len(src)):
        image = src.image(i)
        digests.append(digest(image))
        if not (take[i] or classify):
            continue
        label = src.label(i, image.shape[:2])
        if classify:
            ids.append(int(label))
        if not take[i]:
            continue
        meta = None
        if src.fitted:
            f = fit(image.shape[:2], input_hw(spec), spec.letterbox)
            image, meta = warp_image(image, f, spec.pad_value), f.meta
            if writer.y is not None and np.ndim(label) == 2:
                label = warp_mask(label, f)
        writer.put(k, preprocess(image[None], spec)[0], label, meta)
        k += 1
    writer.close()
    src.finish(f"data.{split}")
    return Streamed(digests, np.asarray(ids, np.int64) if classify else None, used)
