"""Every bundled example architecture through EdgeForge's LiteRT conversion, against ONNX Runtime.

Each model (examples/: the MNIST CNN classifier, CenterNet, U-Net, binary U-Net, YOLO-style detector,
keypoint heatmap net; seeded, untrained: this is about the conversion, not accuracy) is exported as
tasks/export.py does (dynamo, opset 18, dynamic batch), converted at fp32, fp16 and int8-minmax
(calibrated on 32 real inputs: MNIST digits, or canvases of them for the 64x64 models), loaded by the
device-side model (tasks/agent/litert_model.py) and run on 8 other real inputs. Printed per example and
precision: the output names and shapes (must be ONNX's: NCHW where the ONNX output is), which outputs
the conversion transposed back from onnx2tf's channel-last layout, int8/float ops, and the largest
difference to ONNX Runtime beside the output's largest magnitude.

    .venv/bin/python bench/litert_examples.py                # all six (about 1.5 minutes on 2 cores)
    .venv/bin/python bench/litert_examples.py yolo unet      # some

A check that prints, never judges.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from examples.canvas_models import MnistBinUNet, MnistCenterNet, MnistUNet  # noqa: E402
from examples.canvas_yolo import MnistYolo  # noqa: E402
from examples.digit_keypoints import MnistHeatmap  # noqa: E402
from examples.mnist import MnistCNN, digits  # noqa: E402
from tasks.agent.litert_model import LiteRTModel  # noqa: E402
from tasks.runtimes import litert_convert  # noqa: E402


def canvases(imgs: np.ndarray, n: int, hw: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` (1, hw, hw) canvases, each with two real digits pasted at random places."""
    out = np.zeros((n, 1, hw, hw), np.float32)
    for i in range(n):
        for k in range(2):
            y, x = rng.integers(0, hw - 28, 2)
            patch = out[i, 0, y : y + 28, x : x + 28]
            np.maximum(patch, imgs[(3 * i + k) % len(imgs), 0], out=patch)
    return out


def export(model: torch.nn.Module, x: np.ndarray, outputs: list[str], path: Path) -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    prog = torch.onnx.export(
        model.eval(),
        (torch.from_numpy(x[:2]),),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=outputs,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    prog.save(str(path))


def main(argv: list[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rng = np.random.default_rng(0)
    imgs = digits()[0].astype(np.float32).reshape(-1, 1, 28, 28)
    imgs /= imgs.max()
    canvas = canvases(imgs, 40, 64, rng)
    crops = canvases(imgs, 40, 32, rng)  # the keypoint net takes 32x32 crops (here with two digits)
    cases = {
        "cnn": (MnistCNN, ["logits"], imgs[:40]),
        "centernet": (MnistCenterNet, ["heatmap", "wh", "offset"], canvas),
        "unet": (MnistUNet, ["logits"], canvas),
        "binunet": (MnistBinUNet, ["prob"], canvas),
        "yolo": (MnistYolo, ["output0"], canvas),
        "heatmap": (MnistHeatmap, ["heatmaps"], crops),
    }
    for name in argv or list(cases):
        make, outputs, data = cases[name]
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory(prefix="edgeforge-litert-ex-") as td:
            onnx_path = Path(td) / "model.onnx"
            try:
                export(make(), data, outputs, onnx_path)
            except Exception as e:  # an input size the architecture does not take: say so, go on
                print(f"{name:<9} export failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                continue
            x = data[32:40]
            ref = dict(zip(outputs, ort.InferenceSession(str(onnx_path)).run(outputs, {"input": x})))
            batches = [data[i : i + 8] for i in range(0, 32, 8)]
            for p in litert_convert.PRECISIONS:
                t0 = time.perf_counter()
                calib = lambda b=batches: iter(b)  # noqa: E731
                art, meta = litert_convert.convert(onnx_path, p, calib, Path(td) / p, threads=2)
                got = LiteRTModel(art, 2).infer(x)
                diffs = ", ".join(
                    f"{n} {got[n].shape} {float(np.abs(got[n] - ref[n]).max()):.2e}/{float(np.abs(ref[n]).max()):.2e}"
                    if got[n].shape == ref[n].shape
                    else f"{n} SHAPE {got[n].shape} != ONNX {ref[n].shape}"
                    for n in outputs
                )
                print(
                    f"{name:<9} {p:<11} {time.perf_counter() - t0:5.1f} s  ops int8/float {meta['int8_ops']}/"
                    f"{meta['float_ops']}  transposed {sorted(meta['transposed_outputs']) or '-'}  "
                    f"max|LiteRT-ORT|/max|ORT|: {diffs}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
