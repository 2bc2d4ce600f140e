"""Benchmark fidelity: does EdgeForge's latency figure match what the runtime itself measures?

On one ONNX model at batch 1, with the same thread count:

- ONNX Runtime: the ``benchmark`` stage's measurement (``tasks.runtimes`` session,
  ``tasks.metrics.latency.measure``/``summarize``) against a bare loop of
  ``InferenceSession.run`` timed with ``perf_counter``;
- OpenVINO: the same stage measurement on the IR the ``openvino`` runtime builds, against
  OpenVINO's own ``benchmark_app`` (shipped with the ``openvino`` package; ``-api sync -nireq 1
  -nstreams 1 -nthreads N -hint none -infer_precision f32``: benchmark_app accepts no thread count
  with a hint; one stream is what our LATENCY hint gives on CPU; f32 is what the fp32 build
  compiles with), its "Median" latency.

Each of the four runs ``--runs`` times (default 5), interleaved, ``--seconds`` each after a
warm-up. Printed: the median over runs of each one's p50, EdgeForge / reference, and the
run-to-run CV of the p50 (std/mean over the runs). ``--model example`` (default) is the bundled
example's exported ONNX (``artifacts/export/model.onnx``: run ``make run`` first); ``--model
resnet18`` exports ``bench/resnet18.py``'s ResNet-18.

    .venv/bin/python bench/fidelity.py                    # about 1 minute
    .venv/bin/python bench/fidelity.py --model resnet18   # about 2 minutes

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.metrics.latency import measure, summarize  # noqa: E402
from tasks.runtimes import BuildOptions, get_runtime  # noqa: E402


def model_path(which: str, tmp: Path) -> tuple[Path, tuple[int, ...]]:
    if which == "example":
        path = ROOT / "artifacts/export/model.onnx"
        if not path.is_file():
            sys.exit(f"{path} missing: run `make run` first (or use --model resnet18)")
        return path, (1, 1, 28, 28)
    import torch

    from bench.resnet18 import example_input, resnet18

    path = tmp / "resnet18.onnx"
    torch.onnx.export(
        resnet18(seed=0).eval(),
        (example_input(1),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        opset_version=18,
        dynamo=True,
    )
    return path, (1, 3, 224, 224)


def edgeforge_p50(runtime: str, artifact: Path, x: np.ndarray, threads: int, seconds: float) -> float:
    sess = get_runtime(runtime).load(artifact, threads)
    return summarize(measure(lambda: sess.infer(x), 1.0, seconds, 10), 1)["p50_ms"]


def bare_ort_p50(path: Path, x: np.ndarray, threads: int, seconds: float) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x}
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        s.run(None, feed)
    lat, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        s.run(None, feed)
        lat.append(time.perf_counter() - t0)
    return float(np.median(lat) * 1e3)


def benchmark_app_p50(xml: Path, shape: tuple[int, ...], threads: int, seconds: float) -> float:
    exe = Path(sys.executable).with_name("benchmark_app")
    r = subprocess.run(
        [
            str(exe),
            "-m",
            str(xml),
            "-d",
            "CPU",
            "-api",
            "sync",
            "-nireq",
            "1",
            "-nstreams",
            "1",
            "-hint",
            "none",
            "-nthreads",
            str(threads),
            "-t",
            str(int(seconds)),
            "-infer_precision",
            "f32",  # what our fp32 build compiles with (bf16 CPUs default to bf16)
            "-shape",
            f"[{','.join(map(str, shape))}]",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # the latency block's median, in the unit benchmark_app chose (us for fast models)
    m = re.search(r"Latency:\s*\n.*?Median:\s*([\d.]+)\s*(us|ms|s)\b", r.stdout, re.S)
    if not m:
        sys.exit(f"benchmark_app printed no median latency:\n{r.stdout[-2000:]}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["example", "resnet18"], default="example")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        onnx_path, shape = model_path(args.model, tmp)
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        xml = get_runtime("openvino").build(onnx_path, "fp32", tmp, BuildOptions(threads=args.threads)).artifact
        p50: dict[str, list[float]] = {k: [] for k in ("ef_ort", "bare_ort", "ef_ov", "benchmark_app")}
        for r in range(args.runs):
            p50["ef_ort"].append(edgeforge_p50("onnxruntime", onnx_path, x, args.threads, args.seconds))
            p50["bare_ort"].append(bare_ort_p50(onnx_path, x, args.threads, args.seconds))
            p50["ef_ov"].append(edgeforge_p50("openvino", xml, x, args.threads, args.seconds))
            p50["benchmark_app"].append(benchmark_app_p50(xml, shape, args.threads, args.seconds))
            print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.4f} ms" for k, v in p50.items()), flush=True)
    med = {k: statistics.median(v) for k, v in p50.items()}
    cv = {k: statistics.pstdev(v) / statistics.mean(v) for k, v in p50.items()}
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads; model "
        f"{args.model} {shape}; {args.runs} interleaved runs of {args.seconds:g} s; median of p50 (run-to-run CV):"
    )
    for a, b, label in (
        ("ef_ort", "bare_ort", "ONNX Runtime: EdgeForge vs bare session.run"),
        ("ef_ov", "benchmark_app", "OpenVINO:     EdgeForge vs benchmark_app"),
    ):
        print(f"  {label}: {med[a]:.4f} ms ({cv[a]:.1%}) vs {med[b]:.4f} ms ({cv[b]:.1%}); ratio {med[a] / med[b]:.3f}")


if __name__ == "__main__":
    main()
