"""Batch-1 end to end, split, beside the compute-only p50: what the benchmark stage records under
``end_to_end`` (tasks/metrics/end_to_end.py), for ONNX Runtime and OpenVINO FP32 builds side by side.

Models: ``resnet18`` (bench/resnet18.py, random seeded weights; 224x224 RGB with ImageNet mean/std,
fed 480x640 camera-sized images resized as the prepare stage resizes them), ``example`` (the bundled
MnistCNN, untrained; 28x28 gray, no resize: the split has no meta.npy) and ``yolo`` (the YOLO
example's MnistYolo, untrained; 64x64 gray letterboxed from 96x128, decoded by eval.decoder yolov8:
with random weights nearly every anchor is a candidate, the decoder's worst case).

Each round measures every model's runtimes in turn, alternating their order: the compute-only p50
through the pipeline's own loop (``tasks.metrics.latency``: as the benchmark stage's single-stream
figure), then the end-to-end split (``end_to_end.local``) and the wall time it took (its cost per
build in the pipeline). The table gives the median over rounds of each figure.

    .venv/bin/python bench/end_to_end.py                   # all models, 3 rounds
    .venv/bin/python bench/end_to_end.py --models example --rounds 1 --iterations 50

A benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.machine import cpu_model  # noqa: E402
from tasks.config import Config, from_dict  # noqa: E402
from tasks.data.geometry import fit, warp_image  # noqa: E402
from tasks.data.preprocess import preprocess  # noqa: E402
from tasks.data.split import Split, save_split  # noqa: E402
from tasks.metrics import end_to_end  # noqa: E402
from tasks.metrics.latency import measure, summarize  # noqa: E402
from tasks.runtimes import BuildOptions, get_runtime  # noqa: E402

RUNTIMES = ("onnxruntime", "openvino")
FIGURES = ("compute_only_p50_ms", *(f"{p}_ms" for p in end_to_end.PARTS), "sum_of_parts_ms", "total_ms", "cost_s")


def _export(model, shape: tuple[int, ...], path: Path, input_name: str, output_name: str) -> Path:
    import torch

    torch.onnx.export(
        model.eval(),
        (torch.zeros(2, *shape),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
    )
    return path


def _case(name: str, tmp: Path) -> tuple[Config, Path, Split]:
    """The model's config, FP32 ONNX and a 4-image eval split prepared as the prepare stage does."""
    import torch

    from tasks.config.schema import InputSpec

    p = dataclasses.asdict(Config())
    torch.manual_seed(0)
    if name == "resnet18":
        from bench.resnet18 import resnet18

        model, shape, orig, letterbox = resnet18(seed=0), (3, 224, 224), (480, 640), False
        spec = dict(name="input", shape=list(shape), channel_order="rgb", mean=[0.485, 0.456, 0.406])
        spec.update(std=[0.229, 0.224, 0.225], letterbox=letterbox)
        p["model"].update(task="classification", outputs=["logits"], scores_output="logits")
    elif name == "example":
        from examples.mnist import MnistCNN

        model, shape, orig, letterbox = MnistCNN(), (1, 28, 28), None, False
        spec = dict(name="input", shape=list(shape))
        p["model"].update(task="classification", outputs=["logits"], scores_output="logits")
    else:
        from examples.canvas_yolo import MnistYolo

        model, shape, orig, letterbox = MnistYolo(), (1, 64, 64), (96, 128), True
        spec = dict(name="images", shape=list(shape), mean=[0.045], std=[0.179], letterbox=True)
        p["model"].update(task="detection", outputs=["output0"], scores_output="output0")
        p["eval"]["decoder"] = "yolov8"
    p["model"]["input"].update(spec)
    out = p["model"]["outputs"][0]
    onnx_path = _export(model, shape, tmp / f"{name}.onnx", spec["name"], out)
    cfg = from_dict(Config, p)
    rng, xs, metas = np.random.default_rng(0), [], []
    for _ in range(4):
        hw = orig or shape[1:]
        img = rng.integers(0, 256, (*hw, 3) if shape[0] == 3 else hw, dtype=np.uint8)
        if orig:
            f = fit(orig, shape[1:], letterbox)
            img = warp_image(img, f, InputSpec().pad_value)
            metas.append(f.meta)
        xs.append(preprocess(img[None], cfg.model.input)[0])
    labels = np.zeros((4, 1, 5), np.float32) if name == "yolo" else np.zeros(4, np.int64)
    save_split(tmp / name / "eval", np.stack(xs), labels, np.stack(metas) if metas else None)
    if name == "yolo":
        (tmp / name / "classes.json").write_text('["' + '", "'.join(map(str, range(10))) + '"]')
    return cfg, onnx_path, Split(tmp / name / "eval")


def _one(cfg: Config, sess, runtime: str, split: Split, min_duration_s: float) -> dict:
    x = np.ascontiguousarray(split.x[:1])
    p50 = summarize(measure(lambda: sess.infer(x), 0.2, min_duration_s, 10), 1)["p50_ms"]
    t0 = time.perf_counter()
    e2e = end_to_end.local(cfg, sess, split, runtime)
    return {"compute_only_p50_ms": p50, **e2e, "cost_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["example", "yolo", "resnet18"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=50, help="bench.end_to_end_iterations")
    ap.add_argument("--min-duration-s", type=float, default=1.0, help="compute-only p50 window")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    print(f"end_to_end_iterations {args.iterations}, {args.rounds} round(s); medians over rounds, ms")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows: dict[tuple[str, str], list[dict]] = {}
        cases = {}
        for name in args.models:
            cfg, onnx_path, split = _case(name, tmp)
            cfg.bench.end_to_end_iterations = args.iterations
            sessions = {}
            for rt in RUNTIMES:
                out = tmp / f"{name}-{rt}"
                out.mkdir()
                art = get_runtime(rt).build(onnx_path, "fp32", out, BuildOptions()).artifact
                sessions[rt] = get_runtime(rt).load(art)
            cases[name] = (cfg, split, sessions)
        for r in range(args.rounds):
            for name, (cfg, split, sessions) in cases.items():
                for rt in RUNTIMES if r % 2 == 0 else RUNTIMES[::-1]:
                    rows.setdefault((name, rt), []).append(_one(cfg, sessions[rt], rt, split, args.min_duration_s))
        head = ["model", "runtime", *(f.removesuffix("_ms") for f in FIGURES), "e2e/compute"]
        print(" | ".join(head))
        for (name, rt), runs in rows.items():
            med = {f: statistics.median(run[f] for run in runs) for f in FIGURES}
            cells = [f"{med[f]:.3f}" for f in FIGURES]
            print(" | ".join([name, rt, *cells, f"{med['total_ms'] / med['compute_only_p50_ms']:.2f}x"]))
        for name in cases:
            what = rows[(name, RUNTIMES[0])][0]["what"]
            print(f"{name}: image {what['image']}; preprocess {what['preprocess']}; decode {what['decode']}")


if __name__ == "__main__":
    main()
