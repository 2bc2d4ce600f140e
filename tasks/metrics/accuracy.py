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


def topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Top-k accuracy in percent; ``scores`` (N, K) float, ``labels`` (N,) int in 0..K-1.

    A sample counts when its label is among the ``k`` best classes, ties broken by the lower
    class index first: exactly the first ``k`` columns of ``np.argsort(-scores, kind="stable")``,
    and the same rule as ``argmax``, so ``topk(s, y, 1) == top1(s, y)``. ``k`` must be in 1..K:
    a larger k is a configuration mistake (it would score 100 whatever the model), so it raises.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores has shape {scores.shape} and labels {labels.shape}; expected (N, K) and (N,)")
    if len(labels) == 0:
        raise ValueError("no samples to score")
    n_classes = scores.shape[1]
    if not 1 <= k <= n_classes:
        raise ValueError(f"k={k} is outside 1..{n_classes} (the number of classes in scores)")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; got {labels.min()}..{labels.max()}")
    own = scores[np.arange(len(labels)), labels][:, None]
    ahead = (scores > own) | ((scores == own) & (np.arange(n_classes) < labels[:, None]))
    return float((ahead.sum(axis=1) < k).mean() * 100.0)
