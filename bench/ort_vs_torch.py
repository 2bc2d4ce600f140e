"""PyTorch eager vs ONNX Runtime (FP32, CPUExecutionProvider) on a ResNet-18, side by side.

The model (bench/resnet18.py, random seeded weights) is exported with the dynamo exporter
(opset 18, dynamic batch) into a temporary directory, then both runtimes are timed at each batch
size with the pipeline's own measurement code (``tasks.metrics.latency.measure``/``summarize``:
time-based warm-up, then calls until both a minimum duration and a minimum iteration count are
met) through the pipeline's own sessions (``tasks.runtimes``), with the same thread count.

Measurements are interleaved: each round measures every batch size on both runtimes, and the
order of the two runtimes alternates from round to round, so slow drift (other load, frequency
scaling) hits both. The table reports, per batch size, the median over rounds of each runtime's
p50 / p99 / CV, and torch p50 / ORT p50 (> 1: ONNX Runtime is faster).

    .venv/bin/python bench/ort_vs_torch.py            # 3 rounds, batch 1 and 32 (a few minutes on 2 cores)
    .venv/bin/python bench/ort_vs_torch.py --quick    # smoke run (about half a minute)
    .venv/bin/python bench/ort_vs_torch.py --threads 4 --rounds 5 --json out.json

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.machine import cpu_model  # noqa: E402
from bench.resnet18 import INPUT_SHAPE, count_parameters, example_input, resnet18  # noqa: E402
from tasks.metrics.latency import measure, summarize  # noqa: E402
from tasks.runtimes.onnxruntime_rt import OrtSession  # noqa: E402
from tasks.runtimes.torch_rt import TorchSession  # noqa: E402

INPUT_NAME, OUTPUT_NAME = "input", "logits"
RUNTIMES = ("torch", "ort")
LABEL = {"torch": "torch eager", "ort": "ORT FP32"}
DEFAULTS = {"rounds": 3, "warmup_s": 1.0, "min_duration_s": 3.0, "min_iterations": 10}
QUICK = {"rounds": 1, "warmup_s": 0.1, "min_duration_s": 0.3, "min_iterations": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"intra-op threads for both runtimes (default: torch's default, here {torch.get_num_threads()})",
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], metavar="B", help="default: 1 32")
    p.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds (default {DEFAULTS['rounds']})")
    p.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help=f"warm-up seconds before each measurement (default {DEFAULTS['warmup_s']})",
    )
    p.add_argument(
        "--min-duration-s",
        type=float,
        default=None,
        help=f"minimum measured seconds per measurement (default {DEFAULTS['min_duration_s']})",
    )
    p.add_argument(
        "--min-iterations",
        type=int,
        default=None,
        help=f"minimum measured calls per measurement (default {DEFAULTS['min_iterations']})",
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset of the export (default 18)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + " (explicit flags still win)",
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every figure as JSON here")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.threads is None:
        args.threads = torch.get_num_threads()
    if args.threads < 1 or args.rounds < 1 or min(args.batch_sizes) < 1:
        p.error("--threads, --rounds and --batch-sizes must be >= 1")
    return args


def export_onnx(model: torch.nn.Module, path: Path, opset: int) -> float:
    """Dynamo export with a dynamic batch axis (as tasks/export.py does); returns seconds taken."""
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model,
            (example_input(2),),
            dynamo=True,
            opset_version=opset,  # batch 2: 1 gets specialised
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        prog.save(str(path))
    return time.perf_counter() - t0


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # not installed, or no __version__
        return "n/a"


def environment(args: argparse.Namespace) -> dict:
    import onnxruntime as ort

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnx": _version("onnx"),
        "onnxscript": _version("onnxscript"),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "threads": args.threads,
        "torch_default_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = environment(args)  # before TorchSession changes torch's thread count
    print(
        f"versions: python {env['python']}, torch {env['torch']}, onnxruntime {env['onnxruntime']}, "
        f"onnx {env['onnx']}, onnxscript {env['onnxscript']}, numpy {env['numpy']}"
    )
    print(
        f"machine : {env['cpu']}; {env['usable_cpus']} usable of {env['cpu_count']} CPUs; "
        f"1-min load average {env['loadavg_1m']:.2f}"
        if env["loadavg_1m"] is not None
        else f"machine : {env['cpu']}"
    )
    print(
        f"threads : {args.threads} for both (torch.set_num_threads; ORT intra_op_num_threads, inter_op 1); "
        f"torch default here {env['torch_default_threads']}"
    )
    busy_at = max(0.5, env["usable_cpus"] - args.threads + 0.5)
    if env["loadavg_1m"] is not None and env["loadavg_1m"] > busy_at:
        print(
            f"WARNING : the machine is busy (1-min load average {env['loadavg_1m']:.2f} on {env['usable_cpus']} CPUs): "
            "the runtimes compete with other processes for cores, and torch's OpenMP pool degrades much more "
            "than ORT's when oversubscribed. Treat these figures as a smoke test, not a measurement "
            "(or use --threads below the number of idle cores)."
        )
    print(
        f"settings: batch sizes {args.batch_sizes}, {args.rounds} round(s), warm-up {args.warmup_s} s, "
        f"min duration {args.min_duration_s} s, min iterations {args.min_iterations}"
        + (" [--quick]" if args.quick else "")
    )

    model = resnet18(seed=args.seed)
    print(
        f"model   : ResNet-18 (bench/resnet18.py), {count_parameters(model):,} parameters, "
        f"input (B, {', '.join(map(str, INPUT_SHAPE))}), random weights (seed {args.seed})"
    )
    results: dict = {
        "environment": env,
        "settings": {
            k: getattr(args, k)
            for k in ("batch_sizes", "rounds", "warmup_s", "min_duration_s", "min_iterations", "opset", "seed", "quick")
        },
        "rounds": [],
        "summary": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-") as td:
        onnx_path = Path(td) / "resnet18.onnx"
        secs = export_onnx(model, onnx_path, args.opset)
        print(
            f"export  : dynamo, opset {args.opset}, dynamic batch -> {onnx_path.stat().st_size / 1e6:.1f} MB "
            f"in {secs:.1f} s (temporary)"
        )
        results["export_s"] = secs
        sessions = {
            "torch": TorchSession(model, INPUT_NAME, [OUTPUT_NAME], threads=args.threads),
            "ort": OrtSession(onnx_path, threads=args.threads),
        }
        inputs = {bs: np.ascontiguousarray(example_input(bs, seed=args.seed).numpy()) for bs in args.batch_sizes}
        x = inputs[args.batch_sizes[0]]
        diff = float(np.abs(sessions["torch"].infer(x)[OUTPUT_NAME] - sessions["ort"].infer(x)[OUTPUT_NAME]).max())
        print(f"check   : max |torch - ORT| of the logits at batch {x.shape[0]}: {diff:.2e}")
        results["max_abs_diff"] = diff
        print()

        per: dict = {(rt, bs): [] for rt in RUNTIMES for bs in args.batch_sizes}
        for r in range(args.rounds):
            order = RUNTIMES if r % 2 == 0 else RUNTIMES[::-1]  # alternate who goes first
            for bs in args.batch_sizes:
                for rt in order:
                    st = summarize(
                        measure(
                            partial(sessions[rt].infer, inputs[bs]),
                            args.warmup_s,
                            args.min_duration_s,
                            args.min_iterations,
                        ),
                        bs,
                    )
                    per[(rt, bs)].append(st)
                    results["rounds"].append({"round": r + 1, "runtime": rt, "batch": bs, **st})
                    print(
                        f"round {r + 1}/{args.rounds}  batch {bs:>3}  {LABEL[rt]:<11}  p50 {st['p50_ms']:9.3f} ms  "
                        f"p99 {st['p99_ms']:9.3f} ms  CV {st['cv']:6.1%}  CV(win) {st['cv_windows']:6.1%}  "
                        f"{st['throughput']:8.1f} samples/s  ({st['iterations']} calls)",
                        flush=True,
                    )

    med = statistics.median
    print()
    print(
        f"Median over {args.rounds} round(s) of each round's figure; ratio = torch p50 / ORT p50 (> 1: ORT faster); "
        f"{args.threads} thread(s)"
    )
    head = (
        f"{'batch':>5}  {'torch p50 ms':>12}  {'ORT p50 ms':>10}  {'torch/ORT':>9}  {'torch p99 ms':>12}  "
        f"{'ORT p99 ms':>10}  {'torch CV':>8}  {'ORT CV':>6}  {'p50 spread torch/ORT':>20}"
    )
    print(head)
    print("-" * len(head))
    for bs in args.batch_sizes:
        s = {}
        for rt in RUNTIMES:
            runs = per[(rt, bs)]
            p50s = [x["p50_ms"] for x in runs]
            s[rt] = {
                "p50_ms": med(p50s),
                "p99_ms": med([x["p99_ms"] for x in runs]),
                "cv": med([x["cv"] for x in runs]),
                "cv_windows": med([x["cv_windows"] for x in runs]),
                "throughput": bs / med(p50s) * 1e3,
                "p50_ms_rounds": p50s,
                "p50_spread": (max(p50s) - min(p50s)) / med(p50s),
            }
        ratio = s["torch"]["p50_ms"] / s["ort"]["p50_ms"]
        results["summary"][f"b{bs}"] = {**s, "torch_over_ort": ratio}
        spread = f"{s['torch']['p50_spread']:.1%}/{s['ort']['p50_spread']:.1%}" if args.rounds > 1 else "n/a (1 round)"
        print(
            f"{bs:>5}  {s['torch']['p50_ms']:>12.3f}  {s['ort']['p50_ms']:>10.3f}  {ratio:>8.2f}x  "
            f"{s['torch']['p99_ms']:>12.3f}  {s['ort']['p99_ms']:>10.3f}  {s['torch']['cv']:>8.1%}  "
            f"{s['ort']['cv']:>6.1%}  {spread:>20}"
        )
    print("CV: std/mean of per-call latencies; p50 spread: (max - min) / median of the rounds' p50s.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
