"""Three-way parity and its building blocks, on hand-checkable arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config.schema import ArtifactTolerance
from tasks.metrics.numeric import histogram, worst_elements
from tasks.metrics.three_way import three_way


def test_worst_elements_are_the_largest_differences_in_order():
    ref = np.zeros((2, 3), np.float32)
    got = np.array([[0.1, -0.5, 0.0], [0.3, 0.0, 0.2]], np.float32)
    w = worst_elements(ref, got, n=3)
    assert [e["index"] for e in w] == [[0, 1], [1, 0], [1, 2]]
    assert [e["abs_diff"] for e in w] == pytest.approx([0.5, 0.3, 0.2])
    assert w[0]["got"] == pytest.approx(-0.5) and w[0]["ref"] == 0.0


def test_histogram_counts_every_element_once_including_exact_matches():
    ref = np.zeros(6)
    got = np.array([0.0, 0.0, 1e-6, 1e-3, 0.5, 2.0])
    h = histogram(ref, got, bins=4, low=1e-7)
    assert h["edges"][0] == 0.0 and h["edges"][1] == pytest.approx(1e-7) and h["edges"][-1] >= 2.0
    assert len(h["counts"]) == 4 and sum(h["counts"]) == 6
    assert h["counts"][0] == 2  # the two exact matches fall in [0, 1e-7)
    assert h["counts"][-1] >= 1  # the largest difference is inside the last bin


def test_three_way_judges_only_the_onnx_to_artifact_leg():
    torch_out = {"y": np.array([1.0, 2.0, 3.0, 4.0])}
    onnx_out = {"y": np.array([1.5, 2.0, 3.0, 4.0])}  # the precision moved one element by 0.5
    artifact = {"y": np.array([1.5, 2.0, 3.0, 4.2])}  # the runtime moved another by 0.2
    tol = ArtifactTolerance(atol=0.1, rtol=0.0, max_outside=0.0)
    par = three_way(torch_out, onnx_out, artifact, lambda name: tol, bins=4)
    legs = par["legs"]
    assert legs["torch_onnx"]["y"]["max_abs"] == pytest.approx(0.5)
    assert legs["onnx_artifact"]["y"]["max_abs"] == pytest.approx(0.2)
    assert legs["onnx_artifact"]["y"]["worst_index"] == [3]
    assert legs["torch_artifact"]["y"]["violations"] == 2 and legs["onnx_artifact"]["y"]["outside_fraction"] == 0.25
    assert par["failed"] == ["y"] and "y[3] onnx=4 artifact=4.2" in par["worst"]
    # a quarter of the elements outside is allowed with max_outside 0.25, not with 0.24
    assert three_way(torch_out, onnx_out, artifact, lambda n: ArtifactTolerance(0.1, 0.0, 0.25))["failed"] == []
    assert three_way(torch_out, onnx_out, artifact, lambda n: ArtifactTolerance(0.1, 0.0, 0.24))["failed"] == ["y"]
    # rtol scales with |onnx|: 0.2 <= 0.0 + 0.06 * 4.0
    assert three_way(torch_out, onnx_out, artifact, lambda n: ArtifactTolerance(0.0, 0.06, 0.0))["failed"] == []
