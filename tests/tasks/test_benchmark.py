"""Stage benchmark: latency statistics per batch size, with and without the PyTorch baseline."""
from __future__ import annotations

import pytest

from tasks import benchmark
from tasks.config import Config, from_dict
from tasks.data.split import Split

STATS = {"iterations", "min_ms", "mean_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
         "throughput", "cv", "cv_windows"}


def _check_latency(lat: dict, cfg: Config) -> None:
    assert set(lat) == {"b1", "b4"}
    for stats in lat.values():
        assert set(stats) == STATS
        assert stats["iterations"] >= cfg.bench.min_iterations
        assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p95_ms"] <= stats["p99_ms"] \
            <= stats["max_ms"]
        assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"]
        assert stats["throughput"] > 0 and stats["cv"] >= 0 and stats["cv_windows"] >= 0


def test_run_with_and_without_torch_baseline(params, cfg, fp32_artifact, prepared):
    lines: list[str] = []
    res = benchmark.run(cfg, "local", fp32_artifact, prepared / "eval", log=lines.append)
    assert res["runtime"] == "onnxruntime"
    assert res["threads"] is None
    _check_latency(res["latency"], cfg)
    assert set(res["torch"]) == {"b1", "b4"}
    _check_latency(res["torch"], cfg)
    assert set(res["speedup_vs_torch"]) == {"b1", "b4"}
    for b in ("b1", "b4"):
        assert res["speedup_vs_torch"][b] == pytest.approx(res["torch"][b]["p50_ms"] / res["latency"][b]["p50_ms"])
    assert set(res["unstable"]) <= {"b1", "b4"}
    assert any(line.startswith("batch 1:") and "torch eager" in line for line in lines)
    # cold start and the conditions of the run are recorded beside the figures
    assert res["cold"]["load_ms"] > 0 and res["cold"]["first_inference_ms"] > 0
    assert set(res["hygiene"]) == {"before", "after"} and "load_avg_1m" in res["hygiene"]["after"]
    assert any(line.startswith("cold start: load") for line in lines)

    # measured once per target, by the FP32 benchmark: other precisions do not repeat it
    res = benchmark.run(cfg, "local", fp32_artifact, prepared / "eval", log=lambda m: None, precision="fp16")
    _check_latency(res["latency"], cfg)
    assert "torch" not in res and "speedup_vs_torch" not in res

    params["bench"]["torch_baseline"] = False
    res = benchmark.run(from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lambda m: None)
    _check_latency(res["latency"], cfg)
    assert "torch" not in res
    assert "speedup_vs_torch" not in res


def test_batch_of_uses_real_samples_repeated(prepared):
    split = Split(prepared / "eval")
    x = benchmark.batch_of(split, 4)
    assert x.shape == (4, 1, 28, 28) and x.flags.c_contiguous
    assert (x == split.x[:4]).all()
    big = benchmark.batch_of(split, len(split) + 2)
    assert (big[-2:] == split.x[:2]).all()


def test_drifting_latency_is_measured_again_then_flagged(params, fp32_artifact, prepared):
    lines: list[str] = []
    params["bench"]["max_cv"] = 0.0  # every measurement "drifts"
    res = benchmark.run(from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lines.append,
                        precision="fp16")
    assert res["retried"] == ["b1", "b4"] and res["unstable"] == ["b1", "b4"]
    assert sum("measuring once more" in m for m in lines) == 2
    assert sum(m.startswith("WARNING: batch") for m in lines) == 2
    params["bench"]["max_cv"] = 1e9  # nothing drifts that much
    res = benchmark.run(from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lambda m: None,
                        precision="fp16")
    assert res["retried"] == [] and res["unstable"] == []
