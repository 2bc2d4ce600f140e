"""Host-side detection decoding + class-aware NMS time per image (tasks/models/yolo_decoders.py).

Synthetic head outputs shaped like the real exports, with score distributions like a trained
model's: almost every anchor/class scores below the 0.001 validation threshold, a few hundred
low-score candidates per image are above it, and ~10 objects each light up a cluster of anchors
with jittered boxes (which NMS must suppress). The heavy case puts 20000 candidates per image above
the threshold (a badly calibrated INT8 model can look like this); NMS sees at most 30000 (max_nms).

- yolov8: ``(8, 84, 8400)`` (YOLOv8/11 at 640x640, 80 classes), multi-label, IoU 0.7, 300 dets;
- yolov5: ``(8, 25200, 85)`` (YOLOv5 at 640x640), objectness x class, IoU 0.6, 300 dets;
- boxes: ``(8, 300, 6)`` end-to-end rows and TensorRT EfficientNMS's four outputs (no NMS).

    .venv/bin/python bench/decoders.py            # 15 repeats per case
    .venv/bin/python bench/decoders.py --repeats 5

Prints the median ms per image (batch time / 8) and the CPU model; asserts nothing.
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

N, C, SIZE = 8, 80, 640


def scene(rng: np.random.Generator, anchors: int, low: int, objects: int, cluster: int):
    """Boxes ``(A, 4)`` cx, cy, w, h and class scores ``(A, C)`` for one image."""
    xywh = np.column_stack([rng.uniform(0, SIZE, (anchors, 2)), rng.uniform(8, 200, (anchors, 2))]).astype(np.float32)
    scores = (10 ** rng.uniform(-6, -3.05, (anchors, C))).astype(np.float32)  # all below 0.001
    flat = rng.choice(anchors * C, low, replace=False)  # low-score candidates above the threshold
    scores.flat[flat] = rng.uniform(0.001, 0.05, low)
    for _ in range(objects):
        idx = rng.choice(anchors, cluster, replace=False)
        box = [rng.uniform(100, 540), rng.uniform(100, 540), rng.uniform(30, 200), rng.uniform(30, 200)]
        xywh[idx] = box * rng.normal(1, 0.03, (cluster, 4))
        scores[idx, rng.integers(C)] = rng.uniform(0.3, 0.95, cluster)
    return xywh, scores


def yolov8_head(rng, heavy: bool) -> np.ndarray:
    out = np.empty((N, 4 + C, 8400), np.float32)
    for i in range(N):
        xywh, scores = scene(rng, 8400, 20000 if heavy else 500, 10, 30)
        out[i] = np.concatenate([xywh, scores], 1).T
    return out


def yolov5_head(rng, heavy: bool) -> np.ndarray:
    out = np.empty((N, 25200, 5 + C), np.float32)
    for i in range(N):
        xywh, scores = scene(rng, 25200, 20000 if heavy else 500, 10, 60)
        obj = scores.max(1, keepdims=True)  # objectness high where a class is; class probs near 1 there
        out[i] = np.concatenate([xywh, obj, np.where(scores > 0.001, 0.99, scores)], 1)
    return out


def end_to_end(rng) -> dict[str, np.ndarray]:
    rows = np.zeros((N, 300, 6), np.float32)
    rows[:, :100, :2] = rng.uniform(0, 500, (N, 100, 2))
    rows[:, :100, 2:4] = rows[:, :100, :2] + rng.uniform(8, 140, (N, 100, 2))
    rows[:, :100, 4] = np.sort(rng.uniform(0.001, 1, (N, 100)))[:, ::-1]
    rows[:, :100, 5] = rng.integers(0, C, (N, 100))
    return {"output0": rows}


def efficient_nms(rows: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "num_detections": np.full((N, 1), 100, np.int32),
        "detection_boxes": rows[..., :4].copy(),
        "detection_scores": rows[..., 4].copy(),
        "detection_classes": rows[..., 5].astype(np.int32),
    }


def median_ms_per_image(fn, outputs, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dets = fn(outputs, num_classes=C)
        times.append((time.perf_counter() - t0) * 1000 / N)
    return statistics.median(times), sum(len(d) for d in dets) / N


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    from tasks.models.yolo_decoders import decode_boxes, decode_yolov5, decode_yolov8

    rng = np.random.default_rng(0)
    rows = end_to_end(rng)["output0"]
    cases = [
        ("yolov8 (8, 84, 8400)", decode_yolov8, {"output0": yolov8_head(rng, False)}),
        ("yolov8 heavy: 20000 candidates/image", decode_yolov8, {"output0": yolov8_head(rng, True)}),
        ("yolov5 (8, 25200, 85)", decode_yolov5, {"output0": yolov5_head(rng, False)}),
        ("yolov5 heavy: 20000 candidates/image", decode_yolov5, {"output0": yolov5_head(rng, True)}),
        ("boxes (8, 300, 6)", decode_boxes, {"output0": rows}),
        ("boxes EfficientNMS 4 outputs", decode_boxes, efficient_nms(rows)),
    ]
    print(f"CPU: {cpu_model()}; numpy {np.__version__}; {args.repeats} repeats, batch {N}")
    print(f"{'case':40s} {'median ms/image':>16s} {'dets/image':>11s}")
    for name, fn, outputs in cases:
        fn(outputs, num_classes=C)  # warm-up
        ms, dets = median_ms_per_image(fn, outputs, args.repeats)
        print(f"{name:40s} {ms:16.3f} {dets:11.1f}")


if __name__ == "__main__":
    main()
