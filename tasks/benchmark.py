"""Stage ``benchmark@<target>-<precision>``: latency of the built artifact on its target.

Per batch size in ``bench.batch_sizes``: time-based warm-up, then calls until both
``bench.min_duration_s`` and ``bench.min_iterations`` are met, on real eval inputs. Reports
min/mean/p50/p90/p95/p99/max (ms), throughput (samples/s) and the coefficient of variation
(per call, and of window medians: a warning when the latter exceeds ``bench.max_cv``). On a
local target, the FP32 benchmark also measures PyTorch eager on the same inputs, side by side,
and reports the p50 speedup; the report divides the same PyTorch figure by every precision's p50
(the PyTorch model is the same for all of them: measuring it once per target instead of once per
precision saves ~6 s per precision). Output: ``metrics/benchmark/<key>.json``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from tasks import stage
from tasks.config import Config
from tasks.data.split import Split
from tasks.io import write_json
from tasks.metrics.latency import measure, summarize
from tasks.runtimes import get_runtime


def metrics_path(key: str) -> Path:
    return stage.METRICS / "benchmark" / f"{key}.json"


def batch_of(split: Split, b: int) -> np.ndarray:
    """``b`` real samples (repeated when the split is smaller), float32 (b, C, H, W)."""
    idx = np.arange(b) % len(split)
    return np.ascontiguousarray(split.x[idx])


def run(cfg: Config, target_name: str, artifact: Path, eval_dir: Path, log: Callable[[str], None] = print,
        precision: str = "fp32") -> dict:
    target, b = cfg.target[target_name], cfg.bench
    rt = get_runtime(target.runtime)
    sess = rt.load(artifact, target.threads)
    torch_sess = None
    if b.torch_baseline and precision == "fp32" and target.transport == "local" and cfg.model.format != "onnx":
        torch_sess = get_runtime("torch").session(cfg.model, target.threads)
    split = Split(eval_dir)
    res: dict = {"runtime": rt.name, "runtime_version": rt.version(), "threads": target.threads,
                 "cpu_count": os.cpu_count(), "latency": {}, "unstable": []}
    if torch_sess:
        res["torch"], res["speedup_vs_torch"] = {}, {}
    for bs in b.batch_sizes:
        x = batch_of(split, bs)
        stats = summarize(measure(lambda: sess.infer(x), b.warmup_s, b.min_duration_s, b.min_iterations), bs)
        res["latency"][f"b{bs}"] = stats
        line = f"batch {bs}: p50 {stats['p50_ms']:.3f} ms, p99 {stats['p99_ms']:.3f} ms, {stats['throughput']:.0f}/s"
        if stats["cv_windows"] > b.max_cv:
            res["unstable"].append(f"b{bs}")
            log(f"WARNING: batch {bs} latency drifted during the run (CV of window medians "
                f"{stats['cv_windows']:.1%} > bench.max_cv {b.max_cv:.1%}): other load or frequency scaling; "
                "these figures are less trustworthy")
        if torch_sess:
            t = summarize(measure(lambda: torch_sess.infer(x), b.warmup_s, b.min_duration_s, b.min_iterations), bs)
            res["torch"][f"b{bs}"] = t
            res["speedup_vs_torch"][f"b{bs}"] = t["p50_ms"] / stats["p50_ms"]
            line += f"; torch eager p50 {t['p50_ms']:.3f} ms ({t['p50_ms'] / stats['p50_ms']:.2f}x)"
        log(line)
    return res


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("benchmark", matrix=True).parse_args(argv)
    k = stage.key(args.target, args.precision)
    with stage.stage_errors(f"benchmark@{k}", outputs=[metrics_path(k)]):
        cfg = stage.load(args)
        from tasks.build import artifact, out_dir
        from tasks.prepare import OUT as PREP

        res = run(cfg, args.target, artifact(out_dir(k)), PREP / "eval", lambda m: stage.log(f"benchmark@{k}", m),
                  precision=args.precision)
        write_json(metrics_path(k), res)


if __name__ == "__main__":
    main()
