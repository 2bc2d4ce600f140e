"""What a prepared split covers, so that a calibration split can be judged against the evaluation
split it stands in for: samples per class, the brightness of its model-ready inputs and, when the
split records them (``meta.npy``), the sizes of the original images. INT8 ranges are calibrated
only on what the calibration split shows; a class or a brightness it lacks is quantized blind.

Pure numpy on the split's files, streamed in chunks (``x.npy`` is memory-mapped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.split import Split, classes_of

IGNORE = 255  # segmentation masks: VOC's "ignore" label, not a class
PERCENTILES = (1, 5, 50, 95, 99)
CHUNK = 256  # samples read at a time


def class_counts(labels: np.ndarray, task: str, classes: list[str]) -> dict[str, int]:
    """Instances per class name: classification samples (``(N,)``), segmentation pixels
    (``(N, H, W)``, 255 ignored), detection/keypoint objects (``(N, K, 5+)`` rows whose column 0
    is the class; padding rows -1). Unlabelled samples (-1) count nowhere; a class id beyond
    ``classes`` is named by its number. Every name in ``classes`` is a key (0 where absent)."""
    y = np.asarray(labels)
    if task == "segmentation":
        ids = y[y != IGNORE]
    elif y.ndim == 3:
        ids = y[..., 0]
    else:
        ids = y
    ids = ids[ids >= 0].astype(np.int64).ravel()
    counts = np.bincount(ids, minlength=len(classes)) if ids.size else np.zeros(len(classes), np.int64)
    return {(classes[c] if c < len(classes) else str(c)): int(n) for c, n in enumerate(counts)}


def _stats(values: np.ndarray) -> dict[str, float]:
    """min, the ``PERCENTILES`` (``p<q>``) and max of ``values``, rounded to 4 decimals."""
    qs = np.percentile(values, [0, *PERCENTILES, 100])
    names = ["min", *(f"p{q}" for q in PERCENTILES), "max"]
    return {n: round(float(v), 4) for n, v in zip(names, qs)}


def brightness(x: np.ndarray) -> dict:
    """Brightness of model-ready inputs float32 ``(N, C, H, W)`` (after scale/mean/std: the
    values the model and its calibrator see): ``per_image_mean`` (percentiles of each image's
    mean value) and ``pixel_range`` ``[min, max]`` over every pixel."""
    means, lo, hi = [], np.inf, -np.inf
    for i in range(0, len(x), CHUNK):
        chunk = np.asarray(x[i : i + CHUNK], np.float32)
        means.append(chunk.reshape(len(chunk), -1).mean(axis=1))
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return {"per_image_mean": _stats(np.concatenate(means)), "pixel_range": [round(lo, 4), round(hi, 4)]}


def image_sizes(meta: np.ndarray) -> dict:
    """Original image sizes from ``meta.npy`` float32 ``(N, 6)`` ``[orig_h, orig_w, ...]``:
    min/percentiles/max of the heights and widths, in pixels."""
    meta = np.asarray(meta, np.float32)
    return {"height": _stats(meta[:, 0]), "width": _stats(meta[:, 1])}


def _streamed_counts(y: np.ndarray, task: str, classes: list[str]) -> dict[str, int]:
    """:func:`class_counts` of ``y`` summed over chunks (segmentation masks can be gigabytes)."""
    total: dict[str, int] = dict.fromkeys(classes, 0)
    for i in range(0, len(y), CHUNK):
        for c, n in class_counts(np.asarray(y[i : i + CHUNK]), task, classes).items():
            total[c] = total.get(c, 0) + n
    return total


def split_coverage(split_dir: str | Path, task: str) -> dict:
    """The coverage of the prepared split in ``split_dir``: ``samples``, ``per_class``
    (:func:`class_counts`, with ``counted``: samples, pixels or objects), ``brightness``
    (:func:`brightness`) and, only when the split has ``meta.npy``, ``image_size``."""
    split = Split(split_dir)
    classes = classes_of(split_dir)
    counted = "pixels" if task == "segmentation" else "objects" if np.ndim(split.y) == 3 else "samples"
    out = {
        "samples": len(split),
        "counted": counted,
        "per_class": _streamed_counts(split.y, task, classes),
        "brightness": brightness(split.x),
    }
    meta = Path(split_dir) / "meta.npy"
    if meta.is_file():
        out["image_size"] = image_sizes(np.load(meta, mmap_mode="r"))
    return out


def missing_classes(calib: dict, evaluation: dict) -> list[str]:
    """Classes that the evaluation split's coverage shows and the calibration split's does not."""
    return [c for c, n in evaluation["per_class"].items() if n > 0 and not calib["per_class"].get(c)]


def coverage(calib_dir: str | Path, eval_dir: str | Path, task: str) -> dict:
    """``{"calib": ..., "eval": ..., "warnings": [...]}``: both splits' :func:`split_coverage`
    and one warning per class present in evaluation but missing from calibration."""
    cal, ev = split_coverage(calib_dir, task), split_coverage(eval_dir, task)
    warnings = [
        f"class {c!r} has {ev['per_class'][c]} {ev['counted']} in the evaluation split but none in the "
        "calibration split: its INT8 ranges are calibrated without it (add such samples to data.calib)"
        for c in missing_classes(cal, ev)
    ]
    return {"calib": cal, "eval": ev, "warnings": warnings}


def summary_line(cov: dict) -> str:
    """One line for a log or a report: samples and classes covered by each split, brightness
    (per-image mean, p5..p95) and the number of warnings."""

    def part(name: str, c: dict) -> str:
        present = sum(1 for n in c["per_class"].values() if n > 0)
        b = c["brightness"]["per_image_mean"]
        size = ""
        if "image_size" in c:
            s = c["image_size"]
            size = f", {s['height']['min']:.0f}-{s['height']['max']:.0f} x {s['width']['min']:.0f}-{s['width']['max']:.0f} px"
        classes = f"{present}/{len(c['per_class'])} classes" if c["per_class"] else "unlabelled"
        return f"{name} {c['samples']} samples, {classes}, brightness p5-p95 {b['p5']:.2f}..{b['p95']:.2f}{size}"

    n = len(cov["warnings"])
    return f"{part('calib', cov['calib'])}; {part('eval', cov['eval'])}; {n} warning{'s' * (n != 1)}"
