"""Stage evaluate: the task metric of the built artifact against the saved PyTorch reference, and
the three-way parity of its outputs (PyTorch -> ONNX -> artifact)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tasks import evaluate, parity
from tasks.config import Config, from_dict
from tasks.data.split import Split


def _scores(model, split) -> np.ndarray:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(split.x)})[0]


def test_top1_and_drop_vs_reference_accepted(params, cfg, exported, fp32_artifact, prepared, tmp_path):
    eval_dir = prepared / "eval"
    split = Split(eval_dir)
    labels = np.asarray(split.y)
    # the reference parity saves: PyTorch FP32 logits on the eval split
    _, ref = parity.run(cfg, exported, eval_dir, log=lambda m: None)
    reference = tmp_path / "reference.npz"
    np.savez(reference, **ref)

    res = evaluate.run(
        cfg, "local", fp32_artifact, eval_dir, reference, source_onnx=exported, log=lambda m: None
    ).to_json()

    # by hand: run the artifact directly and score it
    scores = _scores(fp32_artifact, split)
    acc = float((scores.argmax(1) == labels).mean() * 100)
    ref_acc = float((ref["logits"].argmax(1) == labels).mean() * 100)
    top5 = float(np.mean([labels[i] in np.argsort(-scores[i], kind="stable")[:5] for i in range(len(labels))]) * 100)
    assert res["samples"] == len(labels) == 96
    assert res["task"] == "classification" and res["metric"] == "top1"
    assert res["value"] == pytest.approx(acc)
    assert res["details"]["top5"] == pytest.approx(top5)
    assert res["reference_value"] == pytest.approx(ref_acc)
    assert res["drop"] == pytest.approx(ref_acc - acc)
    assert res["drop"] <= cfg.eval.max_drop
    assert res["top1_agreement"] == pytest.approx(100.0)
    assert res["max_drop"] == cfg.eval.max_drop
    # three-way parity: every leg of the FP32 build is tiny, the judged one within tolerance
    par = res["parity"]
    assert set(par["legs"]) == {"torch_onnx", "onnx_artifact", "torch_artifact"}
    judged = par["legs"]["onnx_artifact"]["logits"]
    assert judged["violations"] == 0 and judged["max_abs"] <= cfg.parity.artifact["fp32"].atol
    assert sum(judged["histogram"]["counts"]) == scores.size
    assert judged["worst_elements"][0]["abs_diff"] == pytest.approx(judged["max_abs"])
    assert par["failed"] == [] and par["worst"] == ""
    assert par["tolerance"]["logits"] == {"atol": 1e-3, "rtol": 1e-3, "max_outside": 0.0}
    assert res["accepted"] is True
    assert res["reason"] == ""


def test_rejected_when_drop_exceeds_max_drop(params, cfg, fp32_artifact, prepared, tmp_path):
    eval_dir = prepared / "eval"
    split = Split(eval_dir)
    labels = np.asarray(split.y)
    scores = _scores(fp32_artifact, split)
    acc = float((scores.argmax(1) == labels).mean() * 100)

    # a reference that is always right (one-hot of the true labels) against an untrained model
    perfect = tmp_path / "perfect.npz"
    np.savez(perfect, logits=np.eye(10, dtype=np.float32)[labels])
    res = evaluate.run(cfg, "local", fp32_artifact, eval_dir, perfect, log=lambda m: None).to_json()
    assert res["reference_value"] == pytest.approx(100.0)
    assert res["value"] == pytest.approx(acc)
    assert res["value"] < 50  # untrained: about chance
    assert res["drop"] == pytest.approx(100.0 - acc)
    assert "parity" not in res  # no source ONNX given: no three-way parity
    assert res["accepted"] is False
    assert "top1 drop" in res["reason"] and "eval.max_drop" in res["reason"] and f"{res['drop']:.2f}" in res["reason"]
    # per class, against the perfect reference: each class's drop is 100 - its accuracy, by hand
    pred = scores.argmax(1)
    by_hand = {str(c): float((pred[labels == c] == c).mean() * 100) for c in np.unique(labels)}
    assert res["per_class"] == pytest.approx(by_hand)
    worst = res["worst_classes"][0]
    assert worst["drop"] == pytest.approx(100.0 - min(by_hand.values())) == res["worst_class_drop"]
    assert by_hand[worst["class"]] == min(by_hand.values())

    # the same drop is accepted when the allowance covers it
    params["eval"]["max_drop"] = 100.0
    res = evaluate.run(
        from_dict(Config, params), "local", fp32_artifact, eval_dir, perfect, log=lambda m: None
    ).to_json()
    assert res["accepted"] is True and res["reason"] == ""


def test_artifact_that_differs_from_its_onnx_is_rejected_by_parity(
    params, cfg, exported, fp32_artifact, prepared, tmp_path
):
    """An artifact built from other weights than the ONNX it claims to come from: accuracy alone
    may not notice (both untrained), the onnx -> artifact leg does, and names the worst element."""
    eval_dir = prepared / "eval"
    _, ref = parity.run(cfg, exported, eval_dir, log=lambda m: None)
    reference = tmp_path / "reference.npz"
    np.savez(reference, **ref)
    m = onnx.load(str(exported))
    w = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the largest weight
    arr = numpy_helper.to_array(w)
    w.CopyFrom(numpy_helper.from_array((arr + 0.05).astype(arr.dtype), w.name))
    other = tmp_path / "other.onnx"
    onnx.save(m, str(other))

    params["eval"]["max_drop"] = 100.0  # accuracy is not what rejects it here
    res = evaluate.run(
        from_dict(Config, params), "local", fp32_artifact, eval_dir, reference, source_onnx=other, log=lambda m: None
    ).to_json()
    par = res["parity"]
    assert par["failed"] == ["logits"] and par["legs"]["onnx_artifact"]["logits"]["violations"] > 0
    assert res["accepted"] is False and "three-way parity (fp32)" in res["reason"] and "worst logits[" in res["reason"]
    # torch and the artifact still agree (the artifact is the real export): the end-to-end leg is clean
    assert par["legs"]["torch_artifact"]["logits"]["violations"] == 0
    assert par["legs"]["torch_onnx"]["logits"]["max_abs"] == pytest.approx(
        par["legs"]["onnx_artifact"]["logits"]["max_abs"], rel=0.2
    )
    # the INT8 family's tolerance is the one applied to an int8 precision: a fraction of elements
    # outside it is allowed up to max_outside
    frac = par["legs"]["onnx_artifact"]["logits"]["outside_fraction"]
    params["parity"]["artifact"]["int8"] = {"atol": 1e-3, "rtol": 1e-3, "max_outside": min(1.0, frac * 1.01)}
    res = evaluate.run(
        from_dict(Config, params),
        "local",
        fp32_artifact,
        eval_dir,
        reference,
        source_onnx=other,
        precision="int8-minmax",
        log=lambda m: None,
    ).to_json()
    assert res["parity"]["failed"] == [] and res["accepted"] is True
    # a per-output override wins over the family default
    params["parity"]["artifact_outputs"] = {"logits": {"int8": {"atol": 1e-3, "rtol": 1e-3, "max_outside": 0.0}}}
    res = evaluate.run(
        from_dict(Config, params),
        "local",
        fp32_artifact,
        eval_dir,
        reference,
        source_onnx=other,
        precision="int8-minmax",
        log=lambda m: None,
    ).to_json()
    assert res["parity"]["failed"] == ["logits"] and "max_outside 0" in res["reason"]


@pytest.mark.parametrize(
    "runtime, trt_onnx, expected",
    [
        ("tensorrt", "fp16_glue_onnx", "model.fp16glue.onnx"),  # TensorRT 11 int8-<calibrator>
        ("tensorrt", "precision_onnx", "model.onnx"),  # TensorRT 10: the FP32-glue model with --int8 --fp16
        ("onnxruntime", None, "model.ort.u8s8.onnx"),  # the layout the build's device_choices picked
        ("onnxruntime", None, "model.ort.s8s8r7.onnx"),
    ],
)
def test_parity_compares_with_the_onnx_the_build_uploaded(tmp_path, monkeypatch, runtime, trt_onnx, expected):
    from tasks.layout import LAYOUT
    from tasks.records import BuildRecord

    monkeypatch.chdir(tmp_path)
    build_dir = LAYOUT.build_dir("dev", "int8-minmax")
    build_dir.mkdir(parents=True)
    fields = dict(target="dev", precision="int8-minmax", runtime=runtime, artifact="model.engine")
    fields.update(runtime_version="11.0.0", host="h:22", sha256="0", size_bytes=1, source_onnx_sha256="0")
    choices = {"ort_int8_layout": expected.split(".")[2]} if runtime == "onnxruntime" else {}
    BuildRecord.from_json({**fields, "build_seconds": 1.0, "trt_onnx": trt_onnx, "device_choices": choices}).write(
        build_dir / "build.json"
    )
    assert evaluate.built_from("int8-minmax", runtime, build_dir) == LAYOUT.quantize_dir("int8-minmax") / expected


def test_binary_segmentation_names_the_images_that_dropped_most(params, tmp_path):
    """A one-channel sigmoid map (the reference cuts digits at half scale, the artifact at 0.7):
    Dice is the metric, and the worst images are those whose per-image Dice dropped most, by hand."""
    from examples.mnist import mnist_digits
    from tasks.data.preprocess import preprocess
    from tasks.data.split import save_split
    from tasks.io import write_json
    from tasks.runtimes import BuildOptions, get_runtime
    from tests.binseg import digit_masks, threshold_net

    params["model"].update(format="onnx", arch=None, task="segmentation", outputs=["prob"], scores_output="prob")
    params["model"]["input"]["name"] = "image"
    cfg = from_dict(Config, params)
    spec = cfg.model.input
    images = mnist_digits(0)["eval"].images[:40]
    masks = digit_masks(images)
    save_split(tmp_path / "prep/eval", preprocess(images, spec), masks)
    write_json(tmp_path / "prep/classes.json", ["background", "digit"])
    ref_net = threshold_net(tmp_path / "ref.onnx", spec.mean[0], spec.std[0], cut=0.5)
    art_net = threshold_net(tmp_path / "art.onnx", spec.mean[0], spec.std[0], cut=0.7)
    out = tmp_path / "build"
    out.mkdir()
    artifact = get_runtime("onnxruntime").build(art_net, "fp32", out, BuildOptions()).artifact
    split = Split(tmp_path / "prep/eval")
    reference = tmp_path / "reference.npz"
    np.savez(reference, prob=_scores(ref_net, split))

    res = evaluate.run(cfg, "local", artifact, tmp_path / "prep/eval", reference, log=lambda m: None).to_json()

    def dice(pred, mask):  # per image, by hand; every image here shows a digit
        tp = (pred & (mask == 1)).sum((1, 2))
        return 200.0 * tp / (pred.sum((1, 2)) + (mask == 1).sum((1, 2)))

    pixels = images.astype(np.float32) / 255.0
    ref_d, got_d = dice(pixels > 0.5, masks), dice(pixels > 0.7, masks)
    assert ref_d == pytest.approx(100.0)  # the reference is the mask's own rule
    assert res["metric"] == "dice" and res["reference_value"] == pytest.approx(100.0)
    assert res["value"] == pytest.approx(got_d.mean(), abs=1e-3)
    assert set(res["details"]) >= {"iou", "global_dice", "global_iou", "pixel_accuracy"}
    assert "per_image" not in res["details"]  # 40 figures stay out of the metrics file
    order = np.argsort(-(ref_d - got_d), kind="stable")[:5]
    assert [w["image"] for w in res["worst_images"]] == order.tolist()
    assert [w["drop"] for w in res["worst_images"]] == pytest.approx((ref_d - got_d)[order].tolist(), abs=1e-3)
    assert res["worst_image_drop"] == pytest.approx(res["worst_images"][0]["drop"])
    assert res["worst_image_drop"] > res["drop"]  # the average hides the worst image
