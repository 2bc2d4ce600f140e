"""Stage evaluate: top-1 of the built artifact against the saved PyTorch reference."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tasks import evaluate, parity
from tasks.config import Config, from_dict
from tasks.data.split import Split


def test_top1_and_drop_vs_reference_accepted(params, cfg, exported, fp32_artifact, prepared, tmp_path):
    eval_dir = prepared / "eval"
    split = Split(eval_dir)
    labels = np.asarray(split.y)
    # the reference parity saves: PyTorch FP32 logits on the eval split
    _, ref = parity.run(cfg, exported, eval_dir, log=lambda m: None)
    reference = tmp_path / "reference.npz"
    np.savez(reference, **ref)

    res = evaluate.run(cfg, "local", fp32_artifact, eval_dir, reference)

    # by hand: run the artifact directly and score it
    sess = ort.InferenceSession(str(fp32_artifact), providers=["CPUExecutionProvider"])
    (scores,) = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(split.x)})
    acc = float((scores.argmax(1) == labels).mean() * 100)
    ref_acc = float((ref["logits"].argmax(1) == labels).mean() * 100)
    assert res["samples"] == len(labels) == 96
    assert res["top1"] == pytest.approx(acc)
    assert res["reference_top1"] == pytest.approx(ref_acc)
    assert res["drop"] == pytest.approx(ref_acc - acc)
    assert res["drop"] <= cfg.eval.max_drop
    assert res["top1_agreement"] == pytest.approx(100.0)
    assert res["max_drop"] == cfg.eval.max_drop
    assert res["accepted"] is True
    assert res["reason"] == ""


def test_rejected_when_drop_exceeds_max_drop(params, cfg, fp32_artifact, prepared, tmp_path):
    eval_dir = prepared / "eval"
    split = Split(eval_dir)
    labels = np.asarray(split.y)
    sess = ort.InferenceSession(str(fp32_artifact), providers=["CPUExecutionProvider"])
    (scores,) = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(split.x)})
    acc = float((scores.argmax(1) == labels).mean() * 100)

    # a reference that is always right (one-hot of the true labels) against an untrained model
    perfect = tmp_path / "perfect.npz"
    np.savez(perfect, logits=np.eye(10, dtype=np.float32)[labels])
    res = evaluate.run(cfg, "local", fp32_artifact, eval_dir, perfect)
    assert res["reference_top1"] == pytest.approx(100.0)
    assert res["top1"] == pytest.approx(acc)
    assert res["top1"] < 50  # untrained: about chance
    assert res["drop"] == pytest.approx(100.0 - acc)
    assert res["accepted"] is False
    assert "eval.max_drop" in res["reason"] and f"{res['drop']:.2f}" in res["reason"]
    # per class, against the perfect reference: each class's drop is 100 - its accuracy, by hand
    pred = scores.argmax(1)
    by_hand = {str(c): float((pred[labels == c] == c).mean() * 100) for c in np.unique(labels)}
    assert res["per_class_top1"] == pytest.approx(by_hand)
    worst = res["worst_classes"][0]
    assert worst["drop"] == pytest.approx(100.0 - min(by_hand.values())) == res["worst_class_drop"]
    assert worst["name"] == min(by_hand, key=by_hand.get) or by_hand[worst["name"]] == min(by_hand.values())

    # the same drop is accepted when the allowance covers it
    params["eval"]["max_drop"] = 100.0
    res = evaluate.run(from_dict(Config, params), "local", fp32_artifact, eval_dir, perfect)
    assert res["accepted"] is True and res["reason"] == ""
