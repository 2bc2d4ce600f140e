"""LiteRT (fp32, fp16 weights, int8-minmax) vs PyTorch eager on a ResNet-18, batch 1, side by side.

The model (bench/resnet18.py, random seeded weights) is exported to ONNX and simplified as
bench/ort_int8.py does, converted by EdgeForge's LiteRT conversion (tasks/runtimes/litert_convert.py:
onnx2tf, then TFLite's converter; INT8 calibrated on real photos, bench/ort_int8.py ``photos``) and run
by ai_edge_litert's Interpreter with XNNPACK (tasks/agent/litert_model.py), every runtime with the same
thread count. Timing is the pipeline's own (``tasks.metrics.latency``), interleaved: each round times
every runtime once, the order rotating from round to round, so drift hits all of them. The table gives
the median over rounds of each runtime's p50, and torch p50 / its p50 (> 1: faster than eager).

    .venv/bin/python bench/litert_resnet18.py              # 3 rounds, 2 threads (about 3 minutes on 2 cores)
    .venv/bin/python bench/litert_resnet18.py --quick      # smoke run

A benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.machine import cpu_model  # noqa: E402
from bench.ort_int8 import export, photos  # noqa: E402
from bench.resnet18 import resnet18  # noqa: E402
from tasks.agent.litert_model import LiteRTModel  # noqa: E402
from tasks.metrics.latency import measure, summarize  # noqa: E402
from tasks.runtimes import litert_convert  # noqa: E402
from tasks.runtimes.torch_rt import TorchSession  # noqa: E402

PRECISIONS = litert_convert.PRECISIONS
DEFAULTS = {"rounds": 3, "warmup_s": 1.0, "min_duration_s": 3.0, "min_iterations": 10}
QUICK = {"rounds": 1, "warmup_s": 0.1, "min_duration_s": 0.3, "min_iterations": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument(
        "--keep", type=Path, default=None, help="folder to keep the .tflite files in and reuse them from (time only)"
    )
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cpus, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
    print(f"machine : {cpu_model()}; {cpus} usable CPUs; 1-min load average {load:.2f}")
    if load > max(0.5, cpus - args.threads + 0.5):
        print("WARNING : the machine is busy: the runtimes compete with other processes (torch's OpenMP pool worst)")
    calib = photos()  # (32, 3, 224, 224) real photos, ImageNet-normalised
    x = np.ascontiguousarray(calib[:1])
    sessions = {"torch eager": TorchSession(resnet18(seed=0), "input", ["logits"], threads=args.threads)}
    with tempfile.TemporaryDirectory(prefix="edgeforge-litert-bench-") as td:
        onnx_path, keep = Path(td) / "resnet18.onnx", args.keep or Path(td)
        for p in PRECISIONS:
            art, t0 = keep / p / litert_convert.ARTIFACT, time.perf_counter()
            if art.is_file():
                print(f"reuse   : {art}")
            else:
                if not onnx_path.is_file():
                    export(onnx_path)
                batches = [calib[i : i + 8] for i in range(0, len(calib), 8)]
                art, meta = litert_convert.convert(onnx_path, p, lambda b=batches: iter(b), keep / p)
                v = meta["versions"]
                print(
                    f"convert : {p:<11} {time.perf_counter() - t0:5.1f} s, {art.stat().st_size / 1e6:5.1f} MB, "
                    f"int8/float ops {meta['int8_ops']}/{meta['float_ops']}, max |LiteRT - ORT| "
                    f"{max(meta['check_max_abs_diff_vs_onnxruntime'].values()):.2e} (onnx2tf {v['onnx2tf']}, "
                    f"tensorflow {v['tensorflow']}, ai-edge-litert {v['ai_edge_litert']})",
                    flush=True,
                )
            sessions[f"LiteRT {p}"] = LiteRTModel(art, args.threads)
        names, per = list(sessions), {n: [] for n in sessions}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                st = summarize(
                    measure(partial(sessions[n].infer, x), args.warmup_s, args.min_duration_s, args.min_iterations), 1
                )
                per[n].append(st["p50_ms"])
                print(f"round {r + 1}/{args.rounds}  {n:<19} p50 {st['p50_ms']:8.2f} ms  ({st['iterations']} calls)")
    torch_p50 = statistics.median(per["torch eager"])
    print(
        f"\nResNet-18, batch 1, {args.threads} threads, median p50 over {args.rounds} round(s) (min-max of the rounds):"
    )
    for n in names:
        p50 = statistics.median(per[n])
        spread = f"{min(per[n]):.2f}-{max(per[n]):.2f}"
        print(f"  {n:<19} {p50:8.2f} ms  ({spread} ms)  torch/this {torch_p50 / p50:5.2f}x")
    print(f"load    : 1-min load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
