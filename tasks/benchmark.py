"""``benchmark@<target>`` (the first half of stage ``measure@<target>``): latency of each built artifact
on its target, one precision after the other in one process.

Two scenarios in the spirit of MLPerf: *single-stream* (batch 1, one query after the other:
p50/p90/p99 latency) and *offline* (every sample available at once: throughput at each of
``bench.offline_batch_sizes``). Per batch size: time-based warm-up, then calls until both
``bench.min_duration_s`` and ``bench.min_iterations`` are met, on real eval inputs. Reports
min/mean/p50/p90/p95/p99/max (ms), throughput (samples/s) and the coefficient of variation
(per call, and of window medians: above ``bench.max_cv`` the batch size is measured once more, and
flagged unstable with a warning if it drifts again); the cold start (load, first inference) and
the conditions (load, temperatures, clocks, power mode) apart; on TensorRT targets trtexec's own
summary beside EdgeForge's figure; the roofline (FLOPs of the ONNX graph x throughput, against the
nominal and measured peaks ``probe@<target>`` recorded for the family the build executes, never above 100%);
and the latency budget's verdict (``bench.max_p99_ms``). On a
local target, the FP32 benchmark also measures PyTorch eager on the same inputs, side by side,
and reports the p50 speedup; the report divides the same PyTorch figure by every precision's p50
(the PyTorch model is the same for all of them: measuring it once per target instead of once per
precision saves ~6 s per precision). Output per precision: ``metrics/benchmark/<target>/<precision>.json`` (kept when its inputs did
not change, :mod:`tasks.reuse`; ``--precision`` measures one); the build's skipped
record when the build does not apply to the device (:mod:`tasks.device.support`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks import stage
from tasks.agent import remote
from tasks.agent.agent import hygiene, offline_runner
from tasks.agent.client import device
from tasks.config import Config
from tasks.config.load import family
from tasks.data.split import Split
from tasks.device.choices import offline_batch_sizes, run_threads
from tasks.io import read_json
from tasks.layout import LAYOUT
from tasks.metrics import end_to_end
from tasks.metrics.flops import count_flops
from tasks.metrics.latency import measure, summarize
from tasks.records import (
    BenchmarkRecord,
    BuildRecord,
    built_artifact,
    read_fingerprint,
)
from tasks.reuse import each_measured
from tasks.runtimes import get_runtime


def batch_of(split: Split, b: int) -> np.ndarray:
    """``b`` real samples (repeated when the split is smaller), float32 (b, C, H, W)."""
    idx = np.arange(b) % len(split)
    return np.ascontiguousarray(split.x[idx])


def _local_measurements(
    cfg: Config, target_name: str, artifact: Path, split: Split, precision: str, choices: dict | None
):
    """This machine: the artifact (and, for FP32, PyTorch eager) timed in-process, with the build's
    device ``choices`` (session options; OpenVINO's offline batches spread over every stream)."""
    target, b = cfg.target[target_name], cfg.bench
    rt = get_runtime(target.runtime)
    threads = run_threads(choices, target.threads)
    before, t0 = hygiene(), time.perf_counter()
    sess = rt.load(artifact, threads, choices)
    t1 = time.perf_counter()
    sess.infer(batch_of(split, 1))  # the first (cold) inference, timed on its own
    cold = {"load_s": t1 - t0, "first_inference_s": time.perf_counter() - t1}
    offline_sizes = offline_batch_sizes(b)
    offline = offline_runner(rt.name, artifact, threads, choices) if offline_sizes else None

    def runner(bs: int):
        """What times batch size ``bs``: the offline scenario's runner, else the session."""
        return offline if offline and bs in offline_sizes else sess.infer

    torch_sess = None
    if b.torch_baseline and precision == "fp32" and cfg.model.format != "onnx":
        torch_sess = get_runtime("torch").session(cfg.model, target.threads)
    lat, torch_lat = {}, {}
    for bs in b.batch_sizes:
        x, run = batch_of(split, bs), runner(bs)
        lat[bs] = measure(lambda x=x, run=run: run(x), b.warmup_s, b.min_duration_s, b.min_iterations)
        if torch_sess:
            torch_lat[bs] = measure(lambda x=x: torch_sess.infer(x), b.warmup_s, b.min_duration_s, b.min_iterations)
    info = {
        "runtime_version": rt.version(),
        "cpu_count": os.cpu_count(),
        "cold": cold,
        "hygiene": {"before": before, "after": hygiene()},
        "threads": threads,
        "again": lambda bs: measure(
            lambda: runner(bs)(batch_of(split, bs)),
            b.warmup_s,
            b.min_duration_s,
            b.min_iterations,
        ),
        "end_to_end": (lambda: end_to_end.local(cfg, sess, split, target.runtime)) if b.end_to_end else None,
    }
    return lat, torch_lat, info


def _device_measurements(
    cfg: Config,
    target_name: str,
    build_dir: Path,
    split: Split,
    log: Callable[[str], None],
    onnx_path: Path | None,
    choices: dict | None,
):
    """A device: the agent times the artifact there (no PyTorch on the device). TensorRT targets
    also bring trtexec's own figures (``info["trtexec"]``)."""
    x = batch_of(split, max(cfg.bench.batch_sizes))  # the same upload for the first and any second measurement
    name = cfg.model.input.name

    def again(bs: int):
        with device(target_name, cfg.target[target_name], log) as dev:
            single = bs == 1 and cfg.bench.single_stream  # measured again in its own scenario
            bench = dataclasses.replace(cfg.bench, single_stream=single, offline_batch_sizes=[] if single else [bs])
            return remote.latencies(dev, build_dir, x, bench, input_name=name, trtexec=False, end_to_end=False)[0][bs]

    with device(target_name, cfg.target[target_name], log) as dev:
        lat, info = remote.latencies(dev, build_dir, x, cfg.bench, input_name=name)
    info["cpu_count"] = (read_fingerprint(LAYOUT.fingerprint(target_name), target_name).get("cpu") or {}).get("cores")
    info["threads"] = run_threads(choices, cfg.target[target_name].threads)
    info["again"] = again
    if cfg.bench.end_to_end:
        info["end_to_end"] = lambda: end_to_end.remote(cfg, split, cfg.target[target_name].runtime, info, onnx_path)
    return lat, {}, info


#: OpenVINO's recorded inference precision -> the family whose peak applies (what the plugin executed)
OV_FAMILIES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def executed_family(precision: str, build: dict | None) -> str:
    """The precision family the build executes: int8 for ``int8-*``; an OpenVINO build's recorded
    ``inference_precision`` (an fp16 IR runs bf16 on a CPU with bf16 and no fp16); else the precision's."""
    if precision.startswith("int8"):
        return "int8"
    return OV_FAMILIES.get(str((build or {}).get("inference_precision")), family(precision))


def peaks_for(fam: str, peak_record: dict | None, override: float | None, target_name: str) -> tuple:
    """``(nominal, measured)`` peaks of ``fam`` as ``probe@<target>`` recorded them (``{"gflops", "basis"}``,
    gflops None with the reason in ``basis``; ``{"gflops", "runtime_precision", ...}`` or ``{"skipped": why}``),
    None without a record; ``target.<name>.peak_gflops`` overrides the nominal one."""
    rec = peak_record or {}
    nom = (rec.get("nominal") or {}).get(fam)
    if override:
        nom = {"gflops": override, "basis": f"target.{target_name}.peak_gflops.{fam} (user override)"}
    return nom, (rec.get("measured") or {}).get(fam)


def roofline(flops_per_sample: float, latency: dict, fam: str, nominal: dict | None, measured: dict | None) -> dict:
    """Achieved GFLOP/s per batch size (FLOPs per sample x samples/s) and its fraction of the family's
    nominal and measured peaks. A fraction above 1 is a measurement error, never an efficiency: it
    is None and ``efficiency_error`` says which peak was exceeded."""
    achieved = {bs: flops_per_sample * s["throughput"] / 1e9 for bs, s in latency.items()}
    out: dict = {"flops_per_sample": flops_per_sample, "gflops": achieved, "family": fam}
    errors = []
    for kind, peak in (("nominal", nominal), ("measured", measured)):
        out[f"{kind}_peak"] = peak
        out[f"efficiency_{kind}"] = None
        if not (peak or {}).get("gflops"):
            continue
        g = peak["gflops"]
        out[f"efficiency_{kind}"] = {bs: a / g if a <= g else None for bs, a in achieved.items()}
        errors += [
            f"{bs}: measured {a:.1f} GFLOP/s exceeds the {kind} {fam} peak {g:.1f}"
            + (f" ({peak['basis']})" if peak.get("basis") else "")
            + ": the peak (a base clock the CPU boosts above, a GEMM measured under load) or the FLOP count"
            " (direct convolution's; Winograd kernels multiply less) does not hold for this build"
            for bs, a in achieved.items()
            if a > g
        ]
    out["efficiency_error"] = "; ".join(errors) or None
    return out


def roofline_line(roof: dict) -> str:
    """The log line: achieved GFLOP/s per batch size and its fraction of each peak."""
    parts = []
    for bs, g in roof["gflops"].items():
        effs = [
            f"{roof[f'efficiency_{k}'][bs]:.1%} of {k}"
            for k in ("nominal", "measured")
            if roof[f"efficiency_{k}"] and roof[f"efficiency_{k}"][bs] is not None
        ]
        parts.append(f"{bs} {g:.2f} GFLOP/s" + (f" ({', '.join(effs)} {roof['family']} peak)" if effs else ""))
    return f"roofline: {roof['flops_per_sample'] / 1e6:.2f} MFLOP/sample; " + ", ".join(parts)


def scenarios(cfg: Config, res: dict) -> None:
    """The MLPerf-style views of ``res["latency"]``, the budget, and its verdict (in place)."""
    b = cfg.bench
    lat = res["latency"]
    if b.single_stream:
        s = lat["b1"]
        res["single_stream"] = {k: s[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "iterations", "cv_windows")}
    res["offline"] = {
        f"b{bs}": {"throughput": lat[f"b{bs}"]["throughput"], "p50_ms": lat[f"b{bs}"]["p50_ms"]}
        for bs in b.offline_batch_sizes
    }
    res["max_p99_ms"] = b.max_p99_ms
    reasons = []
    if b.max_p99_ms is not None:
        p99 = res["single_stream"]["p99_ms"] if b.single_stream else min(v["p99_ms"] for v in lat.values())
        if p99 > b.max_p99_ms:
            reasons.append(f"p99 {p99:.3g} ms > bench.max_p99_ms {b.max_p99_ms:g}")
    res["accepted"], res["reason"] = not reasons, "; ".join(reasons)


def run(
    cfg: Config,
    target_name: str,
    artifact: Path,
    eval_dir: Path,
    log: Callable[[str], None] = print,
    precision: str = "fp32",
    onnx_path: Path | None = None,
    peak: dict | None = None,
) -> BenchmarkRecord:
    """Latency of ``artifact`` per batch size, plus its cold start (session load and first
    inference, ms) and the conditions it ran under (``hygiene`` before/after: load average,
    temperatures, CPU clocks, power mode). ``peak``: the target's peak record (``probe@<target>``), for the
    roofline's efficiency (computed when ``onnx_path`` gives the FLOPs)."""
    target, b = cfg.target[target_name], cfg.bench
    split = Split(eval_dir)
    build = BuildRecord.read_if(artifact.parent / "build.json")  # its device choices, applied again here
    choices = build.extra.get("device_choices") if build else None
    if target.transport == "local":
        lat, torch_lat, info = _local_measurements(cfg, target_name, artifact, split, precision, choices)
    else:
        lat, torch_lat, info = _device_measurements(cfg, target_name, artifact.parent, split, log, onnx_path, choices)
    res: dict = {
        "runtime": target.runtime,
        "runtime_version": info["runtime_version"],
        "threads": info.get("threads", target.threads),
        "cpu_count": info["cpu_count"],
        "host": target.transport,
        "latency": {},
        "unstable": [],
        "retried": [],
        "hygiene": info["hygiene"],
    }
    for extra in ("trtexec", "slices"):
        if info.get(extra):
            res[extra] = info[extra]
    if info.get("end_to_end"):  # batch 1 from image to decoded result, split (tasks/metrics/end_to_end.py)
        res["end_to_end"] = info["end_to_end"]()
        log(end_to_end.line(res["end_to_end"], summarize(lat[1], 1)["p50_ms"] if 1 in lat else None))
    if info.get("latency_unavailable"):
        # trtexec's summaries are all there is: no per-call distribution is made up from them
        res["latency_unavailable"] = info["latency_unavailable"]
        log(
            f"WARNING: no EdgeForge latency on this device: {info['latency_unavailable']}; "
            "trtexec's own figures are recorded"
        )
        res["accepted"], res["reason"] = False, f"no application latency measured: {info['latency_unavailable']}"
        return BenchmarkRecord.from_json(res)
    cold = {"load_ms": info["cold"]["load_s"] * 1e3, "first_inference_ms": info["cold"]["first_inference_s"] * 1e3}
    log(f"cold start: load {cold['load_ms']:.1f} ms, first inference {cold['first_inference_ms']:.2f} ms")
    res["cold"] = cold
    if torch_lat:
        res["torch"], res["speedup_vs_torch"] = {}, {}
    for bs in b.batch_sizes:
        stats = summarize(lat[bs], bs)
        if stats["cv_windows"] > b.max_cv:  # drifted: measure once more before calling it unstable
            log(
                f"batch {bs}: latency drifted (CV of window medians {stats['cv_windows']:.1%} > bench.max_cv "
                f"{b.max_cv:.1%}); measuring once more"
            )
            res["retried"].append(f"b{bs}")
            stats = summarize(info["again"](bs), bs)
        res["latency"][f"b{bs}"] = stats
        line = f"batch {bs}: p50 {stats['p50_ms']:.3f} ms, p99 {stats['p99_ms']:.3f} ms, {stats['throughput']:.0f}/s"
        if stats["cv_windows"] > b.max_cv:
            res["unstable"].append(f"b{bs}")
            log(
                f"WARNING: batch {bs} latency drifted again on the second measurement (CV of window medians "
                f"{stats['cv_windows']:.1%} > bench.max_cv {b.max_cv:.1%}): other load or frequency scaling; "
                "these figures are less trustworthy"
            )
        if torch_lat:
            t = summarize(torch_lat[bs], bs)
            res["torch"][f"b{bs}"] = t
            res["speedup_vs_torch"][f"b{bs}"] = t["p50_ms"] / stats["p50_ms"]
            line += f"; torch eager p50 {t['p50_ms']:.3f} ms ({t['p50_ms'] / stats['p50_ms']:.2f}x)"
        t = (res.get("trtexec") or {}).get(f"b{bs}", {}).get("latency")
        if t and t.get("median") is not None:
            line += (
                f"; trtexec's own median {t['median']:.3f} ms (its defaults: {res['trtexec'][f'b{bs}']['defaults']})"
            )
        log(line)
    scenarios(cfg, res)
    if onnx_path is not None:
        fam = executed_family(precision, build.to_json() if build else None)
        nom, meas = peaks_for(fam, peak, target.peak_gflops.get(fam), target_name)
        res["roofline"] = roofline(count_flops(onnx_path)["per_sample"], res["latency"], fam, nom, meas)
        log(roofline_line(res["roofline"]))
        if res["roofline"]["efficiency_error"]:
            log(f"WARNING: roofline: {res['roofline']['efficiency_error']}")
    if not res["accepted"]:
        log(f"latency budget: REJECTED ({res['reason']})")
    return BenchmarkRecord.from_json(res)


def _peak_record(target: str, log: Callable[[str], None]) -> dict | None:
    path = LAYOUT.peak(target)
    if path.is_file():
        return read_json(path)
    log(f"no peak record {path} (`dvc repro probe@{target}`): efficiency only against target.{target}.peak_gflops")
    return None


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("benchmark", matrix=True).parse_args(argv)
    t = args.target
    with stage.stage_errors(f"benchmark@{t}"):
        cfg = stage.load(args)
        peak = _peak_record(t, lambda m: stage.log(f"benchmark@{t}", m))
        each_measured(
            "benchmark",
            cfg,
            args,
            LAYOUT.benchmark_metrics,
            LAYOUT.benchmark_metrics_dir,
            lambda p, log: run(
                cfg, t, built_artifact(LAYOUT.build_dir(t, p)), LAYOUT.split("eval"), log, p, LAYOUT.onnx, peak
            ),
        )


if __name__ == "__main__":
    main()
