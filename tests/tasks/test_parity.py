"""Stage parity: ONNX Runtime vs PyTorch on the real eval split, its failure message and its
all-or-nothing outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tasks import parity
from tasks.config import Config, from_dict
from tasks.data.split import Split
from tasks.layout import LAYOUT
from tasks.runtimes import get_runtime
from tasks.stage import StageError
from tests.conftest import ROOT, write_params


def _cfg(params: dict) -> Config:
    return from_dict(Config, params)


def test_run_passes_with_default_tolerances(cfg, exported, prepared):
    metrics, ref = parity.run(cfg, exported, prepared / "eval", log=lambda m: None)
    n = len(Split(prepared / "eval"))
    assert n == 96
    assert metrics["reference"] == "torch"
    assert metrics["samples"] == n
    assert metrics["batch1_samples"] == cfg.parity.batch1_samples == 16
    per = metrics["outputs"]["logits"]
    assert set(per) == {"batch32", "batch1"}
    for stats in per.values():
        assert stats["violations"] == 0
        assert stats["max_abs"] <= cfg.parity.atol
        assert stats["cosine"] == pytest.approx(1.0, abs=1e-6)
        assert stats["top1_agreement"] == pytest.approx(100.0)
        assert stats["atol"] == cfg.parity.atol and stats["rtol"] == cfg.parity.rtol
    assert metrics["task"] == "classification" and metrics["metric"] == "top1"
    assert 0.0 <= metrics["reference_value"] <= 100.0
    assert metrics["onnx_value"] == pytest.approx(metrics["reference_value"])
    assert set(ref) == {"logits"}
    assert ref["logits"].shape == (n, 10)


def _outputs(cfg: Config, onnx_path, eval_dir, batch: int, limit: int | None = None):
    """Torch and ORT logits computed here, batch by batch, independently of the stage."""
    torch_s = get_runtime("torch").session(cfg.model)
    ort_s = get_runtime("onnxruntime").load(onnx_path)
    split = Split(eval_dir)
    n = len(split) if limit is None else limit
    ref, got = [], []
    for i in range(0, n, batch):
        x = np.ascontiguousarray(split.x[i : min(i + batch, n)])
        ref.append(torch_s.infer(x)["logits"])
        got.append(ort_s.infer(x)["logits"])
    return np.concatenate(ref), np.concatenate(got)


def test_run_fails_outside_tolerance_naming_the_worst_element(params, exported, prepared):
    params["parity"].update(atol=1e-12, rtol=0.0)
    cfg = _cfg(params)
    with pytest.raises(StageError) as e:
        parity.run(cfg, exported, prepared / "eval", log=lambda m: None)
    msg = str(e.value)
    assert "parity failed for output 'logits'" in msg
    m = re.search(
        r"\((batch\d+), (\d+) element\(s\) outside tolerance\): worst element \[(\d+), (\d+)\]: "
        r"torch=(\S+) onnx=(\S+) ",
        msg,
    )
    assert m, msg
    mode, count, i, j = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    torch_v, onnx_v = float(m.group(5)), float(m.group(6))
    assert "parity.outputs.logits.atol" in msg  # says how to loosen it

    ref, got = _outputs(
        cfg, exported, prepared / "eval", 1 if mode == "batch1" else 32, limit=16 if mode == "batch1" else None
    )
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    assert count == int((diff > 1e-12).sum()) > 0
    assert (i, j) == tuple(int(k) for k in np.unravel_index(np.argmax(diff), diff.shape))
    # printed with 9 significant digits: exact for float32
    assert np.float32(torch_v) == ref[i, j]
    assert np.float32(onnx_v) == got[i, j]
    assert torch_v != onnx_v

    # a per-output override loosens the check for that output only
    params["parity"]["outputs"] = {"logits": {"atol": 1e-3, "rtol": 0.0}}
    cfg = _cfg(params)
    assert parity.tolerance(cfg, "logits").atol == 1e-3
    metrics, _ = parity.run(cfg, exported, prepared / "eval", log=lambda m: None)
    for stats in metrics["outputs"]["logits"].values():
        assert stats["violations"] == 0
        assert stats["atol"] == 1e-3


def _run_stage(workdir) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tasks.parity"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_failure_exits_1_and_leaves_no_outputs(params, workdir, exported):
    params["parity"].update(atol=1e-12, rtol=0.0)
    write_params(params)
    stale = [LAYOUT.reference, LAYOUT.parity_metrics]
    for p in stale:  # outputs of an earlier, successful run
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"stale")
    r = _run_stage(workdir)
    assert r.returncode == 1, r.stderr
    assert "edgeforge parity: error: parity failed for output 'logits'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (workdir / LAYOUT.reference).exists()
    assert not (workdir / LAYOUT.parity_metrics).exists()
    assert not list((workdir / LAYOUT.reference.parent).glob("*.npz"))  # no temporary left either


def test_main_success_writes_reference_and_metrics(cfg, workdir, exported, prepared):
    parity.main([])
    assert (workdir / LAYOUT.parity_metrics).is_file()
    assert (workdir / LAYOUT.reference).is_file()
    split = Split(prepared / "eval")
    with np.load(workdir / LAYOUT.reference) as z:
        assert z.files == ["logits"]
        logits = z["logits"]
    assert logits.shape == (len(split), 10)
    assert logits.dtype == np.float32
    # the reference is the PyTorch output for every eval sample, in order
    torch_s = get_runtime("torch").session(cfg.model)
    np.testing.assert_allclose(logits, torch_s.infer(np.ascontiguousarray(split.x))["logits"], rtol=0, atol=1e-5)
    from tasks.io import read_json

    m = read_json(workdir / LAYOUT.parity_metrics)
    assert m["outputs"]["logits"]["batch32"]["violations"] == 0
    assert m["samples"] == len(split)


def test_decoder_that_does_not_fit_the_outputs_stops_before_the_split(params, exported, prepared, monkeypatch):
    """A classifier's (N, 10) logits given to eval.decoder yolov8: a DecoderError naming the
    decoder and the shape, raised on the first sample, before PyTorch runs the split."""
    from tasks.models.errors import DecoderError

    params["model"]["task"] = "detection"
    params["eval"]["decoder"] = "yolov8"
    cfg = _cfg(params)
    monkeypatch.setattr(parity, "_collect", lambda *a: pytest.fail("the split ran before the decoder check"))
    with pytest.raises(
        DecoderError, match=r"eval.decoder yolov8 expects an output \(N, 4 \+ C, A\); got logits \(1, 10\)"
    ):
        parity.run(cfg, exported, prepared / "eval", log=lambda m: None)


def _binseg_parity_error(workdir, capsys, sigmoid: bool = True, labels=None, classes=None) -> str:
    """Prepare and export a user's one-channel ONNX segmenter (tests/binseg.py), with its eval
    masks or its class names replaced, then run parity's entry point: its one-line error."""
    from tasks import export, prepare
    from tests.binseg import write_project
    from tests.conftest import fast_params

    write_params(write_project(workdir, fast_params(), n_calib=8, n_eval=8, sigmoid=sigmoid))
    for split in ("calib", "eval"):
        with np.load(workdir / f"data/{split}.npz") as z:
            ev = {k: z[k] for k in z.files}
        if labels is not None and split == "eval":
            ev["y"] = labels(ev["y"])
        if classes is not None:
            ev["classes"] = np.array(classes)
        np.savez(workdir / f"data/{split}.npz", **ev)
    prepare.main([])
    export.main([])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        parity.main([])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert not LAYOUT.reference.exists() and not LAYOUT.parity_metrics.exists()  # nothing half-written
    return err


def test_one_channel_model_with_multi_class_masks_is_a_clear_error(workdir, capsys):
    def digits_as_classes(y):
        y = y.copy()
        y[y == 1] = 7  # masks of a 10-digit data set: class ids, not 0/1
        return y

    err = _binseg_parity_error(workdir, capsys, labels=digits_as_classes)
    assert "edgeforge parity: error: model.scores_output 'prob' has one channel (binary)" in err
    assert "values [7]" in err and "0 and 1 (255 = ignore)" in err


def test_one_channel_model_with_a_multi_class_list_is_a_clear_error(workdir, capsys):
    err = _binseg_parity_error(workdir, capsys, classes=["background", *map(str, range(10))])
    assert "edgeforge parity: error: model.scores_output 'prob' has one channel" in err
    assert "11 classes" in err and "C >= 2" in err


def test_logits_read_as_probabilities_is_a_clear_error(workdir, capsys):
    err = _binseg_parity_error(workdir, capsys, sigmoid=False)
    assert "edgeforge parity: error: config key model.seg_output: 'probabilities'" in err
    assert "Set model.seg_output=logits" in err
