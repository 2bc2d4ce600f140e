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

from tests.conftest import fast_params, write_params


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
