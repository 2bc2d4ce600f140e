"""What the FP16-glue Q/DQ model (tasks/quant/fp16_glue.py, what TensorRT 11 builds for
``int8-<calibrator>``) changes numerically against the FP32-glue one, on a ResNet-18.

The ResNet-18 of bench/resnet18.py (random seeded weights, exported like bench/calibration.py) is
calibrated (minmax) on ``--calib`` real images (MNIST digits upscaled to 224x224, ImageNet-normalised,
as bench/calibration.py makes them) and written as the TensorRT-layout Q/DQ model, then in its
FP16-glue form. FP32, FP32-glue INT8 and FP16-glue INT8 run in ONNX Runtime (CPU) on ``--eval``
other images; the script prints each model's output relative L2 difference to FP32
(||y - y_fp32|| / ||y_fp32|| over the whole output) and its top-1 agreement with FP32, and the
same between the two INT8 forms.

ONNX Runtime on a CPU only simulates both Q/DQ models (FP32 or FP16 arithmetic with Q/DQ rounding):
the figures show what the FP16 glue and FP16 scales do to the numbers, not TensorRT's kernels, and no
speed is measured (ORT's CPU FP16 kernels say nothing about a GPU's). With random weights the
network may send most images to a few classes; the script prints how many, which says how much the
top-1 agreement tells.

    .venv/bin/python bench/fp16_glue.py                 # 128 calibration, 256 evaluation images
    .venv/bin/python bench/fp16_glue.py --calib 32 --eval 64

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.calibration import export, make_images  # noqa: E402
from bench.machine import cpu_model  # noqa: E402


def outputs(path: Path, x: np.ndarray, batch: int = 32) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # the FP16 graph logs constant-folding warnings for kernels ORT's CPU lacks
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def mnist(d: Path, n_calib: int, n_eval: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled example's MnistCNN trained here (4 epochs) and exported to ``d/fp32.onnx``;
    returns (calibration images, evaluation images, evaluation labels)."""
    import torch

    from examples.mnist import MnistCNN, mnist_digits, train_mnist_cnn

    splits = mnist_digits(0)
    prep = lambda s: ((s.images[:, None].astype(np.float32) / 255 - 0.1307) / 0.3081).astype(np.float32)  # noqa: E731
    train_mnist_cnn(prep(splits["train"]), splits["train"].labels, d / "m.pt", epochs=4, batch_size=64, lr=3e-3, seed=0)
    model = MnistCNN()
    model.load_state_dict(torch.load(d / "m.pt"))
    export(d / "fp32.onnx", model, (1, 28, 28))
    ev = splits["eval"]
    return prep(splits["calib"])[:n_calib], prep(ev)[:n_eval], ev.labels[:n_eval]


def resnet(d: Path, n_calib: int, n_eval: int) -> tuple[np.ndarray, np.ndarray, None]:
    make_images(n_calib + n_eval, d / "x.npy")
    x = np.load(d / "x.npy")
    export(d / "fp32.onnx")
    return x[:n_calib], np.ascontiguousarray(x[n_calib:]), None


def compare(which: str, n_calib: int, n_eval: int) -> None:
    from tasks.quant import calibrate, quantize_qdq
    from tasks.quant.fp16_glue import to_fp16_glue

    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        calib, ev, labels = (mnist if which == "mnist" else resnet)(d, n_calib, n_eval)
        t0 = time.perf_counter()
        batches = (np.ascontiguousarray(calib[i : i + 32]) for i in range(0, len(calib), 32))
        ranges = calibrate(d / "fp32.onnx", batches, "minmax", input_name="input")
        quantize_qdq(d / "fp32.onnx", ranges, d / "int8.onnx")
        facts = to_fp16_glue(d / "int8.onnx", d / "int8.fp16glue.onnx")
        print(f"\n{which}: calibrated and quantized in {time.perf_counter() - t0:.1f} s; FP16-glue model: {facts}")
        y = {name: outputs(d / f"{name}.onnx", ev) for name in ("fp32", "int8", "int8.fp16glue")}

    def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    def top1(a: np.ndarray, b: np.ndarray) -> float:
        return float((a.argmax(1) == b.argmax(1)).mean())

    model = "ResNet-18 (random seeded weights)" if which == "resnet18" else "MnistCNN (trained here, 4 epochs)"
    print(f"{model}, {len(calib)} calibration and {len(ev)} evaluation images, minmax")
    classes = len(np.unique(y["fp32"].argmax(1)))
    print(f"FP32 top-1 takes {classes} distinct classes over the {len(ev)} images (few: agreement is an easy test)")
    print(
        "| model | rel L2 vs reference | top-1 agreement | reference |"
        + (" top-1 accuracy |" if labels is not None else "")
    )
    print("|---|---|---|---|" + ("---|" if labels is not None else ""))
    label = {"int8": "INT8, FP32 glue", "int8.fp16glue": "INT8, FP16 glue", "fp32": "FP32"}
    for name, ref in (("fp32", "fp32"), ("int8", "fp32"), ("int8.fp16glue", "fp32"), ("int8.fp16glue", "int8")):
        acc = f" {(y[name].argmax(1) == labels).mean() * 100:.1f}% |" if labels is not None else ""
        print(f"| {label[name]} | {rel_l2(y[name], y[ref]):.4f} | {top1(y[name], y[ref]):.3f} | {label[ref]} |{acc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calib", type=int, default=128, help="calibration images")
    ap.add_argument("--eval", type=int, default=256, help="evaluation images (after the calibration ones)")
    ap.add_argument("--model", choices=("mnist", "resnet18", "both"), default="both")
    args = ap.parse_args()

    import onnx
    import onnxruntime

    print(
        f"CPU: {cpu_model()}; Python {platform.python_version()}, ONNX Runtime {onnxruntime.__version__}, "
        f"onnx {onnx.__version__}"
    )
    for which in ("mnist", "resnet18") if args.model == "both" else (args.model,):
        compare(which, args.calib, args.eval)


if __name__ == "__main__":
    main()
