"""tasks.quant.calibrators: ORT's calibrators, streamed one batch per collect_data call."""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from tasks.data.split import Split
from tasks.quant import CALIBRATORS, QuantError, calibrate, get_calibrator
from tests.tasks.quant.conftest import TEST_ENTROPY_BINS, calib_batches, elementwise_model, save

METHODS = ["entropy", "minmax", "percentile"]


def one_call(model: Path, method: str, x: np.ndarray, input_name: str, **options) -> dict:
    """ORT's calibrator fed the whole set ``x`` in a single collect_data call (the reference)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    class Reader:
        def __init__(self) -> None:
            self.feeds = iter([{input_name: x}])

        def get_next(self):
            return next(self.feeds, None)

    with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory() as td:
        cal = create_calibrator(
            model,
            None,
            augmented_model_path=str(Path(td) / "augmented.onnx"),
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options=options,
        )
        cal.collect_data(Reader())
        data = cal.compute_data()
    return {k: tuple(float(np.asarray(v).reshape(-1)[0]) for v in td.range_value) for k, td in data.items()}


def amax(r) -> float:
    return max(abs(r[0]), abs(r[1]))


def test_registry_has_the_three_methods():
    assert CALIBRATORS.names() == METHODS
    assert get_calibrator("entropy").trt_algorithm == "EntropyCalibration2"
    assert get_calibrator("minmax").trt_algorithm == "MinMaxCalibration"
    with pytest.raises(QuantError, match="unknown calibrator 'kl'; registered: entropy, minmax, percentile"):
        get_calibrator("kl")


@pytest.mark.parametrize("method", METHODS)
def test_each_calibrator_gives_a_range_for_every_float_tensor(case, ranges, method):
    r = ranges[method]
    graph = onnx.load(str(case.model)).graph
    assert set(r) == {"input"} | {o for n in graph.node for o in n.output}
    for name, (lo, hi) in r.items():
        assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi, (name, lo, hi)
        assert isinstance(lo, float) and isinstance(hi, float)
    relu_outputs = [n.output[0] for n in graph.node if n.op_type == "Relu"]
    assert relu_outputs and all(r[t][0] == 0.0 and r[t][1] > 0 for t in relu_outputs)


def test_minmax_is_the_exact_extremes_of_the_input(case, ranges):
    x = np.asarray(Split(case.calib).x)
    assert ranges["minmax"]["input"] == (float(x.min()), float(x.max()))


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_are_narrower_or_equal_to_minmax(ranges, method):
    mm, r = ranges["minmax"], ranges[method]
    assert set(r) == set(mm)
    for name in mm:
        eps = 1e-6 * max(1.0, amax(mm[name]))
        assert r[name][0] >= mm[name][0] - eps and r[name][1] <= mm[name][1] + eps, (name, r[name], mm[name])
    assert any(amax(r[n]) < amax(mm[n]) * 0.999 for n in mm), "the method clipped nothing at all"


def test_percentile_is_configurable(case, ranges):
    mm = ranges["minmax"]
    p100 = calibrate(case.model, calib_batches(case), "percentile", input_name="input", percentile=100.0)
    p99 = calibrate(case.model, calib_batches(case), "percentile", input_name="input", percentile=99.0)
    for name in mm:
        # ORT reports the left edge of the bin where the CDF reaches the percentile: within one bin of max
        assert amax(mm[name]) - amax(mm[name]) / 2048 * 1.001 <= amax(p100[name]) <= amax(mm[name]) * (1 + 1e-6)
        assert amax(p99[name]) <= amax(ranges["percentile"][name]) * (1 + 1e-6)
    assert sum(amax(p99[n]) < amax(p100[n]) for n in mm) >= len(mm) // 2
    with pytest.raises(QuantError, match="percentile must be in"):
        calibrate(case.model, calib_batches(case), "percentile", input_name="input", percentile=0.0)


def test_minmax_streamed_with_a_short_last_batch_equals_one_call_on_the_whole_set(case):
    x = np.ascontiguousarray(Split(case.calib).x)
    reference = one_call(case.model, "MinMax", x, "input")
    for batch_size in (12, 5):  # 32 samples: 12, 12, 8 and 5 x 6 + 2
        assert calibrate(case.model, calib_batches(case, batch_size), "minmax", input_name="input") == reference


def test_histogram_methods_streamed_equal_one_call_when_the_first_batch_holds_the_extremes(tmp_path):
    """ORT anchors a histogram's bins on the first collect_data call and widens it for later, wider
    batches; with the extremes (and a zero) in the first batch, no widening happens and streaming
    must reproduce the single-call histograms: same entropy threshold, percentile within one bin."""
    model = save(elementwise_model(), tmp_path / "elementwise.onnx")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 16)).astype(np.float32)
    x[0, :3] = [5.0, -5.5, 0.0]
    batches = [x[0:16], x[16:32], x[32:40]]  # a short last batch too
    streamed = calibrate(model, iter(batches), "entropy", input_name="x", num_bins=TEST_ENTROPY_BINS)
    reference = one_call(model, "Entropy", x, "x", num_bins=TEST_ENTROPY_BINS, num_quantized_bins=128)
    assert streamed == reference
    streamed = calibrate(model, iter(batches), "percentile", input_name="x")
    reference = one_call(model, "Percentile", x, "x", num_bins=2048, percentile=99.99, symmetric=True)
    assert set(streamed) == set(reference) == {"x", "r", "n", "y"}
    for name, (lo, hi) in reference.items():
        bin_width = amax((lo, hi)) / 2048
        assert abs(streamed[name][0] - lo) <= bin_width and abs(streamed[name][1] - hi) <= bin_width


def test_streaming_merges_later_wider_batches_and_op_types_limits_the_tensors(tmp_path):
    """Merging across calls: later batches with a wider spread (and most of the data) must widen
    every method's range; ``op_types`` restricts calibration to those ops' inputs and outputs."""
    model = save(elementwise_model(), tmp_path / "elementwise.onnx")
    rng = np.random.default_rng(1)
    narrow = rng.uniform(-2, 2, (8, 16)).astype(np.float32)
    wide = [rng.uniform(-5, 5, (8, 16)).astype(np.float32) for _ in range(3)]
    for method, at_least in (("minmax", float(np.abs(wide).max())), ("percentile", 4.5), ("entropy", 3.0)):
        kw = {"num_bins": 256} if method == "entropy" else {}
        r = calibrate(model, iter([narrow, *wide]), method, input_name="x", op_types=["Relu"], **kw)
        assert set(r) == {"x", "r"}
        assert amax(r["x"]) >= at_least, (method, r["x"])


def test_a_batch_of_the_wrong_shape_names_both_shapes(case):
    good = next(calib_batches(case))
    with pytest.raises(
        QuantError,
        match=r"batch 1 has shape \(4, 3, 28, 28\); model input 'input' expects "
        r"\(\?, 1, 28, 28\)",
    ):
        calibrate(case.model, iter([good, np.zeros((4, 3, 28, 28), np.float32)]), "minmax", input_name="input")
    with pytest.raises(QuantError, match=r"shape \(28, 28\)"):
        calibrate(case.model, iter([np.zeros((28, 28), np.float32)]), "minmax", input_name="input")
    with pytest.raises(QuantError, match="dtype float64"):
        calibrate(case.model, iter([good.astype(np.float64)]), "minmax", input_name="input")


def test_an_empty_calibration_set_is_a_clear_error(case):
    for batches in (iter([]), iter([np.zeros((0, 1, 28, 28), np.float32)])):
        with pytest.raises(QuantError, match="calibration set is empty"):
            calibrate(case.model, batches, "entropy", input_name="input")


def test_an_unknown_input_name_lists_the_model_inputs(case):
    with pytest.raises(QuantError, match="no model input named 'images'; its inputs: input"):
        calibrate(case.model, calib_batches(case), "minmax", input_name="images")
