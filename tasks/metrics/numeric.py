"""Numerical agreement of two output tensors (reference vs candidate)."""

from __future__ import annotations

import numpy as np


def compare(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> dict:
    """Error statistics of ``got`` against ``ref`` (same shape; any float dtype).

    An element fails when ``|got - ref| > atol + rtol * |ref|`` (numpy.isclose semantics).
    Relative error uses ``|ref|`` floored at 1e-12. Cosine similarity is over all elements.
    The worst element is the one furthest past its tolerance (or the largest error if none fails).
    """
    if ref.shape != got.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape}, candidate {got.shape}")
    r = ref.astype(np.float64).ravel()
    g = got.astype(np.float64).ravel()
    err = np.abs(g - r)
    allowed = atol + rtol * np.abs(r)
    excess = err - allowed
    worst = int(np.argmax(excess)) if err.size else 0
    denom = np.linalg.norm(r) * np.linalg.norm(g)
    return {
        "max_abs": float(err.max(initial=0.0)),
        "mean_abs": float(err.mean()) if err.size else 0.0,
        "max_rel": float((err / np.maximum(np.abs(r), 1e-12)).max(initial=0.0)),
        "cosine": float(r @ g / denom) if denom > 0 else float(np.array_equal(r, g)),
        "violations": int((excess > 0).sum()),
        "worst_index": [int(i) for i in np.unravel_index(worst, ref.shape)] if err.size else [],
        "worst_ref": float(r[worst]) if err.size else 0.0,
        "worst_got": float(g[worst]) if err.size else 0.0,
        "atol": atol,
        "rtol": rtol,
    }


def worst_elements(ref: np.ndarray, got: np.ndarray, n: int = 5) -> list[dict]:
    """The ``n`` elements with the largest ``|got - ref|``, largest first: index, both values, diff."""
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64)).ravel()
    if not err.size:
        return []
    n = min(n, err.size)
    part = np.argpartition(-err, n - 1)[:n]  # the n largest without sorting every element
    top = part[np.argsort(-err[part], kind="stable")]
    return [
        {
            "index": [int(i) for i in np.unravel_index(j, ref.shape)],
            "ref": float(ref.ravel()[j]),
            "got": float(got.ravel()[j]),
            "abs_diff": float(err[j]),
        }
        for j in top
    ]


def histogram(ref: np.ndarray, got: np.ndarray, bins: int = 12, low: float = 1e-7) -> dict:
    """Histogram of ``|got - ref|`` over log-spaced bins: ``edges`` (bins + 1 values, the first
    0 so that exact matches are counted, then ``low`` up to the largest difference) and
    ``counts`` (bins ints, summing to the number of elements)."""
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64)).ravel()
    top = max(float(err.max(initial=0.0)), low * 10)
    edges = np.concatenate([[0.0], np.geomspace(low, top, bins)])
    edges[-1] = np.nextafter(top, np.inf)  # the largest difference falls inside the last bin
    counts, _ = np.histogram(err, edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
