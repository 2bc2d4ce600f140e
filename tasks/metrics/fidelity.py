"""Task ``fidelity``: a model without labels is scored by how well each precision agrees with the FP32
model's own outputs, after the decoding ``eval.fidelity_of`` names. FP32 against itself scores 100, so a
precision's drop is ``100 - agreement`` and ``eval.max_drop``, ``quant.max_drop`` (int8-mixed) and the
verdicts read as they do for a labelled metric.

Two steps, so that FP32's decoding is done once (by ``parity``, stored, read back by ``evaluate``):

- :func:`targets`: FP32's outputs decoded into the ground truth (arrays by name, one row per sample);
- :func:`score`: a precision's outputs against those targets, in percent points.

=================  ==========================================  ==============================================
``fidelity_of``    ground truth from FP32                      primary figure (percent)
=================  ==========================================  ==============================================
classification     top-1 class of ``model.scores_output``      ``top1_agreement``: samples whose top-1 is FP32's
detection          boxes (``eval.decoder``) scoring above      ``map_vs_fp32``: COCO mAP@.5:.95 of the
                   ``eval.fidelity_score_threshold``, at most  precision's boxes (decoded as for a labelled
                   100 per image                               detector) against FP32's
keypoints          instances (``eval.decoder``) scoring above   ``oks_ap_vs_fp32``: COCO OKS AP of the
                   ``eval.fidelity_score_threshold``, at most  precision's keypoints against FP32's (every
                   20 per image                                FP32 keypoint labelled; its box area the scale)
segmentation       argmax mask; one channel: FP32's mask at    ``miou_vs_fp32``; one channel: ``iou_vs_fp32``
                   ``model.seg_threshold``                     (mean per image, worst images reported)
none               every output as it is                       ``sqnr_score``: 100 * (1 - noise / signal)
                                                               of the worst output, noise = |out - FP32|^2
=================  ==========================================  ==============================================

``sqnr_score`` is the output SQNR on a percent scale: SQNR = -10 log10(1 - score/100) dB, so a drop of
``eval.max_drop`` = 1 point means an SQNR of at least 20 dB, 0.1 means 30 dB (``drop = 100 * 10^(-SQNR/10)``);
the SQNR in dB of every output is in the details. Boxes are compared in model-input pixels: both sides come
from the same decoder, and IoU is unchanged by the resize/letterbox that maps them to the original image.

``MODES`` holds one :class:`Fidelity` per decoding: the place another task's comparison plugs in (keypoints
take FP32's keypoints as ground truth the way detection takes FP32's boxes).
Nothing here reads the split's labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tasks.config import Config
from tasks.data.errors import DataError

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Fidelity:
    """One decoding of ``eval.fidelity_of``: FP32's ground truth, and a precision's score against it."""

    metric: str  # the primary figure's key
    label: str  # its table header
    targets: Callable[[Config, Arrays, list[str]], dict[str, np.ndarray]]
    score: Callable[[Config, Arrays, Arrays, list[str]], dict]


def _names(classes: list[str], k: int) -> list[str]:
    """Class names for ``k`` classes: the split's when they fit, else the indices."""
    return list(classes) if len(classes) == k else [str(c) for c in range(k)]


# -- classification ---------------------------------------------------------------------------
def _top1_targets(cfg: Config, ref: Arrays, classes: list[str]) -> dict[str, np.ndarray]:
    return {"top1": np.asarray(ref[cfg.model.scores_output]).argmax(axis=1).astype(np.int64)}


def _top1_score(cfg: Config, outputs: Arrays, targets: Arrays, classes: list[str]) -> dict:
    from tasks.metrics.accuracy import per_class_top1, top1, topk

    scores, want = np.asarray(outputs[cfg.model.scores_output]), np.asarray(targets["top1"])
    names = _names(classes, scores.shape[1])
    res = {
        "top1_agreement": top1(scores, want),
        # per FP32 class: of the samples FP32 calls c, the percent the precision calls c too
        "per_class": {names[c]: v for c, v in per_class_top1(scores, want, scores.shape[1]).items()},
    }
    if scores.shape[1] >= 5:
        res["top5_agreement"] = topk(scores, want, 5)  # FP32's class among the precision's best five
    return res


# -- detection --------------------------------------------------------------------------------
def _box_targets(cfg: Config, ref: Arrays, classes: list[str]) -> dict[str, np.ndarray]:
    from tasks.metrics.task import decode

    t = cfg.eval.fidelity_score_threshold
    kept = [d[d[:, 4] > t][:100] for d in decode(cfg, ref)]  # decoders sort by score; COCO reads 100
    if not any(len(d) for d in kept):
        raise DataError(
            f"model.task fidelity (eval.fidelity_of detection): the FP32 model finds no box scoring above "
            f"eval.fidelity_score_threshold {t:g} in any of the {len(kept)} evaluation images, so there is no "
            "ground truth to compare with; lower eval.fidelity_score_threshold or check eval.decoder"
        )
    boxes = np.full((len(kept), max(len(d) for d in kept), 5), -1.0, np.float32)
    for i, d in enumerate(kept):
        boxes[i, : len(d)] = np.concatenate([d[:, 5:6], d[:, :4]], axis=1)
    return {"boxes": boxes}


def _box_score(cfg: Config, outputs: Arrays, targets: Arrays, classes: list[str]) -> dict:
    from tasks.metrics.detection import coco_map
    from tasks.metrics.task import decode

    gt = np.asarray(targets["boxes"])
    dets = decode(cfg, outputs)
    k = int(max([gt[..., 0].max(), *(d[:, 5].max() for d in dets if len(d))])) + 1
    res = coco_map(dets, gt, _names(classes, max(k, len(classes))))  # the split's names when they cover k
    res["map_vs_fp32"] = res.pop("map50_95")
    res["per_class"] = res.pop("per_class_ap")
    return res


# -- keypoints --------------------------------------------------------------------------------
def _keypoint_targets(cfg: Config, ref: Arrays, classes: list[str]) -> dict[str, np.ndarray]:
    """FP32's instances scoring above ``eval.fidelity_score_threshold`` (at most 20 per image, COCO's
    keypoint maxDets) as label rows ``[class, x1, y1, x2, y2, x, y, 2, ...]``: every FP32 keypoint
    counts as labelled, and FP32's box area is the OKS scale (a top-down crop: the whole input)."""
    from tasks.metrics.task import decode

    t = cfg.eval.fidelity_score_threshold
    kept = [d[d[:, 4] > t][:20] for d in decode(cfg, ref)]
    if not any(len(d) for d in kept):
        raise DataError(
            f"model.task fidelity (eval.fidelity_of keypoints): the FP32 model finds no instance scoring above "
            f"eval.fidelity_score_threshold {t:g} in any of the {len(kept)} evaluation images, so there is no "
            "ground truth to compare with; lower eval.fidelity_score_threshold or check eval.decoder"
        )
    j = len(cfg.eval.keypoint_sigmas)
    rows = np.full((len(kept), max(len(d) for d in kept), 5 + 3 * j), -1.0, np.float32)
    for i, d in enumerate(kept):
        kp = d[:, 6:].reshape(len(d), j, 3).copy()
        kp[..., 2] = 2
        rows[i, : len(d)] = np.concatenate([d[:, 5:6], d[:, :4], kp.reshape(len(d), 3 * j)], axis=1)
    return {"instances": rows}


def _keypoint_score(cfg: Config, outputs: Arrays, targets: Arrays, classes: list[str]) -> dict:
    from tasks.metrics.keypoints import oks_ap
    from tasks.metrics.task import decode, keypoint_names

    gt = np.asarray(targets["instances"])
    dets = decode(cfg, outputs)
    k = int(max([gt[..., 0].max(), *(d[:, 5].max() for d in dets if len(d))])) + 1
    res = oks_ap(dets, gt, cfg.eval.keypoint_sigmas, keypoint_names(cfg), _names(classes, max(k, len(classes))))
    res["oks_ap_vs_fp32"] = res.pop("oks_ap")
    res["per_class"] = res.pop("per_keypoint")
    return res


# -- segmentation -----------------------------------------------------------------------------
def _mask_targets(cfg: Config, ref: Arrays, classes: list[str]) -> dict[str, np.ndarray]:
    from tasks.metrics.segmentation import binarize
    from tasks.metrics.task import one_channel

    scores = np.asarray(ref[cfg.model.scores_output])
    if one_channel(scores):
        return {"masks": binarize(scores, cfg.model.seg_threshold, cfg.model.seg_output == "logits").astype(np.uint8)}
    dtype = np.uint8 if scores.shape[1] <= 256 else np.int32  # an (N, H, W) int64 mask would be 8x the size
    return {
        "masks": np.concatenate([scores[i : i + 64].argmax(axis=1).astype(dtype) for i in range(0, len(scores), 64)])
    }


def _mask_score(cfg: Config, outputs: Arrays, targets: Arrays, classes: list[str]) -> dict:
    from tasks.metrics.segmentation import binarize, binary_counts, binary_scores, confusion, segmentation_scores
    from tasks.metrics.task import one_channel

    scores, want = np.asarray(outputs[cfg.model.scores_output]), targets["masks"]
    steps = range(0, len(scores), 64)  # in slices: (N, K, H, W) float32 can be large
    if one_channel(scores):
        logits = cfg.model.seg_output == "logits"
        counts = [
            binary_counts(binarize(scores[i : i + 64], cfg.model.seg_threshold, logits), want[i : i + 64], None)
            for i in steps
        ]
        res = binary_scores(np.concatenate(counts))
        res["iou_vs_fp32"], res["metric"] = res.pop("iou"), "iou_vs_fp32"
        res["per_image"] = res.pop("per_image_iou")
        del res["per_image_dice"]
        res["per_class"] = {"foreground": res["iou_vs_fp32"]}
        return res
    k = scores.shape[1]
    conf = sum(confusion(scores[i : i + 64].argmax(axis=1), np.asarray(want[i : i + 64]), k) for i in steps)
    res = segmentation_scores(conf, _names(classes, k))
    res["miou_vs_fp32"] = res.pop("miou")
    res["per_class"] = res.pop("per_class_iou")
    return res


# -- none: the raw outputs --------------------------------------------------------------------
def _raw_targets(cfg: Config, ref: Arrays, classes: list[str]) -> dict[str, np.ndarray]:
    return {n: np.asarray(ref[n]) for n in cfg.model.outputs}


def sqnr_score(signal: float, noise: float) -> float:
    """``100 * (1 - noise / signal)`` (powers), floored at 0; an all-zero reference scores 100 when
    matched exactly, else 0."""
    if signal <= 0:
        return 100.0 if noise <= 0 else 0.0
    return max(0.0, 100.0 * (1.0 - noise / signal))


def _raw_score(cfg: Config, outputs: Arrays, targets: Arrays, classes: list[str]) -> dict:
    per, sqnr = {}, {}
    for n in cfg.model.outputs:
        signal = noise = 0.0
        for i in range(0, len(targets[n]), 64):  # float64 in slices: outputs can be large
            ref, got = np.asarray(targets[n][i : i + 64], np.float64), np.asarray(outputs[n][i : i + 64], np.float64)
            signal, noise = signal + float(np.sum(ref * ref)), noise + float(np.sum((got - ref) ** 2))
        per[n] = sqnr_score(signal, noise)
        sqnr[n] = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else None  # None: exact
    return {"sqnr_score": min(per.values()), "sqnr_db": sqnr, "per_class": per}


MODES: dict[str, Fidelity] = {  # eval.fidelity_of -> its comparison
    "classification": Fidelity("top1_agreement", "top-1 agreement %", _top1_targets, _top1_score),
    "detection": Fidelity("map_vs_fp32", "mAP vs FP32", _box_targets, _box_score),
    "segmentation": Fidelity("miou_vs_fp32", "mIoU vs FP32 %", _mask_targets, _mask_score),
    "keypoints": Fidelity("oks_ap_vs_fp32", "OKS AP vs FP32", _keypoint_targets, _keypoint_score),
    "none": Fidelity("sqnr_score", "SQNR score %", _raw_targets, _raw_score),
}
LABELS = {m.metric: m.label for m in MODES.values()} | {"iou_vs_fp32": "IoU vs FP32 %"}  # metric key -> header


def targets(cfg: Config, reference: Arrays, classes: list[str] = ()) -> dict[str, np.ndarray]:
    """FP32's ``reference`` outputs (by output name, first axis = sample) decoded into the ground truth
    of ``eval.fidelity_of``. ``classes``: names for messages and figures only (often empty)."""
    return MODES[cfg.eval.fidelity_of].targets(cfg, reference, list(classes))


def score(cfg: Config, outputs: Arrays, truth: Arrays, classes: list[str] = ()) -> dict:
    """A precision's ``outputs`` against FP32's :func:`targets` ``truth``: the figures in percent,
    ``per_class`` (by FP32's class, or by output for ``none``) and, where the figure comes from the
    outputs (one-channel masks), ``metric``."""
    mode = MODES[cfg.eval.fidelity_of]
    return {"metric": mode.metric} | mode.score(cfg, outputs, truth, list(classes))
