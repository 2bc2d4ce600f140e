"""tasks.quant.sensitivity and tasks.quant.mixed on a model with one clearly sensitive layer
(``outlier_mlp``: INT8 of ``head`` collapses accuracy, the others cost nothing). Labels are the
FP32 model's own confident predictions (top-2 margin > 1), so FP32 scores 100% and every point
lost is quantization's, not a coin flip between near-tied classes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tasks.quant import QuantError, calibrate, quantize_qdq
from tasks.quant.mixed import max_kept_for, search
from tasks.quant.sensitivity import fake_quant_weight, local_sqnr, one_at_a_time, plot, rank
from tests.tasks.quant.conftest import outlier_mlp, save

LAYERS = ["first", "wide", "head"]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlp")
    path = save(outlier_mlp(), root / "mlp.onnx")
    x = np.random.default_rng(1).normal(0, 1, (2000, 8)).astype(np.float32)
    logits = np.sort(_run(path, x), axis=1)
    x = x[logits[:, -1] - logits[:, -2] > 1.0][:400]
    assert len(x) == 400
    labels = _run(path, x).argmax(1)
    assert len(set(labels.tolist())) >= 3  # the task is not trivial
    ranges = calibrate(path, (x[i : i + 100] for i in range(0, 400, 100)), "minmax", input_name="x")
    return path, x, labels, ranges


def _run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _score(x, labels):
    return lambda path: float((_run(path, x).argmax(1) == labels).mean() * 100)


def test_fake_quant_weight_is_symmetric_per_channel_int8():
    w = np.array([[1.0, -0.5, 0.25], [100.0, 3.0, -7.0]], np.float32)
    q = fake_quant_weight(w, axis=0)
    assert np.allclose(q[0], [1.0, -0.5039370, 0.2519685], atol=1e-6)  # scale 1/127 for row 0
    assert q[1, 0] == pytest.approx(100.0) and abs(q[1, 1] - 3.0) <= 100 / 127 / 2
    per_tensor = fake_quant_weight(w, axis=None)
    assert per_tensor[0, 2] == 0.0  # 0.25 < half a step of 100/127: lost without per-channel scales


def test_local_sqnr_finds_the_layer_whose_input_range_is_blown(mlp):
    path, x, _, ranges = mlp
    s = local_sqnr(path, ranges, (x[i : i + 64] for i in range(0, 256, 64)), input_name="x")
    assert list(s) == LAYERS and all(v["input_quantized"] for v in s.values())
    assert s["head"]["sqnr_db"] < 10 < min(s["first"]["sqnr_db"], s["wide"]["sqnr_db"])
    assert min(s["first"]["cosine"], s["wide"]["cosine"]) > 0.99 > s["head"]["cosine"]


def test_one_at_a_time_measures_each_layers_task_drop(mlp):
    path, x, labels, ranges = mlp
    seen = []
    d = one_at_a_time(
        path, ranges, _score(x, labels), 100.0, progress=lambda i, n, node, drop: seen.append((i, n, node))
    )
    assert seen == [(1, 3, "first"), (2, 3, "wide"), (3, 3, "head")]
    # against the 0.5-point budget, not a size: how far the planted layer falls depends on the CPU's INT8 kernels
    assert d["head"]["drop"] > 0.5 >= max(d["first"]["drop"], d["wide"]["drop"])
    assert d["head"]["metric"] == pytest.approx(100.0 - d["head"]["drop"])


def test_rank_orders_by_task_drop_then_sqnr():
    sqnr = {
        "a": {"op_type": "Conv", "sqnr_db": 30.0, "cosine": 1.0},
        "b": {"op_type": "Conv", "sqnr_db": 20.0, "cosine": 1.0},
        "c": {"op_type": "Gemm", "sqnr_db": 40.0, "cosine": 1.0},
        "d": {"op_type": "Gemm", "sqnr_db": None, "cosine": 1.0},
    }
    assert [r["node"] for r in rank(sqnr)] == ["b", "a", "c", "d"]  # SQNR only: lowest first, exact last
    drops = {
        "a": {"drop": 0.0, "metric": 90.0},
        "b": {"drop": 0.0, "metric": 90.0},
        "c": {"drop": 5.0, "metric": 85.0},
        "d": {"drop": -0.2, "metric": 90.2},
    }
    rows = rank(sqnr, drops)
    assert [(r["node"], r["rank"]) for r in rows] == [("c", 1), ("b", 2), ("a", 3), ("d", 4)]
    assert rows[0]["drop"] == 5.0 and rows[0]["sqnr_db"] == 40.0


def test_mixed_search_keeps_the_sensitive_layer_and_nothing_else(mlp, tmp_path):
    path, x, labels, ranges = mlp
    score = _score(x, labels)
    rows = rank(local_sqnr(path, ranges, [x[:128]], input_name="x"), one_at_a_time(path, ranges, score, 100.0))
    assert rows[0]["node"] == "head"

    def try_plan(kept):
        out = tmp_path / f"plan{len(kept)}.onnx"
        quantize_qdq(path, ranges, out, nodes_to_exclude=kept or None)
        return 100.0 - score(out)

    plan = search([r["node"] for r in rows], try_plan, max_drop=0.5, max_kept=max_kept_for(3, 0.5))
    assert plan["accepted"] and plan["kept"] == ["head"] and plan["reason"] == ""
    assert [t["kept"] for t in plan["trials"]] == [0, 1]
    assert plan["trials"][0]["drop"] > 0.5 >= plan["drop"]


def test_mixed_search_rejects_when_no_plan_is_within_budget():
    drops = {0: 9.0, 1: 3.0, 2: 4.0}
    plan = search(["a", "b", "c"], lambda kept: drops[len(kept)], max_drop=0.5, max_kept=2)
    assert not plan["accepted"]
    assert plan["kept"] == ["a"] and plan["drop"] == 3.0  # the best plan tried, reported with its drop
    assert [t["drop"] for t in plan["trials"]] == [9.0, 3.0, 4.0]
    assert "best: 3.00 points keeping 1" in plan["reason"] and "0.5 points" in plan["reason"]


@pytest.mark.parametrize("n, fraction, expected", [(4, 0.5, 2), (3, 0.5, 1), (1, 0.5, 0), (4, 1.0, 3), (10, 0.0, 0)])
def test_max_kept_leaves_at_least_one_layer_int8(n, fraction, expected):
    assert max_kept_for(n, fraction) == expected


def test_bad_inputs_fail_clearly(mlp):
    path, x, _, ranges = mlp
    with pytest.raises(QuantError, match="max_kept_fraction must be in"):
        max_kept_for(3, 1.5)
    with pytest.raises(QuantError, match=r"max_kept must be in \[0, 2\]"):
        search(["a", "b"], lambda k: 0.0, 0.5, 3)
    with pytest.raises(QuantError, match="not quantizable nodes .*relu0"):
        local_sqnr(path, ranges, [x[:8]], input_name="x", nodes=["relu0"])
    with pytest.raises(QuantError, match="no samples"):
        local_sqnr(path, ranges, [], input_name="x")


def test_plot_writes_a_png_with_kept_layers(mlp, tmp_path):
    path, x, labels, ranges = mlp
    rows = rank(local_sqnr(path, ranges, [x[:64]], input_name="x"))
    out = plot(rows, tmp_path / "s" / "sensitivity.png", kept=["head"])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
