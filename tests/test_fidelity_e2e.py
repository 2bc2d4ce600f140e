"""End to end: the bundled MNIST example as a model without labels (`dvc exp run -S model.task=fidelity`)
in a fresh copy of the repository. Every precision is scored by top-1 agreement with the FP32 model's
own predictions, the gate reads the drop from 100, and int8-mixed searches on agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.layout import LAYOUT
from tests.e2e import FAST, ONE_TARGET, fresh_repo, sh

pytestmark = pytest.mark.e2e
PRECISIONS = ["fp32", "fp16", "int8-minmax", "int8-mixed"]


def test_exp_run_scores_every_precision_by_agreement_with_fp32(tmp_path):
    repo = fresh_repo(tmp_path / "repo", [])
    overrides = ["model.task=fidelity", f"build.precisions=[{','.join(PRECISIONS)}]", "prepare.epochs=2"]
    overrides += ["quant.sensitivity_samples=200", *FAST, *ONE_TARGET]
    r = sh(["dvc", "exp", "run", *(a for o in overrides for a in ("-S", o))], repo)
    assert "EdgeForge summary" in r.stdout and "top-1 agreement %" in r.stdout

    with np.load(repo / "artifacts/parity/fidelity_targets.npz") as z:
        assert str(z["fidelity_of"]) == "classification" and z["top1"].ndim == 1
    summary = json.loads((repo / "artifacts/report/summary.json").read_text())
    assert summary["reference"] == {
        "metric": "top1_agreement",
        "label": "top-1 agreement %",
        "value": 100.0,
        "parts": "class",
    }
    assert [row["precision"] for row in summary["rows"]] == PRECISIONS
    for row in summary["rows"]:
        ev = json.loads((repo / LAYOUT.evaluate_metrics(row["target"], row["precision"])).read_text())
        assert ev["task"] == "fidelity" and ev["metric"] == row["metric"] == "top1_agreement"
        assert ev["reference_value"] == 100.0 and ev["drop"] == pytest.approx(100.0 - ev["value"])
        assert row["verdict"] in ("accepted", "rejected") and (row["accepted"] or row["reason"])
    assert summary["rows"][0]["value"] == 100.0 and summary["rows"][0]["accepted"]
    mixed = json.loads((repo / "metrics/quantize/int8-mixed.json").read_text())
    assert mixed["metric"] == "top1_agreement" and mixed["baseline"] == 100.0
