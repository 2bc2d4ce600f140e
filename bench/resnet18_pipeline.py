"""ResNet-18 through EdgeForge's own pipeline, by config, then every build timed side by side.

1. A fresh copy of the repository (as ``bench/pipeline_wall.py`` makes it) gets ResNet-18's
   state_dict (``bench/resnet18.py``, seed 0, loaded as ``model.arch: bench.resnet18:ResNet``) and
   real photos: 224x224 crops of scikit-image's colour photographs, calibration and evaluation
   crops disjoint. The model has random weights, so it is scored by agreement with FP32
   (``model.task: fidelity``) and the figures are about speed.
2. ``dvc repro`` there with the default targets (every runtime installed here) unless
   ``--targets`` says otherwise: quantize, build (with the device's choices), benchmark, evaluate,
   report. The stages' own p50 and the winner come from its summary.
3. One interleaved run at batch 1 (``--rounds`` rounds, the order rotating each round): PyTorch
   eager, and each build through EdgeForge's own session (``tasks.runtimes``, what the benchmark
   stage times), plus the runtime's own tool on the same artifact: a bare ``session.run`` loop
   with the session options the build recorded (ONNX Runtime), OpenVINO's ``benchmark_app``
   (latency hint, the build's inference precision) once per build after the rounds.

    .venv/bin/python bench/resnet18_pipeline.py                 # ~6 min on 2 cores
    .venv/bin/python bench/resnet18_pipeline.py --precisions fp32,int8-minmax --rounds 3

Prints figures; judges nothing.
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench.machine import cpu_model  # noqa: E402
from bench.pipeline_wall import clean_env, snapshot  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default=None, help="build.targets, comma-separated (default: the config's)")
    p.add_argument("--precisions", default="fp32,fp16,bf16,int8-minmax,int8-percentile", help="build.precisions")
    p.add_argument("--calib", type=int, default=64, help="calibration crops")
    p.add_argument("--eval", type=int, default=32, help="evaluation crops")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds at batch 1")
    p.add_argument("--seconds", type=float, default=1.0, help="measuring time per build per round")
    p.add_argument("--threads", type=int, default=None, help="target threads (default: the runtime's)")
    p.add_argument("--keep", action="store_true", help="keep the temporary project (its path is printed)")
    p.add_argument("--set", action="append", default=[], help="more config overrides (key=value)")
    p.add_argument("--reuse", type=Path, default=None, help="a project --keep left: time its builds again (no repro)")
    return p.parse_args(argv)


def photos(folder: Path, n: int, seed: int) -> None:
    """``n`` 224x224 JPEG crops (random position and scale) of scikit-image's colour photographs."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    imgs = []
    for name in PHOTOS:
        a = getattr(data, name)()
        if a.ndim == 3 and a.shape[2] >= 3:
            imgs.append(a[..., :3])
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = imgs[i % len(imgs)]
        side = int(rng.integers(min(a.shape[:2]) // 3, min(a.shape[:2]) + 1))
        y, x = (int(rng.integers(0, a.shape[d] - side + 1)) for d in (0, 1))
        Image.fromarray(a[y : y + side, x : x + side]).resize((224, 224)).save(folder / f"{seed}_{i:04d}.jpg")


def overrides(args, repo: Path) -> list[str]:
    out = [
        "prepare=none",
        "model.task=fidelity",
        "model.format=state_dict",
        "model.checkpoint=models/resnet18.pt",
        "model.arch=bench.resnet18:ResNet",
        "model.outputs=[logits]",
        "model.scores_output=logits",
        "model.input.shape=[3,224,224]",
        "model.input.channel_order=rgb",
        "model.input.mean=[0.485,0.456,0.406]",
        "model.input.std=[0.229,0.224,0.225]",
        "data.calib.source=images",
        f"data.calib.path={repo / 'data/photos/calib'}",
        "data.eval.source=images",
        f"data.eval.path={repo / 'data/photos/eval'}",
        f"build.precisions=[{args.precisions}]",
        "quant.samples=64",
        "eval.batch_size=8",
        "bench.offline_batch_sizes=[8]",
        "bench.torch_baseline=true",
    ]
    if args.targets:
        out.append(f"build.targets=[{args.targets}]")
    if args.threads:
        out += [f"target.local.threads={args.threads}", f"target.local_openvino.threads={args.threads}"]
    return out + list(args.set)


def setup(args, repo: Path, env: dict) -> None:
    import torch

    from bench.resnet18 import resnet18

    snapshot(ROOT, repo)
    (repo / "models").mkdir(exist_ok=True)
    torch.save(resnet18(seed=0).state_dict(), repo / "models/resnet18.pt")
    photos(repo / "data/photos/calib", args.calib, seed=1)
    photos(repo / "data/photos/eval", args.eval, seed=2)
    subprocess.run(
        [sys.executable, "-m", "tasks.config.compose", *overrides(args, repo)], cwd=repo, env=env, check=True
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "resnet18 bench"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)


def pipeline(repo: Path, env: dict) -> float:
    t0 = time.perf_counter()
    with open(repo / "dvc-repro.log", "w") as log:
        r = subprocess.run(["dvc", "repro"], cwd=repo, env={**env, "EDGEFORGE_NO_TABLE": "1"}, stdout=log, stderr=log)
    if r.returncode != 0:
        sys.exit(f"dvc repro failed ({r.returncode}); see {repo / 'dvc-repro.log'} (--keep to keep it)")
    return time.perf_counter() - t0


def p50(fn, seconds: float) -> float:
    from tasks.metrics.latency import measure

    return float(np.median(measure(fn, 0.2, seconds, 20))) * 1e3


def bare_ort(path: Path, x: np.ndarray, threads: int | None, seconds: float) -> float:
    """A bare ``session.run`` loop on the artifact: ONNX Runtime's defaults plus the thread count."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    feed = {name: x}
    for _ in range(20):
        s.run(None, feed)
    lat, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(lat) < 20:
        t0 = time.perf_counter()
        s.run(None, feed)
        lat.append(time.perf_counter() - t0)
    return float(np.median(lat)) * 1e3


def benchmark_app(xml: Path, precision: str, threads: int | None, seconds: float) -> float | None:
    """OpenVINO's own tool: latency hint, one stream, batch 1, the build's inference precision."""
    exe = Path(sys.executable).with_name("benchmark_app")
    argv = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", "latency", "-t", str(max(1, round(seconds)))]
    argv += ["-shape", "[1,3,224,224]", "-infer_precision", precision]
    if threads:
        argv += ["-nthreads", str(threads)]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    m = re.search(r"Median:\s+([\d.]+)\s*ms", out)
    return float(m.group(1)) if m else None


def main(argv=None) -> None:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="edgeforge-r18-"))
    repo = tmp / "repo"
    env = clean_env(ROOT / ".venv")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    if args.reuse:
        tmp.rmdir()
        tmp, repo, wall = args.reuse, args.reuse / "repo", float("nan")
    else:
        setup(args, repo, env)
        wall = pipeline(repo, env)
    summary = json.loads((repo / "artifacts/report/summary.json").read_text())
    rows = summary["rows"]
    print(f"\n(1) dvc repro of ResNet-18 ({args.precisions}) in {wall:.0f} s; the stages' own figures:")
    print(f"{'build':32} {'p50 ms':>8} {'x torch':>8} {'% peak':>7} {'accepted':>9}")
    for r in rows:
        if r.get("skipped"):  # not applicable to the device (bf16 on ONNX Runtime, an emulated fp16)
            print(f"{r['key']:32} n/a: {r['skipped']}")
            continue
        eff = f"{r['efficiency']:.1f}" if r.get("efficiency") is not None else "-"
        sp = f"{r['speedup_vs_torch']:.2f}" if r.get("speedup_vs_torch") else "-"
        print(f"{r['key']:32} {r['latency_p50_ms']:8.3f} {sp:>8} {eff:>7} {str(r['accepted']):>9}")
    for d, w in (summary.get("winners") or {}).items():
        print(f"winner on {d}: {w['why']}")

    # (2) one interleaved run at batch 1
    os.chdir(repo)
    sys.path.insert(0, str(repo))
    import torch

    from bench.resnet18 import resnet18
    from tasks.config import load_config
    from tasks.device.choices import run_threads
    from tasks.layout import Layout
    from tasks.runtimes import get_runtime

    cfg = load_config(repo / "params.yaml")
    x = np.load(repo / "artifacts/prepare/eval/x.npy", mmap_mode="r")[:1].astype(np.float32)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model = resnet18(seed=0)
    xt = torch.from_numpy(x)
    cands = {}

    def eager():
        with torch.inference_mode():
            model(xt)

    cands["pytorch eager"] = eager
    builds = {}
    for r in rows:
        bdir = Layout(repo).build_dir(r["target"], r["precision"])
        rec = json.loads((bdir / "build.json").read_text())
        if rec.get("skipped"):
            continue
        target = cfg.target[r["target"]]
        # as the benchmark stage runs it: the build's device choices and their thread count (LiteRT's
        # Interpreter would otherwise run on its own default, one thread)
        choices = {k: v for k, v in (rec.get("device_choices") or {}).items() if k != "reasons"}
        threads = run_threads(choices, target.threads)
        sess = get_runtime(rec["runtime"]).load(bdir / rec["artifact"], threads, choices)
        cands[r["key"]] = lambda s=sess: s.infer(x)
        builds[r["key"]] = (rec, bdir / rec["artifact"], target.threads)  # own tools: as before

    def own_tool(k: str) -> tuple[str, float | None]:
        rec, path, threads = builds[k]
        if rec["runtime"] == "onnxruntime":
            return "session.run loop", bare_ort(path, x, threads, args.seconds)
        if rec["runtime"] != "openvino":  # ExecuTorch's executor_runner, LiteRT's benchmark_model: not on PyPI
            return "", None
        prec = str(rec.get("inference_precision") or "f32").lower()
        prec = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(prec, prec)
        return "benchmark_app", benchmark_app(path, prec, threads, args.seconds)

    # each round: every build through EdgeForge's session, then at once through its runtime's own
    # tool (paired: the ratio of the two is taken within the round, so slow drift cancels)
    names = list(cands)
    per = {n: [] for n in names}
    own: dict = {k: [] for k in builds}
    tools: dict = {}
    for i in range(args.rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for n in order:
            per[n].append(p50(cands[n], args.seconds))
            if n in builds:
                tools[n], ms = own_tool(n)
                own[n].append((per[n][-1], ms))
    torch_ms = statistics.median(per["pytorch eager"])
    print(
        f"\n(2) one interleaved run, batch 1, {args.rounds} rounds x {args.seconds:g} s "
        f"(median of the rounds' p50; EF/own: median of each round's ratio), load average now "
        f"{os.getloadavg()[0]:.2f}:"
    )
    print(f"{'build':32} {'p50 ms':>8} {'spread':>7} {'x torch':>8} {'own tool':>18} {'own ms':>8} {'EF/own':>7}")
    for n in names:
        m = statistics.median(per[n])
        spread = (max(per[n]) - min(per[n])) / m
        pairs = [(a, b) for a, b in own.get(n, []) if b]
        ms = statistics.median(b for _, b in pairs) if pairs else None
        ratio = f"{statistics.median(a / b for a, b in pairs):.3f}" if pairs else "-"
        ms_s = f"{ms:.3f}" if ms else "-"
        print(f"{n:32} {m:8.3f} {spread:7.1%} {torch_ms / m:8.2f} {tools.get(n, ''):>18} {ms_s:>8} {ratio:>7}")
    if args.keep or args.reuse:
        print(f"\nkept: {tmp}")
    else:
        import shutil

        os.chdir(ROOT)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
