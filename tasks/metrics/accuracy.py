"""Classification accuracy."""
from __future__ import annotations

import numpy as np


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent; ``scores`` (N, K) float, ``labels`` (N,) int."""
    if len(labels) == 0:
        raise ValueError("no samples to score")
    return float((scores.argmax(axis=1) == labels).mean() * 100.0)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of samples whose top-1 class agrees between two score arrays (N, K)."""
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean() * 100.0)


def per_class_top1(scores: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> dict[int, float]:
    """Top-1 in percent for every class present in ``labels`` (class index -> accuracy)."""
    pred = scores.argmax(axis=1)
    k = num_classes if num_classes is not None else int(labels.max()) + 1
    return {c: float((pred[labels == c] == c).mean() * 100.0) for c in range(k) if (labels == c).any()}


def worst_class_drops(ref: dict[int, float], got: dict[int, float], n: int = 3) -> list[dict]:
    """The ``n`` classes whose accuracy dropped most from ``ref`` to ``got`` (points), worst first."""
    drops = sorted(((ref[c] - got[c], c) for c in ref), reverse=True)[:n]
    return [{"class": c, "reference_top1": ref[c], "top1": got[c], "drop": d} for d, c in drops]
