"""Stage benchmark: latency statistics per batch size, with and without the PyTorch baseline."""

from __future__ import annotations

import pytest

from tasks import benchmark
from tasks.config import Config, from_dict
from tasks.data.split import Split

STATS = {
    "iterations",
    "min_ms",
    "mean_ms",
    "max_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "throughput",
    "cv",
    "cv_windows",
}


def _check_latency(lat: dict, cfg: Config) -> None:
    assert set(lat) == {"b1", "b4"}
    for stats in lat.values():
        assert set(stats) == STATS
        assert stats["iterations"] >= cfg.bench.min_iterations
        assert (
            0
            < stats["min_ms"]
            <= stats["p50_ms"]
            <= stats["p90_ms"]
            <= stats["p95_ms"]
            <= stats["p99_ms"]
            <= stats["max_ms"]
        )
        assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"]
        assert stats["throughput"] > 0 and stats["cv"] >= 0 and stats["cv_windows"] >= 0


def test_run_with_and_without_torch_baseline(params, cfg, fp32_artifact, prepared):
    lines: list[str] = []
    res = benchmark.run(cfg, "local", fp32_artifact, prepared / "eval", log=lines.append).to_json()
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
    # batch 1 end to end, split, beside the compute-only p50 (tests/tasks/test_end_to_end.py for the parts)
    e2e = res["end_to_end"]
    assert all(e2e[f"{p}_ms"] > 0 for p in ("preprocess", "input_copy", "compute", "output_copy", "decode", "total"))
    assert "argmax" in e2e["what"]["decode"] and "no meta.npy" in e2e["what"]["image"]
    assert any(line.startswith("end to end (batch 1):") and "compute-only p50" in line for line in lines)

    # measured once per target, by the FP32 benchmark: other precisions do not repeat it
    res = benchmark.run(cfg, "local", fp32_artifact, prepared / "eval", log=lambda m: None, precision="fp16").to_json()
    _check_latency(res["latency"], cfg)
    assert "torch" not in res and "speedup_vs_torch" not in res

    params["bench"].update(torch_baseline=False, end_to_end=False)
    res = benchmark.run(
        from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lambda m: None
    ).to_json()
    _check_latency(res["latency"], cfg)
    assert "torch" not in res
    assert "speedup_vs_torch" not in res
    assert "end_to_end" not in res


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
    res = benchmark.run(
        from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lines.append, precision="fp16"
    ).to_json()
    assert res["retried"] == ["b1", "b4"] and res["unstable"] == ["b1", "b4"]
    assert sum("measuring once more" in m for m in lines) == 2
    assert sum(m.startswith("WARNING: batch") for m in lines) == 2
    params["bench"]["max_cv"] = 1e9  # nothing drifts that much
    res = benchmark.run(
        from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lambda m: None, precision="fp16"
    ).to_json()
    assert res["retried"] == [] and res["unstable"] == []


def test_scenarios_roofline_and_latency_budget(params, fp32_artifact, exported, prepared):
    from tasks.metrics.flops import count_flops

    params["bench"].update(offline_batch_sizes=[4, 8], torch_baseline=False)
    lines: list[str] = []
    # the peak record peak@local writes; measured far above, nominal far below what runs here
    peak = {
        "nominal": {"fp32": {"gflops": 1e-6, "basis": "tiny"}, "int8": {"gflops": None, "basis": "unknown clock"}},
        "measured": {"fp32": {"gflops": 1e9, "runtime_precision": "fp32"}, "int8": {"skipped": "no kernel"}},
    }

    def bench(precision="fp32", log=lambda m: None):
        cfg = from_dict(Config, params)
        return benchmark.run(
            cfg, "local", fp32_artifact, prepared / "eval", log, precision, onnx_path=exported, peak=peak
        ).to_json()

    res = bench(log=lines.append)
    assert set(res["latency"]) == {"b1", "b4", "b8"}
    ss = res["single_stream"]
    assert (
        ss["p50_ms"] == res["latency"]["b1"]["p50_ms"] <= ss["p90_ms"] <= ss["p99_ms"] == res["latency"]["b1"]["p99_ms"]
    )
    assert set(res["offline"]) == {"b4", "b8"}
    assert res["offline"]["b8"]["throughput"] == res["latency"]["b8"]["throughput"]
    # roofline: FLOPs of the graph x samples/s, against the measured and nominal peaks of the family
    flops = count_flops(exported)["per_sample"]
    roof = res["roofline"]
    assert roof["flops_per_sample"] == flops and roof["family"] == "fp32"
    assert roof["measured_peak"]["gflops"] == 1e9
    for bs in ("b1", "b4", "b8"):
        assert roof["gflops"][bs] == pytest.approx(flops * res["latency"][bs]["throughput"] / 1e9)
        assert roof["efficiency_measured"][bs] == pytest.approx(roof["gflops"][bs] / 1e9)
        # above the (wrong) nominal peak: no efficiency, an error naming the peak instead
        assert roof["efficiency_nominal"][bs] is None
    assert "exceeds the nominal fp32 peak" in roof["efficiency_error"]
    assert any(line.startswith("roofline:") and "of measured fp32 peak" in line for line in lines)
    assert any(line.startswith("WARNING: roofline:") for line in lines)
    assert res["accepted"] is True and res["max_p99_ms"] is None
    # the user's override replaces the nominal peak; a family with no peak gets no efficiency
    params["target"]["local"]["peak_gflops"] = {"fp32": 1e9}
    res = bench()
    assert "user override" in res["roofline"]["nominal_peak"]["basis"] and res["roofline"]["efficiency_error"] is None
    res8 = bench("int8-minmax")
    roof8 = res8["roofline"]
    assert roof8["family"] == "int8" and roof8["efficiency_nominal"] is None and roof8["efficiency_measured"] is None

    # a budget below the measured p99 rejects the build, naming both figures
    params["bench"]["max_p99_ms"] = 1e-6
    res = benchmark.run(
        from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lines.append
    ).to_json()
    assert res["accepted"] is False and "bench.max_p99_ms 1e-06" in res["reason"]
    assert f"p99 {res['single_stream']['p99_ms']:.3g} ms" in res["reason"]
    params["bench"]["max_p99_ms"] = 1e6
    assert (
        benchmark.run(
            from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lambda m: None
        ).to_json()["accepted"]
        is True
    )


def test_offline_only(params, fp32_artifact, prepared):
    params["bench"].update(single_stream=False, offline_batch_sizes=[4], torch_baseline=False)
    res = benchmark.run(
        from_dict(Config, params), "local", fp32_artifact, prepared / "eval", log=lambda m: None
    ).to_json()
    assert set(res["latency"]) == {"b4"} and "single_stream" not in res and set(res["offline"]) == {"b4"}
