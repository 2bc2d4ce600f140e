"""A user's own model and data, by config alone: a TorchScript checkpoint of an RGB classifier
and ImageFolder trees of real images (MNIST digits stored as coloured 36x36 PNGs, resized to the
model's 32x32), through every stage's entry point, report included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tasks.layout import LAYOUT
from tests.conftest import fast_params, run_stages, write_params


class RGBNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(8 * 16, 10)
        )

    def forward(self, x):
        return self.body(x)


def write_imagefolder(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (img, y) in enumerate(zip(images, labels)):
        rgb = np.stack([img, img // 2, 255 - img], axis=-1).astype(np.uint8)
        (root / f"digit_{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).resize((36, 36)).save(root / f"digit_{y}" / f"{i}.png")


@pytest.fixture
def user_project(workdir) -> Path:
    from examples.mnist import mnist_digits

    splits = mnist_digits(0)
    write_imagefolder(workdir / "images/calib", splits["calib"].images[:40], splits["calib"].labels[:40])
    write_imagefolder(workdir / "images/val", splits["eval"].images[:60], splits["eval"].labels[:60])
    torch.manual_seed(0)
    torch.jit.script(RGBNet().eval()).save(str(workdir / "rgbnet.ts"))
    p = fast_params()
    p["model"].update(
        format="torchscript", checkpoint="rgbnet.ts", arch=None, outputs=["scores"], scores_output="scores"
    )
    p["model"]["input"].update(
        name="pixels",
        shape=[3, 32, 32],
        channel_order="rgb",
        resize=[32, 32],
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
    )
    p["data"]["calib"] = {"source": "imagefolder", "path": "images/calib", "limit": None}
    p["data"]["eval"] = {"source": "imagefolder", "path": "images/val", "limit": None}
    write_params(p)
    return workdir


def test_own_torchscript_model_and_image_folders_run_every_stage(user_project):
    from tasks import benchmark, build, evaluate, export, parity, prepare, probe, quantize, report

    prepare.main([])
    export.main([])
    parity.main([])
    probe.main(["--target", "local"])
    for precision in ("fp32", "fp16", "int8-minmax"):
        quantize.main(["--precision", precision])
        for stage in (build, benchmark, evaluate):
            stage.main(["--target", "local", "--precision", precision])
    report.main([])

    x = np.load(user_project / "artifacts/prepare/eval/x.npy")
    assert x.shape == (60, 3, 32, 32) and x.dtype == np.float32
    assert json.loads((user_project / "artifacts/prepare/classes.json").read_text())[:2] == ["digit_0", "digit_1"]
    assert not (user_project / "artifacts/prepare/model.pt").exists()  # nothing trained: the user's model is used
    import onnx

    g = onnx.load(str(user_project / "artifacts/export/model.onnx")).graph
    assert [i.name for i in g.input] == ["pixels"] and [o.name for o in g.output] == ["scores"]
    summary = json.loads((user_project / "artifacts/report/summary.json").read_text())
    assert [r["precision"] for r in summary["rows"]] == ["fp32", "fp16", "int8-minmax"]
    assert summary["rows"][0]["drop"] == pytest.approx(0.0, abs=1e-9)


def test_own_onnx_binary_segmenter_with_one_sigmoid_output_runs_by_config_alone(workdir, capsys):
    """A user's ONNX text-detector-like model whose single output is an (N, 1, H, W) sigmoid map,
    with 0/1 masks in .npz files (255 = ignore): scored by Dice through every stage, the report
    naming the images that dropped most (the case that used to crash parity with a traceback)."""
    from tests.binseg import write_project

    p = write_project(workdir, fast_params())
    p["build"]["precisions"] = PRECISIONS = [
        "fp32",
        "fp16",
        "int8-minmax",
        "int8-entropy",
        "int8-percentile",
        "int8-mixed",
    ]
    write_params(p)
    run_stages(PRECISIONS)

    par = json.loads((workdir / "metrics/parity.json").read_text())
    # the model's rule is the masks' rule: FP32 finds every digit pixel
    assert par["metric"] == "dice" and par["reference_value"] == pytest.approx(100.0)
    summary = json.loads((workdir / "artifacts/report/summary.json").read_text())
    assert summary["reference"] == {
        "metric": "dice",
        "label": "Dice %",
        "value": pytest.approx(100.0),
        "parts": "class",  # the worst-drop column is per class (keypoint models: per keypoint)
    }
    rows = {r["precision"]: r for r in summary["rows"]}
    assert list(rows) == PRECISIONS
    assert rows["fp32"]["drop"] == pytest.approx(0.0, abs=1e-9)
    for r in rows.values():
        assert r["metric"] == "dice" and 0.0 <= r["value"] <= 100.0
        assert set(r["details"]) >= {"iou", "global_dice", "global_iou", "pixel_accuracy"}
        worst = r["worst_images"]
        assert len(worst) <= 5 and all(0 <= w["image"] < 60 and w["drop"] > 0 for w in worst)
        assert [w["drop"] for w in worst] == sorted((w["drop"] for w in worst), reverse=True)
        assert r["worst_image_drop"] == (worst[0]["drop"] if worst else 0.0)
    assert rows["fp32"]["worst_images"] == []  # FP32 is the reference: no image dropped
    md = (workdir / "artifacts/report/summary.md").read_text()
    assert "Dice %" in md and "worst image drop" in md and "local-fp32: worst images" not in md
    # every INT8 row that lost Dice names its images (how many do is INT8 rounding: not asserted)
    for r in rows.values():
        assert (f"- {r['key']}: worst images: #" in md) == bool(r["worst_images"])
    mixed = json.loads((workdir / "metrics/quantize/int8-mixed.json").read_text())
    assert mixed["metric"] == "dice"  # the search judged plans by the binary metric


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_own_ultralytics_layout_onnx_detector_and_yolo_dataset_run_by_config_alone(workdir):
    """A user's ONNX detector whose single output is the Ultralytics head (N, 4 + C, A) (the example
    architecture mnist_yolo, trained ~17 s and exported here), with 64x80 images in the Ultralytics
    YOLO layout letterboxed into the 64x64 input: COCO mAP@.5:.95 for every precision, boxes scored in
    the images' own pixels. (How much it detects is training and INT8 rounding: not asserted.)"""
    from tests.userdet import write_project

    PRECISIONS = ["fp32", "fp16", "int8-minmax"]
    p = write_project(workdir, fast_params())
    p["build"]["precisions"] = PRECISIONS
    write_params(p)
    run_stages(PRECISIONS)

    prep = workdir / "artifacts/prepare/eval"
    meta, y = np.load(prep / "meta.npy"), np.load(prep / "y.npy")
    assert meta.shape == (96, 6)
    # letterbox: 64x80 scaled by 0.8 to 51x64, centred with padding above and below
    assert (meta[:, :2] == [64, 80]).all() and np.allclose(meta[:, 2:4], 0.8, atol=0.01) and (meta[:, 4] > 0).all()
    # labels stay in the images' own pixels: boxes reach past the 64-pixel input width
    real = y[..., 0] >= 0
    assert y.dtype == np.float32 and y[..., 3][real].max() > 64
    assert not (workdir / "artifacts/prepare/model.pt").exists()  # nothing trained by EdgeForge
    par = json.loads((workdir / "metrics/parity.json").read_text())
    assert par["metric"] == "map50_95"
    # the reference is the FP32 boxes mapped back by the shared contract, input = orig * scale + pad
    in_original, in_input = _fp32_map(workdir, x=np.load(prep / "x.npy"), meta=meta, labels=y)
    # (up to FP32 noise: parity runs batches, this one call; ties in NMS may fall either way)
    assert par["reference_value"] == pytest.approx(in_original, abs=0.05)
    assert abs(in_original - in_input) > 1.0  # unmapped boxes would score otherwise
    summary = json.loads((workdir / "artifacts/report/summary.json").read_text())
    rows = {r["precision"]: r for r in summary["rows"]}
    assert list(rows) == PRECISIONS
    assert rows["fp32"]["drop"] == pytest.approx(0.0, abs=1e-9)
    for r in rows.values():
        ev = json.loads((workdir / LAYOUT.evaluate_metrics(r["target"], r["precision"])).read_text())
        assert ev["task"] == "detection" and ev["metric"] == r["metric"] == "map50_95"
        assert 0.0 <= ev["value"] <= 100.0 and ev["drop"] == pytest.approx(ev["reference_value"] - ev["value"])
        assert isinstance(ev["accepted"], bool) and (ev["accepted"] or ev["reason"])
        assert r["verdict"] in ("accepted", "rejected")


def _fp32_map(root: Path, x: np.ndarray, meta: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """mAP@.5:.95 of the exported ONNX model's FP32 boxes (ONNX Runtime, yolov8 decoder with its
    defaults) against ``labels``, with the boxes mapped to original pixels by ``meta`` and as they are."""
    import onnxruntime as ort

    from tasks.metrics.detection import coco_map
    from tasks.models.decoders import run_decoder

    sess = ort.InferenceSession(str(root / "artifacts/export/model.onnx"), providers=["CPUExecutionProvider"])
    dets = run_decoder("yolov8", {"output0": sess.run(None, {"images": x})[0]}, num_classes=10, score_threshold=None)
    mapped = []
    for d, (_, _, sy, sx, top, left) in zip(dets, meta, strict=True):
        d = d.copy()
        d[:, [0, 2]] = (d[:, [0, 2]] - left) / sx
        d[:, [1, 3]] = (d[:, [1, 3]] - top) / sy
        mapped.append(d)
    names = [str(i) for i in range(10)]
    return coco_map(mapped, labels, names)["map50_95"], coco_map(dets, labels, names)["map50_95"]
