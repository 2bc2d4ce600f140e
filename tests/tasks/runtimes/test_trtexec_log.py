"""The trtexec console-output parser on every real log in tests/fixtures/trtexec (described in
SOURCES.md there), plus exact numbers read by hand from a few of them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tasks.runtimes.trtexec_log import TrtexecLog, decode_version, errors_text, parse

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "trtexec"

# file -> (status, tensorrt_version, has_summary, a substring of some error, or None for no errors)
EXPECTED: dict[str, tuple[str, str | None, bool, str | None]] = {
    "trt10.0_orin_nx_tactic_exception_fragment.log": ("incomplete", None, False, "initDeviceReservedSpace"),
    "trt10.16_h100_fp32_build_bench_ok.log": ("passed", "10.16.1", True, None),
    "trt10.16_h100_loadengine_cudagraph_verbose_ok.log": ("passed", "10.16.1", True, None),
    "trt10.16_rtx6000ada_loadengine_fp16_ok.log": ("passed", "10.16.0", True, None),
    "trt10.16_rtx6000ada_parse_plugin_not_found_fail.log": (
        "failed",
        "10.16.0",
        False,
        "Plugin not found, are the plugin name, version, and namespace correct?",
    ),
    # builder logs of implicit-INT8 builds (Python API logger): missing-scale warnings, no trtexec lines
    "trt10.1_a100_int8_calib_missing_scale_fragment.log": ("incomplete", None, False, None),
    "trt10.1_a100_int8_calib_missing_scale_onnx_names_fragment.log": ("incomplete", None, False, None),
    "trt10.3_jetson_plugin_inference_fail.log": ("failed", "10.3.0", False, "Error occurred during inference"),
    "trt10.3_orin_int8_build_header_fragment.log": ("incomplete", "10.3.0", False, None),
    "trt11.0_b200_build_skipinference_ok.log": ("passed", "11.0.0", False, None),
    "trt11.0_b200_loadengine_cudagraph_summary_tail_ok.log": ("passed", "11.0.0", True, None),
    # A PASSED build, then runs that print "Unknown option" and no end line of their own.
    "trt11.0_b200_stronglytyped_build_and_fp16_int8_unknown_option_fail.log": (
        "incomplete",
        "11.0.0",
        False,
        "Unknown option: --fp16",
    ),
    "trt8.2_cublas_internal_error_build_fail.log": ("failed", "8.2.3", False, "CUBLAS_STATUS_SUCCESS"),
    "trt8.2_gtx1070_fp16_build_fail_noerror.log": ("failed", "8.2.3", False, None),
    "trt8.2_int8_calib_missing_scale_fragment.log": ("incomplete", None, False, None),
    "trt8.4_gtx1070_fp16_build_bench_verbose_ok.log": ("passed", "8.4.1", True, None),
    "trt8.4_xavier_agx_loadengine_batch16_summary_ok.log": ("passed", "8.4.0", True, None),
    "trt8.5_could_not_find_implementation_fail.log": (
        "failed",
        "8.5.3",
        False,
        "Could not find any implementation for node",
    ),
    "trt8.5_orin_nano_fp16_summary_ok.log": ("passed", "8.5.2", True, None),
    "trt8.6_agx_orin_summary_truncated_fragment.log": ("incomplete", None, True, None),
    "trt8.6_h100_fp16_build_bench_ok.log": ("passed", "8.6.1", True, None),
    "trt8.6_int8_calib_h5_build_fail.log": ("incomplete", None, False, "quantizeBiasCommon"),
    "trt8.x_int8_calib_cache_bad_alloc_crash_fragment.log": ("incomplete", None, False, "std::bad_alloc"),
    "trt8.x_xavier_nx_summary_e2e_latency_ok.log": ("incomplete", None, True, None),
    # DLA builds: where layers ran, warnings and [I] sections only (tasks.runtimes.dla_placement reads them)
    "trt8.4_orin_dla_int8_batchnorm_layers_fragment.log": ("incomplete", None, False, None),
    "trt8.4_orin_dla_int8_groupnorm_layers_fragment.log": ("incomplete", None, False, None),
    "trt8.6_agx_orin_dla_div_reason_fragment.log": ("incomplete", None, False, None),
    "trt8.x_dla_samplenmt_no_dla_layer_fragment.log": ("incomplete", None, False, None),
    "trt8.x_jetpack5_dla_slice_concat_reason_fragment.log": ("incomplete", None, False, None),
    "trt8.x_orin_dla_fp16_constant_fallback_fragment.log": ("incomplete", None, False, None),
}


def _read(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def _log(name: str) -> TrtexecLog:
    return parse(_read(name))


def test_the_table_covers_every_fixture_and_sources_describes_each():
    assert sorted(p.name for p in FIXTURES.glob("*.log")) == sorted(EXPECTED)
    sources = _read("SOURCES.md")
    assert all(f"`{name}`" in sources for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_status_version_summary_and_errors(name):
    status, version, has_summary, error = EXPECTED[name]
    log = _log(name)
    assert (log.status, log.tensorrt_version, log.summary is not None) == (status, version, has_summary)
    if error is None:
        assert log.errors == []
    else:
        assert any(error in e for e in log.errors), log.errors
        assert errors_text(log).startswith("trtexec ")


@pytest.mark.parametrize(
    ("banner", "dotted"),
    [
        (8203, "8.2.3"),
        (8400, "8.4.0"),
        (8502, "8.5.2"),
        (8601, "8.6.1"),
        (100300, "10.3.0"),
        (101600, "10.16.0"),
        (101601, "10.16.1"),
        (110000, "11.0.0"),
    ],
)
def test_decode_version(banner, dotted):
    assert decode_version(banner) == dotted


def test_orin_nano_85_summary_numbers():
    log = _log("trt8.5_orin_nano_fp16_summary_ok.log")
    s = log.summary
    assert s is not None
    assert s["throughput_qps"] == 97.8649
    assert s["latency"] == {
        "min": 10.642,
        "max": 10.9861,
        "mean": 10.7971,
        "median": 10.7972,
        "p90": 10.9329,
        "p95": 10.949,
        "p99": 10.9744,
    }
    assert s["gpu_compute_time"]["median"] == 10.1851
    assert s["d2h_latency"]["p99"] == 0.310608
    assert (s["total_host_walltime_s"], s["total_gpu_compute_time_s"]) == (3.0348, 3.02418)
    assert log.command == "trtexec --onnx=./yolox_s_leaky.onnx --saveEngine=./fp16.trt --fp16"


def test_xavier_84_old_format_has_median_and_p99_only():
    s = _log("trt8.4_xavier_agx_loadengine_batch16_summary_ok.log").summary
    assert s is not None
    assert s["throughput_qps"] == 41087.7
    assert s["latency"] == {"min": 0.387207, "max": 0.447357, "mean": 0.402238, "median": 0.401947, "p99": 0.420288}
    assert s["gpu_compute_time"]["p99"] == 0.393188
    assert s["h2d_latency"]["median"] == 0.00952148


def test_xavier_nx_end_to_end_host_latency():
    s = _log("trt8.x_xavier_nx_summary_e2e_latency_ok.log").summary
    assert s is not None
    assert s["end_to_end_host_latency"] == {
        "min": 0.574707,
        "max": 0.606201,
        "mean": 0.586663,
        "median": 0.585938,
        "p99": 0.601685,
    }
    assert s["throughput_qps"] == 27207.0


def test_truncated_agx_orin_summary_keeps_only_complete_lines():
    s = _log("trt8.6_agx_orin_summary_truncated_fragment.log").summary
    assert s is not None
    assert set(s) == {"throughput_qps", "latency", "enqueue_time"}
    assert s["throughput_qps"] == 208.729
    assert s["enqueue_time"]["p99"] == 0.384033


def test_a_line_cut_mid_way_is_skipped_not_guessed():
    text = _read("trt8.5_orin_nano_fp16_summary_ok.log")
    cut = text.index("percentile(95%) = 0.345398")  # inside the H2D Latency line
    s = parse(text[: cut + len("percentile(95%) = 0.34")]).summary
    assert s is not None
    assert set(s) == {"throughput_qps", "latency", "enqueue_time"}
    half_throughput = parse(text[: text.index("97.8649 qps") + 4]).summary
    assert half_throughput is None
    # cut after a whole item: well-formed so far, but without mean and median it is not kept
    at_item = parse(text[: text.index("H2D Latency: min = 0.299072 ms") + len("H2D Latency: min = 0.299072 ms")])
    assert at_item.summary is not None and "h2d_latency" not in at_item.summary


def test_trt11_unknown_options_after_a_passed_build():
    log = _log("trt11.0_b200_stronglytyped_build_and_fp16_int8_unknown_option_fail.log")
    assert log.errors == [
        "Unknown option: --fp16",
        "Unknown option: --int8",
        "Unknown option: --best",
        "Unknown option: --precisionConstraints obey",
    ]
    assert log.precision == "Strongly Typed"
    assert log.build_seconds == 5.6446
    assert log.warnings_count == 2
    assert log.command is not None and log.command.endswith("--saveEngine=model-trained-stronglyTyped.trt")
    assert errors_text(log).endswith(
        "Unknown option: --fp16; Unknown option: --int8; Unknown option: --best; "
        "Unknown option: --precisionConstraints obey"
    )


def test_trt82_failure_without_any_error_line():
    log = _log("trt8.2_gtx1070_fp16_build_fail_noerror.log")
    assert (log.status, log.errors, log.build_seconds, log.summary) == ("failed", [], None, None)
    assert log.precision == "FP32+FP16"
    assert "no [E] line" in errors_text(log)


def test_bad_alloc_crash_is_incomplete_with_the_crash_lines():
    log = _log("trt8.x_int8_calib_cache_bad_alloc_crash_fragment.log")
    assert log.status == "incomplete"
    assert log.errors == ["terminate called after throwing an instance of 'std::bad_alloc'", "Aborted (core dumped)"]
    assert "std::bad_alloc" in errors_text(log)


def test_h100_86_build_with_nohup_line_garbled_line_and_unstable_warning():
    log = _log("trt8.6_h100_fp16_build_bench_ok.log")
    assert log.command is not None and log.command.startswith("/usr/local/TensorRT-8.6.1.6/bin/trtexec --onnx=")
    assert (log.precision, log.build_seconds) == ("FP32+FP16", 1033.79)
    assert log.warnings_count == 8
    assert log.warnings == ["GPU compute time is unstable, with coefficient of variance = 25.6499%."]
    assert log.summary is not None and log.summary["latency"]["median"] == 3.09521


def test_h100_1016_fp32_build():
    log = _log("trt10.16_h100_fp32_build_bench_ok.log")
    assert (log.precision, log.build_seconds) == ("FP32", 8.09138)
    assert log.warnings == ["GPU compute time is unstable, with coefficient of variance = 6.58751%."]
    assert log.summary is not None and log.summary["throughput_qps"] == 15374.3


def test_blank_line_after_every_line_and_zero_transfers():
    log = _log("trt10.16_rtx6000ada_loadengine_fp16_ok.log")
    assert log.status == "passed"
    assert log.summary is not None
    assert log.summary["throughput_qps"] == 25530.7
    assert log.summary["h2d_latency"] == dict.fromkeys(["min", "max", "mean", "median", "p90", "p95", "p99"], 0.0)
    assert log.summary["latency"]["p99"] == 0.0470581
    assert log.precision is None and log.build_seconds is None  # a loaded engine, no build


def test_verbose_explanations_after_the_summary_are_not_read_as_numbers():
    s = _log("trt10.16_h100_loadengine_cudagraph_verbose_ok.log").summary
    assert s is not None
    assert (s["throughput_qps"], s["total_host_walltime_s"], s["total_gpu_compute_time_s"]) == (
        24896.9,
        3.00005,
        2.89541,
    )


def test_trt11_summary_followed_by_cuda_graph_lines():
    log = _log("trt11.0_b200_loadengine_cudagraph_summary_tail_ok.log")
    assert log.summary is not None and log.summary["gpu_compute_time"]["p95"] == 0.0405273
    assert log.command == (
        "trtexec --loadEngine=./model-trained-reference.trt --exportProfile=./model-trained-reference-exportProfile.json"
    )


def test_onnx_parser_error_keeps_its_continuation_and_errors_text_quotes_the_cause():
    log = _log("trt10.16_rtx6000ada_parse_plugin_not_found_fail.log")
    assert (
        "[TRT] ModelImporter.cpp:149: ERROR: onnxOpCheckers.cpp:923 In function checkFallbackPluginImporter: "
        '[6] creator && "Plugin not found, are the plugin name, version, and namespace correct?"'
    ) in log.errors
    assert log.errors[-1] == "Engine set up failed"
    text = errors_text(log)
    assert text.startswith("trtexec failed: ") and "Plugin not found" in text
    assert "Engine set up failed" not in text  # generic follow-up lines give way to the cause


def test_errors_text_puts_the_cause_before_the_generic_follow_up_lines():
    log = _log("trt8.2_cublas_internal_error_build_fail.log")
    assert errors_text(log) == (
        "trtexec failed: "
        "Error[2]: [ltWrapper.cpp::setupHeuristic::327] Error Code 2: Internal Error "
        "(Assertion cublasStatus == CUBLAS_STATUS_SUCCESS failed. ); "
        "Error[2]: [builder.cpp::buildSerializedNetwork::609] Error Code 2: Internal Error "
        "(Assertion enginePtr != nullptr failed. ) (+4 more error lines in the log)"
    )


def test_errors_text_quotes_at_most_five_lines():
    text = "".join(f"[01/01/2024-00:00:00] [E] problem {i}\n" for i in range(7))
    msg = errors_text(parse(text + "&&&& FAILED TensorRT.trtexec [TensorRT v8601] # trtexec\n"))
    assert (
        msg == "trtexec failed: problem 0; problem 1; problem 2; problem 3; problem 4 (+2 more error lines in the log)"
    )


def test_crlf_and_leading_noise_parse_like_the_plain_text():
    text = _read("trt8.5_orin_nano_fp16_summary_ok.log")
    assert parse("nohup: ignoring input\r\n" + text.replace("\n", "\r\n")) == parse(text)


def test_output_after_the_end_line_makes_the_log_incomplete():
    passed = "&&&& PASSED TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=a.onnx\n"
    assert parse(passed).status == "passed"
    assert (
        parse(passed + "&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=b.onnx\n").status
        == "incomplete"
    )
    assert parse(passed + "Segmentation fault (core dumped)\n").errors == ["Segmentation fault (core dumped)"]


def test_garbled_error_line_is_still_an_error():
    line = "progress 45%[05/19/2023-14:42:31] [05/19/2023-14:42:33] [E] Error[2]: boom\n"
    assert parse(line).errors == ["Error[2]: boom"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_never_raises_on_truncated_fixtures(name):
    text = _read(name)
    for cut in range(0, len(text), max(1, len(text) // 40)):
        assert isinstance(parse(text[:cut]), TrtexecLog)


def test_never_raises_on_garbage():
    rng = random.Random(0)
    samples = [
        "",
        "\x00",
        "&&&&",
        "&&&& PASSED TensorRT.trtexec [TensorRT v] #",
        "[E]",
        "[I] === Performance summary ===",
        "&&&& RUNNING TensorRT.trtexec [TensorRT v99999999999999999999999] # x",
        "&&&& FAILED TensorRT.trtexec [TensorRT v" + "9" * 5000 + "] # x",
        "[01/01/2024-00:00:00] [I] === Performance summary ===\n[I] Throughput: " + "9" * 5000 + " qps",
        "[01/01/2024-00:00:00] [I] === Performance summary ===\n[01/01/2024-00:00:00] [I] Throughput: 1e999 qps",
        "[01/01/2024-00:00:00] [I] === Performance summary ===\n[I] Latency: min = ms, max = , percentile(%) = 1 ms",
    ]
    samples += [bytes(rng.randrange(256) for _ in range(2000)).decode("latin-1") for _ in range(20)]
    for text in samples:
        log = parse(text)
        assert log.status in {"passed", "failed", "incomplete"}
        assert isinstance(errors_text(log), str)


def test_measurement_warnings_are_deduplicated_but_all_counted():
    line = "[01/01/2024-00:00:00] [W] * GPU compute time is unstable, with coefficient of variance = 7%.\n"
    hint = "[01/01/2024-00:00:00] [W]   If not already in use, locking GPU clock frequency may help.\n"
    log = parse(line + hint + line)
    assert log.warnings == ["GPU compute time is unstable, with coefficient of variance = 7%."]
    assert log.warnings_count == 3


def test_int8_fallback_warnings_give_each_tensor_once_in_log_order():
    log = _log("trt8.2_int8_calib_missing_scale_fragment.log")
    assert log.int8_fallbacks == [f"(Unnamed Layer* {n}) [Constant]_output" for n in (77, 85, 152, 163)]
    assert log.warnings_count == 4 and log.errors == [] and log.warnings == []
    names = _log("trt10.1_a100_int8_calib_missing_scale_onnx_names_fragment.log").int8_fallbacks
    assert names == [
        "(Unnamed Layer* 117) [ElementWise]_output",
        "/embeddings/CumSum_output_0",
        "/embeddings/Mul_output_0",
        "/embeddings/Cast_1_output_0",
        "/embeddings/Constant_2_output_0_output",
        "ONNXTRT_Broadcast_97_output",
    ]
    assert _log("trt10.1_a100_int8_calib_missing_scale_fragment.log").int8_fallbacks == ["input_ids", "attention_mask"]


def test_int8_fallback_warnings_in_trtexec_order_and_repeated():
    """trtexec's logger prints "[W] [TRT] message" (the fixtures' Python logger "[TRT] [W]"); a
    tensor warned about twice (a second builder pass) is listed once."""
    text = _read("trt8.2_int8_calib_missing_scale_fragment.log").replace("[TRT] [W]", "[W] [TRT]")
    log = parse(text + text)
    assert log.int8_fallbacks == [f"(Unnamed Layer* {n}) [Constant]_output" for n in (77, 85, 152, 163)]
    assert all(parse(f).int8_fallbacks == [] for f in (_read(n) for n in EXPECTED if "missing_scale" not in n))
