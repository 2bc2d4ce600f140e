import pytest

from tasks.reporting.selection import target_winner, why, winners


def row(target, precision, p50, value=97.0, accepted=True, host=None, runtime="onnxruntime", **kw):
    return {
        "key": f"{target}-{precision}",
        "target": target,
        "host": host or target,
        "runtime": runtime,
        "precision": precision,
        "latency_p50_ms": p50,
        "value": value,
        "accepted": accepted,
        **kw,
    }


def test_the_fastest_accepted_build_wins_per_device():
    rows = [
        row("jetson", "fp16", 2.0),
        row("jetson", "int8-minmax", 1.0, accepted=False),
        row("jetson", "int8-percentile", 1.5),
        row("local", "fp32", 0.5),
        row("local", "fp16", 0.7),
    ]
    w = winners(rows)
    assert {t: r["precision"] for t, r in w.items()} == {"jetson": "int8-percentile", "local": "fp32"}


def test_a_tie_goes_to_the_better_metric_and_a_device_with_nothing_accepted_has_no_winner():
    rows = [
        row("a", "fp16", 1.0, value=97.0),
        row("a", "int8-mixed", 1.0, value=97.5),
        row("b", "fp32", 1.0, accepted=False),
        row("c", "fp32", None),
    ]
    w = winners(rows)
    assert w["a"]["precision"] == "int8-mixed" and "b" not in w and "c" not in w


def test_every_runtime_on_one_device_competes_and_skipped_builds_never_win():
    rows = [
        row("local", "fp32", 0.9, host="local"),
        row("local", "int8-minmax", 0.8, host="local"),
        row("local_openvino", "fp32", 0.7, host="local", runtime="openvino"),
        row("local_openvino", "int8-minmax", 0.2, host="local", runtime="openvino"),
        row("local_openvino", "bf16", 0.1, host="local", runtime="openvino", skipped="no native bf16"),
    ]
    w = winners(rows)
    assert list(w) == ["local"] and w["local"]["key"] == "local_openvino-int8-minmax"
    assert target_winner(w, "local_openvino") is w["local"] and target_winner(w, "local") is None
    text = why(rows, w["local"])
    # the runner-up, the other runtime's best, the same runtime's fp32 and the count are named
    assert "runner-up local_openvino-fp32 0.7 ms (3.50x)" in text
    assert "best onnxruntime: local-int8-minmax 0.8 ms (4.00x)" in text
    assert "3.50x better than local_openvino-fp32" in text
    assert "4 of 4 builds accepted" in text


@pytest.mark.parametrize(
    ("by", "expected"),
    [("p50", "fast"), ("p99", "steady"), ("throughput", "wide"), ("size", "small")],
)
def test_winner_by_picks_the_criterion(by, expected):
    rows = [
        row("d", "fast", 1.0, latency_p99_ms=9.0, throughput=100.0, size_mb=4.0),
        row("d", "steady", 1.5, latency_p99_ms=2.0, throughput=90.0, size_mb=4.0),
        row("d", "wide", 2.0, latency_p99_ms=8.0, throughput=500.0, size_mb=4.0),
        row("d", "small", 3.0, latency_p99_ms=8.0, throughput=50.0, size_mb=1.0),
    ]
    w = winners(rows, by)
    assert w["d"]["precision"] == expected
    assert w["d"]["key"] in why(rows, w["d"], by)


def test_an_unknown_criterion_is_refused():
    with pytest.raises(ValueError, match="winner_by"):
        winners([row("d", "fp32", 1.0)], "fastest")
