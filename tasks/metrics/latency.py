"""Latency measurement and its statistics (trtexec-style: time-based warm-up, then run until
both a minimum duration and a minimum iteration count are met)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tasks.agent import agent

PERCENTILES = (50, 90, 95, 99)


def measure(
    fn: Callable[[], object],
    warmup_s: float,
    min_duration_s: float,
    min_iterations: int,
    clock: Callable[[], float] = time.perf_counter,
) -> np.ndarray:
    """Call ``fn`` repeatedly; returns per-call latencies in seconds (float64, warm-up excluded).
    The loop is the device agent's, so host and device measure alike."""
    return np.asarray(agent.measure(fn, warmup_s, min_duration_s, min_iterations, clock), dtype=np.float64)


def window_cv(ms: np.ndarray, windows: int = 10) -> float:
    """CV (std/mean) of the medians of ``windows`` consecutive equal windows of calls.

    This is the stability figure: it moves when performance drifts during the run (thermal
    throttling, frequency scaling, a competing process), but not for one isolated stall, which
    inflates the per-call CV of sub-millisecond calls without making the p50 less trustworthy.
    With fewer than 2 calls per window it falls back to the per-call CV.
    """
    if ms.size < 2 * windows:
        return float(ms.std() / ms.mean()) if ms.mean() > 0 else 0.0
    med = np.array([np.median(w) for w in np.array_split(ms, windows)])
    return float(med.std() / med.mean()) if med.mean() > 0 else 0.0


def summarize(latencies_s: np.ndarray, batch_size: int) -> dict[str, float]:
    """Stats of per-call latencies (seconds in; milliseconds out) for one batch size.

    ``throughput`` is samples per second over the measured calls; ``cv`` is std/mean of the
    per-call latencies; ``cv_windows`` is :func:`window_cv` (what stability warnings use).
    Percentiles use numpy's default (linear) interpolation.
    """
    lat = np.asarray(latencies_s, dtype=np.float64)
    if lat.size == 0:
        raise ValueError("no latencies to summarise")
    ms = lat * 1e3
    out = {
        "iterations": int(lat.size),
        "min_ms": float(ms.min()),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "throughput": float(batch_size * lat.size / lat.sum()),
        "cv": float(ms.std() / ms.mean()) if ms.mean() > 0 else 0.0,
        "cv_windows": window_cv(ms),
    }
    for p, v in zip(PERCENTILES, np.percentile(ms, PERCENTILES)):
        out[f"p{p}_ms"] = float(v)
    return out
