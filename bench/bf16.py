"""OpenVINO fp32 vs bf16 (vs fp16 as this CPU runs it) on one model, side by side, through the
pipeline's own build and session code (``tasks.agent.agent.build_openvino`` / ``OvModel``).

Per precision it prints what the CPU plugin really executed (inference precision, the precisions
its compute layers ran in), the largest |output - ONNX Runtime FP32| (absolute, and relative to the largest
|FP32 output|: what ``parity.artifact.<family>`` judges), and the batch-1 p50 of interleaved
rounds (the order of the builds alternates from round to round, so drift hits them all), with its
ratio to fp32. The model is ResNet-18 (bench/resnet18.py, random seeded weights: the figures are
about numerics and speed, not accuracy), or any single-input ONNX given with ``--onnx``.

    .venv/bin/python bench/bf16.py                       # ResNet-18, 3 rounds (a few minutes on 2 cores)
    .venv/bin/python bench/bf16.py --quick               # smoke run
    .venv/bin/python bench/bf16.py --onnx artifacts/export/model.onnx --shape 1 28 28

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.machine import cpu_model  # noqa: E402
from tasks.agent import agent  # noqa: E402
from tasks.metrics.latency import measure, summarize  # noqa: E402

PRECISIONS = ("fp32", "bf16", "fp16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", type=Path, default=None, help="a single-input ONNX (default: ResNet-18, exported)")
    p.add_argument("--shape", type=int, nargs="+", default=[3, 224, 224], help="one sample's shape (default 3 224 224)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-duration-s", type=float, default=2.0)
    p.add_argument("--samples", type=int, default=8, help="inputs compared for the numerics (default 8)")
    p.add_argument("--quick", action="store_true", help="1 round of 0.3 s")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.min_duration_s = 1, 0.3
    return args


def resnet18_onnx(path: Path) -> Path:
    from bench.ort_vs_torch import export_onnx
    from bench.resnet18 import resnet18

    export_onnx(resnet18(seed=0), path, 18)
    return path


def main(argv: list[str] | None = None) -> None:
    import onnxruntime as ort

    args = parse_args(argv)
    load0 = os.getloadavg()[0]
    fp = agent.cmd_probe({"trtexec": None})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = args.onnx or resnet18_onnx(tmp / "resnet18.onnx")
        x = np.random.default_rng(0).standard_normal((args.samples, *args.shape)).astype(np.float32)
        sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
        want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        models, facts = {}, {}
        for p in PRECISIONS:
            (tmp / p).mkdir()
            # fp16 as EdgeForge builds it where the CPU has no FP16 compute (no hint: the plugin's choice)
            art, meta = agent.build_openvino(
                src, tmp / p, p, emulated=p == "fp16" and "avx512_fp16" not in fp["cpu"]["flags"]
            )
            models[p] = agent.OvModel(art)
            got = next(iter(models[p].infer(x).values()))
            err = float(np.max(np.abs(got - want)))
            facts[p] = (meta["inference_precision"], meta["compute_precisions"], err, err / float(np.max(np.abs(want))))
        one = x[:1].copy()
        p50 = {p: [] for p in PRECISIONS}
        for r in range(args.rounds):
            for p in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
                m = models[p]
                p50[p].append(summarize(measure(lambda m=m: m.infer(one), 0.2, args.min_duration_s, 10), 1)["p50_ms"])
    print(f"CPU: {cpu_model()} ({fp['cpu']['cores']} cores; flags {' '.join(fp['cpu']['flags'])})")
    print(f"load average (1 min): {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print(f"model: {args.onnx or 'ResNet-18 (random weights)'}, OpenVINO {agent.runtime_version('openvino')}")
    print(
        f"{'build':6} {'executes':9} {'max|d| vs ORT FP32':>19} {'relative':>9} {'p50 ms b1':>10} {'x fp32':>7}  compute precisions"
    )
    base = statistics.median(p50["fp32"])
    for p in PRECISIONS:
        inf, ops, err, rel = facts[p]
        med = statistics.median(p50[p])
        print(f"{p:6} {inf:9} {err:19.4g} {rel:9.2%} {med:10.3f} {base / med:7.2f}  {ops}")


if __name__ == "__main__":
    main()
