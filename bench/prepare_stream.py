"""Peak memory and throughput of ``prepare`` streaming a COCO-format set into letterboxed inputs.

Writes ``--images`` JPEGs of 480x640 (h x w) with 1-4 boxes each and an instances JSON (plus a
small disjoint calibration set) in a temporary folder, then runs ``tasks.prepare.run`` with
``model.input`` [3, 640, 640], letterbox on, and prints: images/s, the size of the written
``x.npy``, the process's peak RSS (``ru_maxrss``: includes the memory-mapped file pages the kernel
has not written back yet, which it can reclaim) and the peak of its anonymous memory (``RssAnon``,
sampled every 20 ms: what streaming keeps bounded), next to the CPU model.

    .venv/bin/python bench/prepare_stream.py --images 400
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_model  # noqa: E402


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_coco(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    images, anns = [], []
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        base = ((xx * (i % 7 + 1) + yy * (i % 5 + 1)) % 256).astype(np.uint8)
        img = np.stack([base, base[::-1], np.roll(base, i, axis=1)], -1)
        img = np.clip(img.astype(np.int16) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
        name = f"{i:06d}.jpg"
        Image.fromarray(img).save(root / name, quality=90)
        images.append({"id": i + 1, "file_name": name, "height": 480, "width": 640})
        for _ in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            w, h = rng.uniform(10, 140), rng.uniform(10, 130)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(rng.choice([1, 3, 18])),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    ann = root.parent / f"{root.name}.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root, ann


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400, help="evaluation images (calibration: 32)")
    args = ap.parse_args()
    from tasks.config import Config
    from tasks.prepare import run

    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-") as td:
        td = Path(td)
        (td / "cal").mkdir()
        (td / "val").mkdir()
        cal, cal_json = write_coco(td / "cal", 32, seed=1)
        val, val_json = write_coco(td / "val", args.images, seed=2)
        cfg = Config()
        cfg.prepare.train = None
        cfg.model.task, cfg.model.outputs = "detection", ["output0"]
        cfg.eval.decoder = "yolov8"
        spec = cfg.model.input
        spec.shape, spec.channel_order, spec.letterbox = [3, 640, 640], "rgb", True
        spec.mean, spec.std = [0.0] * 3, [1.0] * 3
        for split, (imgs, ann) in (("calib", (cal, cal_json)), ("eval", (val, val_json))):
            s = getattr(cfg.data, split)
            s.source, s.path, s.annotations, s.limit = "coco", str(imgs), str(ann), None
        peak = [rss_anon_mb()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], rss_anon_mb())

        threading.Thread(target=sample, daemon=True).start()
        base = rss_anon_mb()
        t0 = time.perf_counter()
        run(cfg, td / "out", log=lambda m: None)
        seconds = time.perf_counter() - t0
        done.set()
        x_mb = (td / "out" / "eval" / "x.npy").stat().st_size / 2**20
        n = args.images + 32
        print(f"CPU: {cpu_model()}")
        print(
            f"prepare (coco, letterbox 480x640 -> 3x640x640): {n} images in {seconds:.1f} s = {n / seconds:.1f} images/s"
        )
        print(
            f"eval x.npy: {x_mb:.0f} MiB; RssAnon before {base:.0f} MiB, peak {peak[0]:.0f} MiB; "
            f"ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
