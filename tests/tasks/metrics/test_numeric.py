"""compare(): error statistics, violations with numpy.isclose semantics, the worst element."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.metrics.numeric import compare


def test_identical_arrays_have_no_error():
    a = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    s = compare(a, a.copy(), atol=1e-6, rtol=0.0)
    assert s["max_abs"] == 0.0
    assert s["mean_abs"] == 0.0
    assert s["max_rel"] == 0.0
    assert s["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert s["violations"] == 0
    assert s["atol"] == 1e-6 and s["rtol"] == 0.0


def test_planted_error_is_found():
    ref = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    got = ref.copy()
    got[1, 2] += 0.5
    s = compare(ref, got, atol=1e-3, rtol=0.0)
    assert s["violations"] == 1
    assert s["worst_index"] == [1, 2]
    assert s["worst_ref"] == pytest.approx(float(ref[1, 2]))
    assert s["worst_got"] == pytest.approx(float(got[1, 2]))
    assert s["max_abs"] == pytest.approx(0.5, rel=1e-6)
    assert s["mean_abs"] == pytest.approx(0.5 / 12, rel=1e-6)
    assert s["max_rel"] == pytest.approx(0.5 / float(ref[1, 2]), rel=1e-6)
    assert s["cosine"] < 1.0


def test_several_violations_counted():
    ref = np.zeros((2, 5))
    got = ref.copy()
    got[0, 1], got[1, 3], got[1, 4] = 0.1, -0.3, 0.2
    s = compare(ref, got, atol=0.05, rtol=0.0)
    assert s["violations"] == 3
    assert s["worst_index"] == [1, 3]
    assert s["worst_ref"] == 0.0 and s["worst_got"] == pytest.approx(-0.3)


def test_rtol_follows_numpy_isclose():
    ref = np.array([100.0, 1.0, -50.0, 0.0])
    got = np.array([100.5, 1.5, -50.4, 1e-9])
    atol, rtol = 1e-8, 0.01
    s = compare(ref, got, atol=atol, rtol=rtol)
    # |got - ref| <= atol + rtol * |ref|, with ref as the reference (numpy.isclose(got, ref))
    assert s["violations"] == int((~np.isclose(got, ref, rtol=rtol, atol=atol)).sum()) == 1
    assert s["worst_index"] == [1]


def test_exact_tolerance_boundary_is_not_a_violation():
    s = compare(np.array([2.0]), np.array([2.5]), atol=0.5, rtol=0.0)
    assert s["violations"] == 0
    s = compare(np.array([2.0]), np.array([2.5]), atol=0.25, rtol=0.125)  # 0.25 + 0.125 * 2
    assert s["violations"] == 0


def test_worst_is_furthest_past_tolerance_not_largest_error():
    ref = np.array([1000.0, 1.0])
    got = np.array([1005.0, 1.1])  # error 5 allowed (10), error 0.1 is not (0.01)
    s = compare(ref, got, atol=0.0, rtol=0.01)
    assert s["violations"] == 1
    assert s["worst_index"] == [1]
    assert s["worst_ref"] == 1.0 and s["worst_got"] == pytest.approx(1.1)
    assert s["max_abs"] == pytest.approx(5.0)


def test_mixed_dtypes_compared_in_float64():
    ref = np.array([1.0, 2.0], dtype=np.float64)
    got = np.array([1.0, 2.0], dtype=np.float16)
    assert compare(ref, got, atol=0.0, rtol=0.0)["violations"] == 0


def test_empty_arrays_compare_clean():
    s = compare(np.zeros((0, 10), np.float32), np.zeros((0, 10), np.float32), atol=1e-4, rtol=0.0)
    assert s["violations"] == 0
    assert s["max_abs"] == 0.0 and s["mean_abs"] == 0.0 and s["max_rel"] == 0.0
    assert s["worst_index"] == []


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape mismatch"):
        compare(np.zeros((2, 3)), np.zeros((3, 2)), atol=1e-4, rtol=0.0)
