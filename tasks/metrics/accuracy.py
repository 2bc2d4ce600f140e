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
