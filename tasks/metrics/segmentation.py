"""Semantic-segmentation scores from a pixel confusion matrix (VOC convention).

Callers stream: ``conf += confusion(pred_batch, target_batch, K, ignore_index)`` over the eval
set, then ``segmentation_scores(conf, class_names)`` once. Background is a class like any other
(it counts in the means, as in PASCAL VOC); pass its index as ``ignore_index`` only where the
protocol excludes it. All scores are in percent points (0..100).
"""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Pixel confusion matrix of one batch.

    Args:
        pred: int array (N, H, W) of predicted class ids in 0..num_classes-1 (any equal shape works).
        target: int array of the same shape; pixels equal to ``ignore_index`` (e.g. VOC's 255
            "void" border) are left out, whatever was predicted there.
        num_classes: K.
        ignore_index: target value to skip, or None.

    Returns:
        int64 array (K, K); ``conf[t, p]`` = pixels of target class t predicted as p (rows =
        target, columns = prediction). Sum these over batches.

    Raises:
        ValueError: shapes differ, non-integer arrays, or a class id outside 0..K-1.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred has shape {pred.shape} but target has {target.shape}; expected equal (N, H, W) integer class maps"
        )
    for name, a in (("pred", pred), ("target", target)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} has dtype {a.dtype}; expected integer class ids (argmax the logits first)")
    keep = np.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)
    for name, a in (("target", t), ("pred", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            bad = sorted(set(a[(a < 0) | (a >= num_classes)].tolist()))[:10]
            raise ValueError(f"{name} holds class ids {bad} outside 0..{num_classes - 1} (ignore_index={ignore_index})")
    return (
        np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
        .reshape(num_classes, num_classes)
        .astype(np.int64)
    )


def segmentation_scores(conf: np.ndarray, class_names: list[str]) -> dict:
    """mIoU, mean Dice and pixel accuracy from an accumulated confusion matrix.

    Args:
        conf: int array (K, K) from :func:`confusion` (rows = target, columns = prediction).
        class_names: K names, index = class id.

    Returns:
        ``{"miou", "mean_dice", "pixel_accuracy"}``: floats in percent; ``"per_class_iou"`` and
        ``"per_class_dice"``: ``{name: percent or None}``. IoU_c = TP/(TP+FP+FN), Dice_c =
        2TP/(2TP+FP+FN). A class absent from both target and prediction (TP+FP+FN = 0) is None and
        left out of the means; one predicted but never present scores 0 and counts.

    Raises:
        ValueError: ``conf`` is not (K, K) for K = len(class_names), or holds no pixel.
    """
    conf = np.asarray(conf, dtype=np.float64)
    k = len(class_names)
    if conf.shape != (k, k):
        raise ValueError(f"conf has shape {conf.shape}; expected ({k}, {k}) for {k} class names")
    total = conf.sum()
    if total == 0:
        raise ValueError("conf holds no pixels (every pixel ignored, or nothing accumulated)")
    tp = np.diag(conf)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    present = (tp + fp + fn) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / (tp + fp + fn), np.nan) * 100.0
        dice = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan) * 100.0

    def per_class(v: np.ndarray) -> dict:
        return {str(n): (None if np.isnan(x) else float(x)) for n, x in zip(class_names, v)}

    return {
        "miou": float(np.nanmean(iou)),
        "mean_dice": float(np.nanmean(dice)),
        "pixel_accuracy": float(tp.sum() / total * 100.0),
        "per_class_iou": per_class(iou),
        "per_class_dice": per_class(dice),
    }
