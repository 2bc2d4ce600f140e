"""Semantic-segmentation scores: multi-class from a pixel confusion matrix (VOC convention), and
binary (one output channel: foreground vs background) per image.

Multi-class callers stream: ``conf += confusion(pred_batch, target_batch, K, ignore_index)`` over
the eval set, then ``segmentation_scores(conf, class_names)`` once. Background is a class like any
other (it counts in the means, as in PASCAL VOC); pass its index as ``ignore_index`` only where the
protocol excludes it.

Binary callers stream: ``counts.append(binary_counts(binarize(scores, t, logits), target))``, then
``binary_scores(*concatenated counts)`` once. All scores are in percent points (0..100).
"""

from __future__ import annotations

import numpy as np

IGNORE = 255  # VOC's "void" label value: pixels left out of every figure, whatever was predicted


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


def binarize(scores: np.ndarray, threshold: float, logits: bool = False) -> np.ndarray:
    """Foreground mask of a one-channel map: bool ``(N, H, W)``.

    Args:
        scores: float ``(N, 1, H, W)`` or ``(N, H, W)``: per-pixel foreground probabilities (a
            sigmoid map, as DBNet-style text detectors export it) or, with ``logits``, the scores
            before the sigmoid (U-Net exports without a final activation).
        threshold: probability in (0, 1); a pixel is foreground when its probability is above it
            (strictly, as DBNet's post-processing: PaddleOCR ``ppocr/postprocess/db_postprocess.py``
            ``segmentation = pred > self.thresh``). For logits the
            cut is ``log(t / (1 - t))`` (``sigmoid(z) > t``), with no sigmoid computed.
    """
    s = np.asarray(scores)
    if s.ndim == 4:
        s = s[:, 0]
    cut = float(np.log(threshold / (1.0 - threshold))) if logits else threshold
    return s > cut


def binary_counts(pred: np.ndarray, target: np.ndarray, ignore_index: int | None = IGNORE) -> np.ndarray:
    """Per-image pixel counts of a binary mask against its label.

    Args:
        pred: bool ``(N, H, W)`` predicted foreground.
        target: int ``(N, H, W)``: 0 background, 1 foreground, ``ignore_index`` left out.

    Returns:
        int64 ``(N, 4)``: TP, FP, FN, TN pixels of each image (ignored pixels in none).

    Raises:
        ValueError: shapes differ, or the target holds values other than 0, 1 and ``ignore_index``.
    """
    pred, target = np.asarray(pred, dtype=bool), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(
            f"the binary map has shape {pred.shape} but the masks have {target.shape}; expected equal (N, H, W)"
        )
    keep = np.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    bad = keep & (target != 0) & (target != 1)
    if bad.any():
        vals = sorted(set(target[bad].tolist()))[:10]
        allowed = "0 and 1" + ("" if ignore_index is None else f" ({ignore_index} = ignore)")
        raise ValueError(f"the masks hold values {vals}; a binary (one-channel) map is scored against {allowed}")
    t = target == 1
    axes = (1, 2)
    tp = (pred & t & keep).sum(axes)
    fp = (pred & ~t & keep).sum(axes)
    fn = (~pred & t & keep).sum(axes)
    tn = keep.sum(axes) - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` in percent, 100 where ``den`` is 0 (nothing to find and nothing found)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.maximum(den, 1), 1.0) * 100.0


def binary_scores(counts: np.ndarray) -> dict:
    """Foreground Dice and IoU of a binary segmentation, per image and over the split.

    Args:
        counts: int ``(N, 4)`` TP, FP, FN, TN per image, from :func:`binary_counts`.

    Returns:
        ``"dice"``, ``"iou"``: the means over the images of the per-image figures (the images'
        average, as medical segmentation reports Dice per case); ``"global_dice"``,
        ``"global_iou"``: from the pixels of the whole split pooled (large objects weigh more);
        ``"pixel_accuracy"``; ``"per_image_dice"``, ``"per_image_iou"``: lists of N figures, None for
        an image whose every pixel is ignored (left out of the means). Dice = 2TP/(2TP+FP+FN), IoU =
        TP/(TP+FP+FN). An image with no foreground in its mask and none predicted scores 100 (the
        model got it right); foreground in only one of them scores 0.

    Raises:
        ValueError: ``counts`` is not (N, 4) or holds no pixel.
    """
    c = np.asarray(counts, dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != 4 or c.sum() == 0:
        raise ValueError(
            f"counts has shape {c.shape} and {int(c.sum())} pixels; expected (N, 4) TP/FP/FN/TN, not empty"
        )
    tp, fp, fn, tn = c.T
    scored = c.sum(axis=1) > 0
    dice, iou = _ratio(2 * tp, 2 * tp + fp + fn), _ratio(tp, tp + fp + fn)
    TP, FP, FN = int(tp.sum()), int(fp.sum()), int(fn.sum())

    def per_image(v: np.ndarray) -> list:
        return [float(x) if ok else None for x, ok in zip(v, scored)]

    return {
        "dice": float(dice[scored].mean()),
        "iou": float(iou[scored].mean()),
        "global_dice": float(_ratio(2 * TP, 2 * TP + FP + FN)),
        "global_iou": float(_ratio(TP, TP + FP + FN)),
        "pixel_accuracy": float((tp + tn).sum() / c.sum() * 100.0),
        "per_image_dice": per_image(dice),
        "per_image_iou": per_image(iou),
    }
