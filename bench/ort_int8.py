"""What makes ONNX Runtime's INT8 fast on this CPU: Q/DQ layouts and session options, ResNet-18, batch 1.

The ResNet-18 of bench/resnet18.py (random seeded weights) is exported with the TorchScript
exporter (opset 17, dynamic batch) and simplified (onnxsim, as the export stage does), calibrated (minmax, the project's calibrator) on real photos
(skimage.data: astronaut, chelsea, coffee, ... resized and cropped to 224x224, ImageNet-normalised),
and written from the same ranges by the project's ``quantize_qdq`` in each layout:

- ``s8s8r7``: what the onnxruntime target built until now (``ORT_EXTRA_OPTIONS``: int8 symmetric
  activations, 7-bit weights, ``reduce_range=True``);
- ``s8s8``: the same with full-range 8-bit weights;
- ``u8s8``: ONNX Runtime's x86 guidance (uint8 asymmetric activations, int8 symmetric
  per-channel weights, full range): ``ORT_U8S8_OPTIONS``, ``activation_type="uint8"``;
- ``qop-u8s8``: the same types in ORT's QOperator format (QLinearConv written out, no Q/DQ);
- ``u8s8 as EdgeForge builds it``: the graph the build stage's agent saves from u8s8.

Each model is timed beside FP32 in one process (interleaved rounds, order rotating), batch 1,
p50 of a bare ``session.run`` loop, with 2 intra-op threads; then the session options on FP32 and
on u8s8: graph optimisation ENABLE_ALL vs ENABLE_EXTENDED, intra-op spinning on/off. Prints the
median p50 per variant, its ratio to FP32, the top-1 agreement with FP32 on the photos, and the
CPU model.

    .venv/bin/python bench/ort_int8.py            # 3 rounds (about 2 minutes on 2 cores)
    .venv/bin/python bench/ort_int8.py --quick    # 1 short round

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.machine import cpu_model  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "cat", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def photos(crops: int = 4) -> np.ndarray:
    """Real photos as float32 (n, 3, 224, 224): each resized (short side 256) and cut into ``crops``
    224x224 crops (corners), ImageNet-normalised."""
    import skimage.data
    from PIL import Image

    out = []
    for name in PHOTOS:
        img = Image.fromarray(getattr(skimage.data, name)()[..., :3])
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
        a = np.asarray(img, np.float32).transpose(2, 0, 1) / 255
        _, hh, ww = a.shape
        for y, x in ((0, 0), (0, ww - 224), (hh - 224, 0), (hh - 224, ww - 224))[:crops]:
            out.append((a[:, y : y + 224, x : x + 224] - MEAN) / STD)
    return np.stack(out).astype(np.float32)


def export(path: Path) -> None:
    import torch

    from bench.resnet18 import resnet18

    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.onnx.export(
        resnet18(seed=0),
        (torch.zeros(1, 3, 224, 224),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    import onnx
    import onnxsim

    model, ok = onnxsim.simplify(onnx.load(str(path)))  # as the export stage does (export.simplify)
    onnx.save(model, str(path))


def qoperator(src: Path, ranges: dict, out: Path) -> None:
    """ORT's QOperator format (QLinearConv etc.) from the same ranges, U8S8, per-channel weights."""
    import onnx
    from onnxruntime.quantization import QuantizationMode, QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QLinearOpsRegistry

    td = TensorsData(
        CalibrationMethod.MinMax,
        {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()},
    )
    ops = list(QLinearOpsRegistry) + list(IntegerOpsRegistry)
    q = ONNXQuantizer(
        onnx.load(str(src)), True, False, QuantizationMode.QLinearOps, True, QuantType.QInt8, QuantType.QUInt8, td, [], [], ops,
        {"WeightSymmetric": True, "ActivationSymmetric": False},
    )  # fmt: skip
    q.quantize_model()
    q.model.save_model_to_file(str(out))


def session(path: Path, threads: int, level: str = "all", spin: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def p50_ms(sess, x: np.ndarray, seconds: float, min_iter: int) -> float:
    feed = {"input": x}
    t_end = time.perf_counter() + seconds / 4
    while time.perf_counter() < t_end:  # warm-up
        sess.run(None, feed)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < min_iter:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def interleaved(sessions: dict, x: np.ndarray, rounds: int, seconds: float, min_iter: int) -> dict[str, float]:
    """Median over rounds of each session's p50 (ms); the order rotates each round."""
    names, got = list(sessions), {n: [] for n in sessions}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            got[n].append(p50_ms(sessions[n], x, seconds, min_iter))
    return {n: statistics.median(v) for n, v in got.items()}


def table(title: str, p50: dict[str, float], base: str, extra: dict[str, str] | None = None) -> None:
    print(f"\n{title}")
    print(f"  {'variant':<28} {'p50 ms':>8} {'x ' + base:>12}")
    for n, v in p50.items():
        print(f"  {n:<28} {v:8.2f} {p50[base] / v:12.2f}  {(extra or {}).get(n, '')}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 round of 1 s per variant")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2: this machine's cores)")
    args = p.parse_args(argv)
    rounds, seconds, min_iter = (1, 1.0, 10) if args.quick else (3, 3.0, 30)

    from onnxruntime import __version__ as ort_version

    from tasks.agent.agent import build_onnxruntime
    from tasks.quant import calibrate, quantize_qdq
    from tasks.quant.qdq import ORT_EXTRA_OPTIONS, ORT_U8S8_OPTIONS

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"CPU: {cpu_model()} ({os.cpu_count()} CPUs); ONNX Runtime {ort_version}; {args.threads} intra-op threads;")
    print(f"batch 1; load average {load} at start (above the CPU count: other processes share the cores)")
    imgs = photos()
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        fp32 = d / "fp32.onnx"
        export(fp32)
        ranges = calibrate(fp32, (imgs[i : i + 8] for i in range(0, len(imgs), 8)), "minmax", input_name="input")
        layouts = {
            "s8s8r7 (today)": dict(extra_options=ORT_EXTRA_OPTIONS, reduce_range=True),
            "s8s8 full range": dict(extra_options=ORT_EXTRA_OPTIONS),
            "u8s8": dict(extra_options=ORT_U8S8_OPTIONS, activation_type="uint8"),
        }
        paths = {"fp32": fp32}
        for i, (name, kw) in enumerate(layouts.items()):
            paths[name] = d / f"int8-{i}.onnx"
            quantize_qdq(fp32, ranges, paths[name], **kw)
        paths["qop-u8s8 (QOperator)"] = d / "qop.onnx"
        qoperator(fp32, ranges, paths["qop-u8s8 (QOperator)"])
        built = d / "built"
        built.mkdir()  # what the build stage runs: the graph the agent saved (ENABLE_EXTENDED), loaded with ALL
        paths["u8s8 as EdgeForge builds it"] = build_onnxruntime(paths["u8s8"], built, args.threads)[0]

        sessions = {n: session(pth, args.threads) for n, pth in paths.items()}
        ref = sessions["fp32"].run(None, {"input": imgs})[0].argmax(1)
        agree = {
            n: f"top-1 = fp32 on {int((s.run(None, {'input': imgs})[0].argmax(1) == ref).sum())}/{len(imgs)} photos"
            for n, s in sessions.items()
        }
        x = imgs[:1].copy()
        table(
            "Q/DQ layouts (ORT_ENABLE_ALL, spinning on)",
            interleaved(sessions, x, rounds, seconds, min_iter),
            "fp32",
            agree,
        )

        opts = {}
        for n in ("fp32", "u8s8"):
            for level in ("all", "extended"):
                for spin in (True, False):
                    opts[f"{n} {level} spin={'on' if spin else 'off'}"] = session(paths[n], args.threads, level, spin)
        table("session options", interleaved(opts, x, rounds, seconds, min_iter), "fp32 all spin=on")
        one = {f"{n} 1 thread": session(paths[n], 1) for n in ("fp32", "u8s8")}
        table("one intra-op thread", interleaved(one, x, rounds, seconds, min_iter), "fp32 1 thread")
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
