"""tasks.quant.kl_search returns exactly what ONNX Runtime's own entropy threshold search returns."""

from __future__ import annotations

import numpy as np
import pytest
from onnxruntime.quantization.calibrate import HistogramCollector

from tasks.quant.kl_search import entropy_threshold, faster_entropy_search


def _ort(histogram, n=128):
    collector = HistogramCollector(
        "entropy", symmetric=False, num_bins=histogram[0].size, num_quantized_bins=n, percentile=99.99, scenario="same"
    )
    return HistogramCollector.get_entropy_threshold(collector, histogram, n)


def _histogram(values: np.ndarray, bins: int):
    values = values.astype(np.float32)
    t = np.float32(np.abs(values).max())
    hist, edges = np.histogram(values, bins, range=(-t, t))
    return hist, edges.astype(np.float32), values.min(), values.max(), t


CASES = {
    "gaussian": lambda r: r.normal(0, 1, 200_000),
    "relu with outliers": lambda r: np.concatenate([np.maximum(r.normal(0, 1, 100_000), 0), r.uniform(20, 40, 30)]),
    "sparse": lambda r: np.round(r.normal(0, 3, 50_000)),  # most bins empty
    "heavy tail": lambda r: r.standard_t(2, 100_000),
}


@pytest.mark.parametrize("bins", [2048, 513, 1000])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_threshold_as_onnxruntime(case, bins):
    h = _histogram(CASES[case](np.random.default_rng(bins)), bins)
    ours, theirs = entropy_threshold(h, 128), _ort(h)
    assert ours == theirs and all(a.dtype == b.dtype for a, b in zip(ours, theirs))


def test_real_activation_histograms_from_the_case_model(case):
    """Histograms ORT's calibrator collected from the model's activations, streamed in batches."""
    from tasks.quant import calibrate
    from tests.tasks.quant.conftest import calib_batches

    captured = []
    original = HistogramCollector.get_entropy_threshold

    def capture(self, histogram, n):
        captured.append((histogram, n))
        return original(self, histogram, n)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tasks.quant.calibrators.faster_entropy_search", _no_patch)
        mp.setattr(HistogramCollector, "get_entropy_threshold", capture)
        calibrate(case.model, calib_batches(case), "entropy", input_name="input", num_bins=512)
    assert len(captured) > 5
    for histogram, n in captured:
        assert entropy_threshold(histogram, n) == original(None, histogram, n)


def test_the_patch_is_scoped():
    original = HistogramCollector.get_entropy_threshold
    with faster_entropy_search():
        assert HistogramCollector.get_entropy_threshold is not original
    assert HistogramCollector.get_entropy_threshold is original


def _no_patch():
    import contextlib

    return contextlib.nullcontext()
