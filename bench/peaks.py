"""This machine's compute peaks (nominal and measured), and ResNet-18's roofline efficiency against them.

1. Nominal peaks per precision family from this machine's fingerprint (``tasks.device.peaks``), with
   their basis; none where the fingerprint has no stable clock.
2. Measured peaks: the agent's ``peak`` command (chained GEMMs timed in ONNX Runtime and OpenVINO at
   each precision they run), before and after the ResNet-18 runs (the machine's load drifts: both
   are printed, the higher one is used).
3. ResNet-18 (bench/resnet18.py, random seeded weights, exported as bench/calibration.py does):
   ORT FP32, OpenVINO FP32 and OpenVINO INT8 (minmax Q/DQ, calibrated on real digits) at each batch
   size, interleaved rounds (order flipped each round; median p50 of the rounds); achieved GFLOP/s =
   FLOPs per sample (``tasks.metrics.flops``, as the benchmark stage counts them) x samples/s, and
   its fraction of the measured peak of the family the build runs, at batch 1 and at the best batch.
   The issue's targets, printed beside (not judged): FP32 >= 60% of the measured FP32 peak at the
   best batch; OpenVINO INT8 >= 35% of the measured int8 peak at the best batch.

    .venv/bin/python bench/peaks.py             # batch 1, 8, 32; 3 rounds of 2 s (a few minutes)
    .venv/bin/python bench/peaks.py --quick     # batch 1 and 8, 1 round of 0.5 s

Prints figures; asserts nothing.
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

from bench.calibration import export, make_images  # noqa: E402
from bench.machine import cpu_model  # noqa: E402

BUILDS = (("ORT fp32", "onnxruntime", "fp32"), ("OV fp32", "openvino", "fp32"), ("OV int8", "openvino", "int8"))
TARGETS = {"fp32": 0.60, "int8": 0.35}  # the targets at the best batch size


def measured_peaks(threads: int | None, td: Path) -> dict[str, dict]:
    from tasks.agent.agent import cmd_peak

    return {
        rt: cmd_peak({"runtime": rt, "threads": threads, "out_dir": str(td)})["measured"]
        for rt in ("onnxruntime", "openvino")
    }


def print_peaks(fp: dict, before: dict, after: dict) -> None:
    from tasks.device.peaks import FAMILIES, nominal

    print("\nnominal peaks (GFLOP/s; int8: GOP/s), from the fingerprint:")
    for fam, p in nominal(fp, "onnxruntime").items():
        print(
            f"  {fam:5s} {p['gflops'] or 0:9.1f}  {p['basis']}"
            if p["gflops"]
            else f"  {fam:5s}      none  {p['basis']}"
        )
    print("\nmeasured peaks, chained GEMMs in the runtime (before / after the ResNet-18 runs):")
    for rt in before:
        for fam in FAMILIES:
            b, a = before[rt].get(fam, {}), after[rt].get(fam, {})
            if "gflops" in b:
                shape = "x".join(map(str, b["shape"][1:]))
                print(
                    f"  {rt:11s} {fam:5s} {b['gflops']:8.1f} / {a.get('gflops', 0):8.1f}  ({b['runtime_precision']}, {shape})"
                )
            elif b:
                print(f"  {rt:11s} {fam:5s}  skipped: {b['skipped']}")


def build(td: Path, onnx_path: Path, images: np.ndarray) -> dict[str, Path]:
    from tasks.quant import calibrate, quantize_qdq
    from tasks.runtimes import BuildOptions, get_runtime

    ranges = calibrate(onnx_path, (images[i : i + 8] for i in range(0, len(images), 8)), "minmax", input_name="input")
    quantize_qdq(onnx_path, ranges, td / "int8.onnx")
    ov, out = get_runtime("openvino"), {"ORT fp32": onnx_path}
    for name, src, precision in (("OV fp32", onnx_path, "fp32"), ("OV int8", td / "int8.onnx", "int8-minmax")):
        (td / precision).mkdir()
        built = ov.build(src, precision, td / precision, BuildOptions())
        print(f"{name}: OpenVINO runs {built.meta['inference_precision']}, ops {built.meta['runtime_precisions']}")
        out[name] = built.artifact
    return out


def latencies(
    models: dict[str, Path], images: np.ndarray, batches: list[int], rounds: int, min_s: float, threads
) -> dict:
    """``{build: {batch: median p50 ms}}``, interleaved rounds."""
    from tasks.metrics.latency import measure, summarize
    from tasks.runtimes import get_runtime

    sessions = {
        k: get_runtime("openvino" if p.suffix == ".xml" else "onnxruntime").load(p, threads) for k, p in models.items()
    }
    p50: dict = {k: {b: [] for b in batches} for k in models}
    for r in range(rounds):
        for k in list(models) if r % 2 == 0 else list(models)[::-1]:
            for b in batches:
                x = np.ascontiguousarray(images[np.arange(b) % len(images)])
                s = sessions[k]
                p50[k][b].append(summarize(measure(lambda: s.infer(x), 0.3, min_s, 5), b)["p50_ms"])  # noqa: B023
    return {k: {b: statistics.median(v) for b, v in per.items()} for k, per in p50.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-s", type=float, default=2.0, help="measured seconds per build, batch and round")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="batch 1 and 8, one round of 0.5 s")
    a = ap.parse_args()
    if a.quick:
        a.batch_sizes, a.rounds, a.min_s = [1, 8], 1, 0.5
    from tasks.agent.agent import cmd_probe
    from tasks.metrics.flops import count_flops

    fp = cmd_probe({})
    cpu = fp["cpu"]
    print(f"CPU: {cpu_model()} (vendor {cpu.get('vendor')}, family {cpu.get('family')}, model {cpu.get('model_id')}),")
    print(
        f"     {cpu.get('physical_cores')} physical cores, nominal clock {cpu.get('mhz_nominal')} MHz, flags {cpu['flags']}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f} (on a busy machine the figures say how busy it was)")
    with tempfile.TemporaryDirectory() as tmp:
        td = Path(tmp)
        before = measured_peaks(a.threads, td)
        onnx_path = td / "resnet18.onnx"
        export(onnx_path)
        make_images(32, td / "images.npy")
        images = np.load(td / "images.npy")
        models = build(td, onnx_path, images[:16])
        flops = count_flops(onnx_path)["per_sample"]
        p50 = latencies(models, images, a.batch_sizes, a.rounds, a.min_s, a.threads)
        after = measured_peaks(a.threads, td)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print_peaks(fp, before, after)
    print(
        f"\nResNet-18: {flops / 1e9:.3f} GFLOP/sample; median p50 of {a.rounds} interleaved round(s), {a.min_s} s each"
    )
    print(f"{'build':9s} {'batch':>5s} {'p50 ms':>8s} {'GFLOP/s':>8s} {'peak':>8s} {'eff.':>6s}")
    for name, rt, fam in BUILDS:
        peak = max(m[rt].get(fam, {}).get("gflops", 0) for m in (before, after))
        achieved = {b: flops * b / (p50[name][b] / 1e3) / 1e9 for b in a.batch_sizes}
        for b in a.batch_sizes:
            print(f"{name:9s} {b:5d} {p50[name][b]:8.2f} {achieved[b]:8.1f} {peak:8.1f} {pct(achieved[b], peak):>6s}")
        best = max(achieved, key=achieved.get)
        print(
            f"{name}: batch 1 {pct(achieved.get(1, 0), peak)}, best batch {best} {pct(achieved[best], peak)} of the "
            f"measured {rt} {fam} peak (issue target: >= {TARGETS[fam]:.0%} at the best batch)"
        )


def pct(achieved: float, peak: float) -> str:
    """The fraction of the peak; never above 100% (a measurement error: the peak or the FLOP count is wrong)."""
    if not peak:
        return "none"
    return f"{achieved / peak:.1%}" if achieved <= peak else "error (above the peak)"


if __name__ == "__main__":
    main()
