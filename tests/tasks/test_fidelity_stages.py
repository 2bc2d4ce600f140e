"""``model.task: fidelity`` through the stages that judge accuracy: prepare takes unlabelled data,
parity stores FP32's decoded eval outputs, evaluate and int8-mixed score against FP32's outputs.
The prepared splits' labels are overwritten with -1 (and the class list emptied), as an unlabelled
image folder gives them, so anything that still read labels would score nonsense or fail."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tasks import evaluate, parity, prepare, quantize, stage
from tasks.config import Config, from_dict
from tasks.data.errors import DataError
from tasks.data.split import Split, save_split
from tasks.io import read_json, write_json
from tasks.layout import LAYOUT
from tests.conftest import write_params


@pytest.fixture
def unlabelled(params, prepared) -> dict:
    """``params`` switched to task fidelity, with the prepared splits' labels replaced by -1."""
    params["model"]["task"] = "fidelity"
    write_params(params)
    for name in ("calib", "eval"):
        x = np.array(np.load(prepared / name / "x.npy"))  # not memory-mapped: the file is rewritten
        save_split(prepared / name, x, np.full(len(x), -1, np.int64))
    write_json(LAYOUT.classes, [])
    return params


def _other_weights(exported, path):
    """The export with its largest weight shifted: a "precision" that disagrees with FP32 sometimes."""
    m = onnx.load(str(exported))
    w = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(w)
    w.CopyFrom(numpy_helper.from_array((arr + 0.03).astype(arr.dtype), w.name))
    onnx.save(m, str(path))
    return path


def _logits(model, split: Split) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": np.ascontiguousarray(split.x)})[0]


def test_parity_stores_fp32s_decoded_outputs_and_scores_100(model_file, exported, unlabelled, workdir):
    parity.main([])
    with np.load(LAYOUT.reference) as z:
        logits = z["logits"]
    with np.load(LAYOUT.fidelity_targets) as z:
        assert sorted(z.files) == ["fidelity_of", "top1"] and str(z["fidelity_of"]) == "classification"
        np.testing.assert_array_equal(z["top1"], logits.argmax(1))
    m = read_json(LAYOUT.parity_metrics)
    assert m["task"] == "fidelity" and m["fidelity_of"] == "classification" and m["metric"] == "top1_agreement"
    assert m["reference_value"] == 100.0 and m["onnx_value"] == 100.0


def test_a_labelled_task_writes_an_empty_targets_file(model_file, exported, workdir):
    parity.main([])
    with np.load(LAYOUT.fidelity_targets) as z:
        assert z.files == []


def test_evaluate_scores_agreement_with_fp32_and_gates_on_100_minus_it(
    model_file, exported, fp32_artifact, unlabelled, tmp_path
):
    cfg = from_dict(Config, unlabelled)
    parity.main([])
    eval_dir = LAYOUT.split("eval")
    run = lambda cfg, artifact: evaluate.run(  # noqa: E731
        cfg, "local", artifact, eval_dir, LAYOUT.reference, log=lambda m: None, targets=LAYOUT.fidelity_targets
    ).to_json()
    same = run(cfg, fp32_artifact)
    assert same["metric"] == "top1_agreement" and same["value"] == 100.0 == same["reference_value"]
    assert same["drop"] == 0.0 and same["accepted"] and same["samples"] == 96

    other = _other_weights(exported, tmp_path / "other.onnx")
    split = Split(eval_dir)
    agree = float((_logits(other, split).argmax(1) == _logits(exported, split).argmax(1)).mean() * 100)
    assert agree < 100  # the shifted weights change some predictions
    res = run(cfg, other)
    assert res["value"] == pytest.approx(agree) and res["drop"] == pytest.approx(100 - agree)
    assert res["accepted"] is (100 - agree <= cfg.eval.max_drop)
    unlabelled["eval"]["max_drop"] = 100 - agree - 0.01
    assert not run(from_dict(Config, unlabelled), other)["accepted"]

    unlabelled["eval"]["fidelity_of"] = "none"  # decoded otherwise than parity stored: re-run parity
    with pytest.raises(stage.StageError, match="decoded as 'classification' but eval.fidelity_of is 'none'"):
        run(from_dict(Config, unlabelled), fp32_artifact)


def test_int8_mixed_searches_on_agreement_with_fp32(model_file, exported, unlabelled, tmp_path):
    unlabelled["build"]["precisions"] = ["fp32", "int8-mixed"]
    unlabelled["quant"].update(sensitivity_samples=32, sqnr_samples=16, max_drop=100.0)
    cfg = from_dict(Config, unlabelled)
    out = tmp_path / "mixed"
    out.mkdir()
    splits = {"calib_dir": LAYOUT.split("calib"), "eval_dir": LAYOUT.split("eval")}
    rec = quantize.run(cfg, "int8-mixed", exported, out, log=lambda m: None, **splits).to_json()
    assert rec["metric"] == "top1_agreement" and rec["baseline"] == 100.0
    assert rec["accepted"] and 0 <= rec["subset_drop"] <= 100
    assert read_json(out / "sensitivity.json")["metric"] == "top1_agreement"
    # the calibration coverage of unlabelled splits: samples and brightness, no class counts nor warnings
    cov = rec["coverage"]
    assert cov["calib"]["samples"] == 32 and cov["calib"]["per_class"] == {} and cov["warnings"] == []


def _npz(path, seed: int) -> str:
    x = np.random.default_rng(seed).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    np.savez(path, x=x, y=np.full(12, -1, np.int64))
    return str(path)


def test_prepare_takes_unlabelled_data_for_fidelity_only(params, workdir):
    params["data"]["calib"] = {"source": "npz", "path": _npz(workdir / "calib.npz", 0), "limit": None}
    params["data"]["eval"] = {"source": "npz", "path": _npz(workdir / "eval.npz", 1), "limit": None}
    with pytest.raises(DataError, match="have no samples"):  # labelled: unlabelled data cannot be scored
        prepare.run(from_dict(Config, params), workdir / "labelled", log=lambda m: None)
    params["model"]["task"] = "fidelity"
    prepare.run(from_dict(Config, params), workdir / "out", log=lambda m: None)
    assert (np.load(workdir / "out/eval/y.npy") == -1).all() and len(np.load(workdir / "out/calib/x.npy")) == 12


def test_an_unlabelled_image_folder_is_scored_by_config_alone(params, workdir, model_file):
    """Real MNIST digits saved as PNG files in two folders (the ``images`` source: no labels at all),
    through prepare, export and parity to evaluate's verdict."""
    from PIL import Image

    from tasks import export
    from tasks.data.sources import load_loader_split
    from tests.conftest import fp32_build

    for split, n in (("calib", 24), ("eval", 40)):
        for i, img in enumerate(load_loader_split("mnist_digits", split, 0).images[:n]):
            (workdir / "frames" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(workdir / "frames" / split / f"{i:03d}.png")
        params["data"][split] = {"source": "images", "path": f"frames/{split}", "limit": None}
    params["model"]["task"] = "fidelity"
    write_params(params)
    cfg = from_dict(Config, params)
    prepare.run(cfg, LAYOUT.prepare_dir, log=lambda m: None)
    assert read_json(LAYOUT.classes) == [] and (np.load(LAYOUT.split("eval") / "y.npy") == -1).all()
    export.run(cfg, LAYOUT.onnx, log=lambda m: None)
    parity.main([])
    res = evaluate.run(
        cfg,
        "local",
        fp32_build(LAYOUT.onnx, workdir / "build"),
        LAYOUT.split("eval"),
        LAYOUT.reference,
        log=lambda m: None,
        targets=LAYOUT.fidelity_targets,
    ).to_json()
    assert res["samples"] == 40 and res["metric"] == "top1_agreement" and res["value"] == 100.0 and res["accepted"]
