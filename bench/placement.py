"""TensorRT-layout Q/DQ placement, old against new, on a ResNet-18 in OpenVINO (CPU).

The ResNet-18 of bench/resnet18.py (random seeded weights, exported as bench/calibration.py
does) is calibrated with minmax on ``--calib`` real digits at 224x224 (bench/calibration.py's
images), then quantized twice from the same ranges:

- old: ORT's own placement (``EdgeForgePlacement="ort"`` with the TensorRT options): every op type
  ORT's Q/DQ registry knows, so MaxPool, Relu, Flatten, ... may get Q/DQ too, and no Q/DQ on the
  residual input of a downsample block's Add;
- new: the default TensorRT placement (tasks/quant/placement.py): weighted-op inputs plus the
  residual input of residual Adds.

It prints Q/DQ pair counts and residual Adds, the agreement of each model with FP32 on
``--eval`` other digits (top-1 agreement and relative L2 of the logits, OpenVINO), then batch-1
latency through the pipeline's openvino runtime (build + load, ``--threads`` threads), FP32, old
and new timed side by side in interleaved rounds (median p50 of the rounds).

    .venv/bin/python bench/placement.py            # 128 calib, 200 eval images, 5 rounds of 3 s
    .venv/bin/python bench/placement.py --quick    # 32 calib, 32 eval, 1 round of 0.5 s

Prints figures; asserts nothing. On this CPU OpenVINO runs the Q/DQ models with int8 kernels;
TensorRT's Conv+Add fusion itself can only be seen on a Jetson.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.calibration import export, latency, make_images  # noqa: E402
from bench.machine import cpu_model  # noqa: E402


def quantize(onnx_path: Path, images: np.ndarray, batch: int, td: Path) -> dict[str, tuple[Path, dict]]:
    from tasks.quant import TRT_EXTRA_OPTIONS, calibrate, quantize_qdq

    ranges = calibrate(
        onnx_path,
        (np.ascontiguousarray(images[i : i + batch]) for i in range(0, len(images), batch)),
        "minmax",
        input_name="input",
    )
    old = {**TRT_EXTRA_OPTIONS, "EdgeForgePlacement": "ort"}
    return {
        "old": (td / "old.onnx", quantize_qdq(onnx_path, ranges, td / "old.onnx", extra_options=old)),
        "new": (td / "new.onnx", quantize_qdq(onnx_path, ranges, td / "new.onnx")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-duration-s", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="32 calib and 32 eval images, 1 round of 0.5 s")
    a = ap.parse_args()
    if a.quick:
        a.calib, a.eval, a.rounds, a.min_duration_s = 32, 32, 1, 0.5

    import openvino

    from tasks.runtimes import BuildOptions, get_runtime

    print(
        f"OpenVINO {openvino.__version__}, {cpu_model()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, {a.threads} threads"
    )
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-placement-") as td:
        td = Path(td)
        onnx_path, npy = td / "resnet18.onnx", td / "images.npy"
        export(onnx_path)
        make_images(a.calib + a.eval, npy)
        images = np.load(npy, mmap_mode="r")
        calib, evals = images[: a.calib], np.ascontiguousarray(images[a.calib :])
        layouts = quantize(onnx_path, calib, 32, td)
        print(f"\n{'layout':<6} {'Q/DQ pairs':>10} {'residual Adds':>14} {'nodes fed by DQ':>16}")
        for name, (_, f) in layouts.items():
            print(f"{name:<6} {f['quantize_linear']:>10} {len(f['residual_adds']):>14} {len(f['quantized_nodes']):>16}")

        print()
        ov = get_runtime("openvino")
        models = {"fp32": onnx_path, **{k: p for k, (p, _) in layouts.items()}}
        artifacts, sessions = {}, {}
        for name, src in models.items():
            d = td / f"ov-{name}"
            d.mkdir()
            built = ov.build(src, "fp32" if name == "fp32" else "int8-minmax", d, BuildOptions(threads=a.threads))
            artifacts[name] = built.artifact
            print(f"openvino {name}: {built.meta['runtime_precisions']}")
            sessions[name] = ov.load(built.artifact, a.threads)

        def logits(name: str) -> np.ndarray:
            s = sessions[name]
            return np.concatenate([next(iter(s.infer(evals[i : i + 1]).values())) for i in range(len(evals))])

        ref = logits("fp32")
        print(f"\nagreement with FP32 on {len(evals)} digits (OpenVINO):")
        for name in layouts:
            y = logits(name)
            top1 = float(np.mean(y.argmax(1) == ref.argmax(1)))
            rel = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
            print(f"  {name:<4} top-1 agreement {top1:6.1%}   rel L2 {rel:.4f}")

        sessions.clear()  # latency() compiles its own
        med = latency(artifacts, a.rounds, a.min_duration_s, a.threads)
        print(f"\nbatch-1 latency (OpenVINO CPU), median p50 of {a.rounds} interleaved round(s):")
        for k, v in med.items():
            print(f"  {k:<5} {v:8.2f} ms   / FP32 = {v / med['fp32']:.2f}")
        print(f"  new / old = {med['new'] / med['old']:.3f}")


if __name__ == "__main__":
    main()
