"""trtexec's own benchmark figure on the host: the agent's ``trtexec`` answer read into metrics
(``tensorrt_rt.trtexec_figures``), from real trtexec logs (tests/fixtures/trtexec)."""

from __future__ import annotations

import pytest

from tasks.agent.agent import TRTEXEC_DEFAULTS, TRTEXEC_SETTINGS
from tasks.runtimes.base import BuildError
from tasks.runtimes.tensorrt_rt import trtexec_figures
from tests.fakes import TRTEXEC_FIXTURES

ARGV = ["trtexec", "--loadEngine=/w/model.engine", "--shapes=x:1x1x28x28"]


def answer(log: str, exit_code: int = 0, version: str = "10.16.1") -> dict:
    """An agent answer for one batch size, its log a fixture's text."""
    major = 11 if version.startswith("11") else 10
    return {
        "tensorrt": version,
        "defaults": TRTEXEC_DEFAULTS[major],
        "settings": TRTEXEC_SETTINGS,
        "runs": {"b1": {"argv": ARGV, "exit_code": exit_code, "log": (TRTEXEC_FIXTURES / log).read_text()}},
    }


def test_a_passing_run_gives_its_whole_summary():
    b1 = trtexec_figures(answer("trt10.16_h100_loadengine_cudagraph_verbose_ok.log"), "h100")["b1"]
    assert b1["throughput_qps"] == 24896.9 and b1["latency"]["median"] == 0.0388184
    assert b1["gpu_compute_time"]["p99"] == 0.0390625 and b1["h2d_latency"]["max"] == 0
    assert b1["enqueue_time"]["mean"] == 0.00197413 and b1["total_host_walltime_s"] == 3.00005
    assert b1["tensorrt"] == "10.16.1" and b1["argv"] == ARGV and b1["warnings"] == []
    assert b1["defaults"]["data_transfers"] is True and b1["settings"]["cuda_graph"] is False


def test_the_older_summary_format_has_fewer_percentiles_never_made_up():
    b1 = trtexec_figures(answer("trt8.4_xavier_agx_loadengine_batch16_summary_ok.log", version="8.4.0"), "xavier")["b1"]
    assert b1["latency"] == {"min": 0.387207, "max": 0.447357, "mean": 0.402238, "median": 0.401947, "p99": 0.420288}
    assert b1["tensorrt"] == "8.4.0"


@pytest.mark.parametrize(
    "log, exit_code, problem",
    [
        ("trt10.3_jetson_plugin_inference_fail.log", 1, "exited with code 1"),
        ("trt8.6_agx_orin_summary_truncated_fragment.log", 0, "printed no &&&& PASSED line"),
        ("trt11.0_b200_build_skipinference_ok.log", 0, "printed no Performance summary"),
    ],
)
def test_a_run_without_a_summary_is_an_error_naming_the_command(log, exit_code, problem):
    with pytest.raises(BuildError) as e:
        trtexec_figures(answer(log, exit_code), "orin")
    assert str(e.value).startswith(f"orin: trtexec --loadEngine (TensorRT 10.16.1) {problem} for batch 1; ")
    assert "command: trtexec --loadEngine=/w/model.engine --shapes=x:1x1x28x28" in str(e.value)


def test_a_skipped_batch_size_says_why():
    raw = answer("trt10.16_rtx6000ada_loadengine_fp16_ok.log")
    raw["runs"]["b32"] = {"skipped": "batch 32 is outside the engine's optimisation profile"}
    figures = trtexec_figures(raw, "orin")
    assert figures["b32"]["skipped"].startswith("batch 32") and "latency" not in figures["b32"]
    assert figures["b1"]["latency"]["median"] == 0.0368652


def test_a_failure_above_batch_1_hints_at_the_optimisation_profile():
    raw = answer("trt10.3_jetson_plugin_inference_fail.log", exit_code=1)
    raw["runs"] = {"b32": {**raw["runs"]["b1"], "argv": [*ARGV[:2], "--shapes=x:32x1x28x28"]}}
    with pytest.raises(BuildError, match=r"for batch 32; .*\n  command: .*32x1x28x28\n  hint: .*optimisation profile"):
        trtexec_figures(raw, "orin")
