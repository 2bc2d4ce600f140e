"""Host-side keypoint decoding time per image (tasks/models/keypoint_decoders.py), and the OKS AP
scoring time per image (tasks/metrics/keypoints.py, faster-coco-eval's keypoint mode).

Synthetic outputs shaped like the real exports:

- heatmap ``(32, 17, 64, 48)``: HRNet/SimpleBaseline at 256x192, COCO's 17 keypoints, a Gaussian
  peak per map over low noise; and the bundled example's ``(32, 4, 16, 16)`` at 32x32;
- yolov8_pose ``(8, 56, 8400)``: YOLOv8/11-pose at 640x640 (1 class, 17 x 3 keypoint rows), almost
  every anchor below the 0.001 validation threshold, ~10 people each lighting up a cluster of 30
  anchors (which NMS must suppress) and a few hundred low-score candidates; in the heavy case
  every anchor is above the threshold (a badly calibrated INT8 model can look like this).

    .venv/bin/python bench/keypoint_decoders.py            # 15 repeats per case
    .venv/bin/python bench/keypoint_decoders.py --repeats 5

Prints the median ms per image (batch time / batch) and the CPU model; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.machine import cpu_model  # noqa: E402

J, SIZE = 17, 640


def heatmaps(rng: np.random.Generator, n: int, j: int, h: int, w: int) -> np.ndarray:
    """``(n, j, h, w)`` float32: one Gaussian (sigma 2 cells) per map at a random cell, plus noise."""
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    cy, cx = rng.uniform(0, h, (n, j, 1, 1)), rng.uniform(0, w, (n, j, 1, 1))
    peak = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 8)
    return (peak * rng.uniform(0.3, 1.0, (n, j, 1, 1)) + rng.normal(0, 0.01, (n, j, h, w))).astype(np.float32)


def pose_head(rng: np.random.Generator, n: int, heavy: bool, anchors: int = 8400) -> np.ndarray:
    """``(n, 4 + 1 + 3J, anchors)`` float32, Ultralytics' pose layout in input pixels."""
    out = np.empty((n, 4 + 1 + 3 * J, anchors), np.float32)
    for i in range(n):
        xywh = np.column_stack([rng.uniform(0, SIZE, (anchors, 2)), rng.uniform(8, 300, (anchors, 2))])
        score = 10 ** rng.uniform(-6, -3.05, anchors)
        low = anchors if heavy else 500  # candidates above the threshold before the people
        score[rng.choice(anchors, low, replace=False)] = rng.uniform(0.001, 0.05, low)
        for _ in range(10):
            idx = rng.choice(anchors, 30, replace=False)
            xywh[idx] = [rng.uniform(100, 540), rng.uniform(100, 540), rng.uniform(60, 300), rng.uniform(60, 300)]
            xywh[idx] *= rng.normal(1, 0.03, (30, 4))
            score[idx] = rng.uniform(0.3, 0.95, 30)
        kpts = np.stack(
            [rng.uniform(0, SIZE, (anchors, J)), rng.uniform(0, SIZE, (anchors, J)), rng.random((anchors, J))]
        )
        out[i] = np.concatenate([xywh, score[:, None], kpts.transpose(1, 2, 0).reshape(anchors, 3 * J)], 1).T
    return out


def median_ms_per_image(fn, n: int, repeats: int) -> tuple[float, object]:
    times, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        times.append((time.perf_counter() - t0) * 1000 / n)
    return statistics.median(times), res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    from tasks.metrics.keypoints import oks_ap
    from tasks.models.keypoint_decoders import decode_heatmap, decode_yolov8_pose

    rng = np.random.default_rng(0)
    hrnet, digits = heatmaps(rng, 32, J, 64, 48), heatmaps(rng, 32, 4, 16, 16)
    light, heavy = pose_head(rng, 8, False), pose_head(rng, 8, True)
    cases = [
        ("heatmap (32, 17, 64, 48) -> 256x192", 32, lambda: decode_heatmap({"h": hrnet}, input_hw=(256, 192))),
        ("heatmap (32, 4, 16, 16) -> 32x32", 32, lambda: decode_heatmap({"h": digits}, input_hw=(32, 32))),
        ("yolov8_pose (8, 56, 8400)", 8, lambda: decode_yolov8_pose({"o": light}, num_keypoints=J)),
        ("yolov8_pose heavy: 8400 cand./image", 8, lambda: decode_yolov8_pose({"o": heavy}, num_keypoints=J)),
    ]
    print(f"CPU: {cpu_model()}; numpy {np.__version__}; {args.repeats} repeats")
    print(f"{'case':40s} {'median ms/image':>16s} {'instances/image':>16s}")
    for name, n, fn in cases:
        fn()  # warm-up
        ms, dets = median_ms_per_image(fn, n, args.repeats)
        print(f"{name:40s} {ms:16.3f} {sum(len(d) for d in dets) / n:16.1f}")

    # OKS AP of 1000 top-down crops (the example's eval split size), 4 keypoints
    n = 1000
    gt = np.zeros((n, 1, 17), np.float32)
    gt[:, 0, 1:5] = [4, 4, 28, 28]
    gt[:, 0, 5:] = np.concatenate([rng.uniform(4, 28, (n, 4, 2)), np.full((n, 4, 1), 2)], axis=2).reshape(n, 12)
    dets = [
        np.concatenate([[0, 0, 32, 32, 0.9, 0], (gt[i, 0, 5:].reshape(4, 3) + [0.5, -0.5, 0]).ravel()])[None]
        for i in range(n)
    ]
    ms, _ = median_ms_per_image(
        lambda: oks_ap(dets, gt, [0.05] * 4, ["t", "b", "l", "r"], ["digit"]), n, max(3, args.repeats // 3)
    )
    print(f"{'OKS AP scoring, 1000 crops x 4 keypoints':40s} {ms:16.3f}")


if __name__ == "__main__":
    main()
