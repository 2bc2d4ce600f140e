"""Latency statistics (summarize, window_cv) and the measurement loop (measure) with a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.metrics.latency import PERCENTILES, measure, summarize, window_cv


@pytest.fixture
def samples_s() -> np.ndarray:
    """Known, irregular per-call latencies in seconds."""
    return np.array([0.0012, 0.0010, 0.0031, 0.0011, 0.0015, 0.0009, 0.0022, 0.0013, 0.0040, 0.0010, 0.0014])


def test_summarize_matches_numpy(samples_s):
    s = summarize(samples_s, batch_size=4)
    ms = samples_s * 1e3
    assert s["iterations"] == len(samples_s)
    for p in (50, 90, 95, 99):
        assert s[f"p{p}_ms"] == pytest.approx(np.percentile(ms, p), rel=1e-12)
    assert s["min_ms"] == pytest.approx(ms.min())
    assert s["mean_ms"] == pytest.approx(ms.mean())
    assert s["max_ms"] == pytest.approx(ms.max())
    assert s["throughput"] == pytest.approx(4 * len(samples_s) / samples_s.sum())
    assert s["cv"] == pytest.approx(ms.std() / ms.mean())
    assert s["cv_windows"] == pytest.approx(window_cv(ms))
    assert set(f"p{p}_ms" for p in PERCENTILES) <= set(s)


def test_summarize_units_are_milliseconds_and_samples_per_second():
    s = summarize(np.full(20, 0.002), batch_size=1)  # 2 ms per call
    assert s["p50_ms"] == pytest.approx(2.0)
    assert s["throughput"] == pytest.approx(500.0)
    assert s["cv"] == pytest.approx(0.0, abs=1e-12)
    assert s["cv_windows"] == pytest.approx(0.0, abs=1e-12)


def test_summarize_rejects_empty_input():
    with pytest.raises(ValueError, match="no latencies"):
        summarize(np.array([]), batch_size=1)


def test_window_cv_ignores_one_outlier_but_sees_drift():
    rng = np.random.default_rng(0)
    base = 1.0 + rng.normal(0, 0.002, size=1000)  # ~1 ms per call, 0.2% jitter

    steady = window_cv(base)
    assert steady < 0.005

    stall = base.copy()
    stall[500] = 1000.0  # one 1 s stall: per-call CV explodes, window medians barely move
    assert summarize(stall / 1e3, 1)["cv"] > 1.0
    assert window_cv(stall) < 0.005
    assert abs(window_cv(stall) - steady) < 0.002

    drift = base.copy()
    drift[500:] *= 1.1  # step change half-way: 10% slower for the second half
    assert window_cv(drift) > 0.025
    assert summarize(drift / 1e3, 1)["cv_windows"] > 0.025


def test_window_cv_falls_back_to_per_call_cv_for_few_calls():
    ms = np.array([1.0, 2.0, 3.0, 4.0])
    assert window_cv(ms) == pytest.approx(ms.std() / ms.mean())


class FakeClock:
    """Time moves only when the measured function runs (each call takes ``tick`` seconds)."""

    def __init__(self, tick: float = 0.125) -> None:
        self.t = 0.0
        self.tick = tick
        self.calls = 0

    def __call__(self) -> float:
        return self.t

    def fn(self) -> None:
        self.calls += 1
        self.t += self.tick


def test_measure_warmup_then_min_duration():
    c = FakeClock(0.125)
    lat = measure(c.fn, warmup_s=0.5, min_duration_s=1.0, min_iterations=3, clock=c)
    # warm-up: 0.5 s / 0.125 s = 4 calls; then 1.0 s of calls (8) beats 3 iterations
    assert len(lat) == 8
    assert c.calls == 4 + 8
    assert lat.dtype == np.float64
    assert np.allclose(lat, 0.125)


def test_measure_min_iterations_when_duration_is_short():
    c = FakeClock(0.125)
    lat = measure(c.fn, warmup_s=0.5, min_duration_s=1.0, min_iterations=20, clock=c)
    assert len(lat) == 20
    assert c.calls == 4 + 20


def test_measure_always_warms_up_once():
    c = FakeClock(0.125)
    lat = measure(c.fn, warmup_s=0.0, min_duration_s=0.0, min_iterations=5, clock=c)
    assert len(lat) == 5
    assert c.calls == 1 + 5  # one warm-up call even with warmup_s=0, excluded from the result
