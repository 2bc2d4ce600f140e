"""The task metric of a model (``model.task``): one primary figure in percent points, used by every
stage that judges accuracy (parity's reference, int8-mixed's layer search, evaluate's verdict),
plus per-class figures so that an average cannot hide one class that collapsed.

- classification: top-1 (primary), top-5, per-class top-1; scores output ``(N, K)``.
- detection: COCO mAP@0.5:0.95 (primary), mAP@0.5, mAP@0.75, per-class AP; the raw outputs are
  decoded into boxes by ``eval.decoder``; labels ``(N, K, 5)`` rows ``[class, x1, y1, x2, y2]``.
- segmentation: mIoU (primary), mean Dice, pixel accuracy, per-class IoU; scores output
  ``(N, K, H, W)``, labels ``(N, H, W)`` class per pixel.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tasks.config import Config

PRIMARY = {  # model.task -> (metric key, table header)
    "classification": ("top1", "top-1 %"),
    "detection": ("map50_95", "mAP .5:.95"),
    "segmentation": ("miou", "mIoU %"),
}


def primary(task: str) -> tuple[str, str]:
    return PRIMARY[task]


def _classification(cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str]) -> dict:
    from tasks.metrics.accuracy import per_class_top1, top1, topk

    scores = outputs[cfg.model.scores_output]
    per = per_class_top1(scores, labels)
    res = {"top1": top1(scores, labels), "per_class": {_name(classes, c): v for c, v in per.items()}}
    if scores.shape[1] >= 5:
        res["top5"] = topk(scores, labels, 5)
    return res


def decode(cfg: Config, outputs: Mapping[str, np.ndarray], num_classes: int | None = None) -> list[np.ndarray]:
    """Boxes per image, float32 ``(D, 6)`` ``[x1, y1, x2, y2, score, class]`` in input pixels, by
    ``eval.decoder`` from the outputs ``eval.outputs`` names (null: every model output, in order).
    ``num_classes``: the dataset's class count, which the decoder checks the outputs against."""
    from tasks.models.decoders import run_decoder

    e = cfg.eval
    names = e.outputs or cfg.model.outputs
    return run_decoder(
        e.decoder,
        {n: outputs[n] for n in names},
        input_hw=tuple(cfg.model.input.shape[1:3]),
        score_threshold=e.score_threshold,
        iou_threshold=e.iou_threshold,
        max_detections=e.max_detections,
        multi_label=e.multi_label,
        num_classes=num_classes,
    )


def check_decodable(cfg: Config, outputs: Mapping[str, np.ndarray], classes: list[str]) -> None:
    """Detection: raise :class:`~tasks.models.errors.DecoderError` when ``eval.decoder`` cannot
    decode ``outputs`` (one batch is enough) into boxes of ``classes``; other tasks: nothing."""
    if cfg.model.task == "detection":
        decode(cfg, outputs, len(classes))


def _detection(cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str]) -> dict:
    from tasks.metrics.detection import coco_map

    res = coco_map(decode(cfg, outputs, len(classes)), np.asarray(labels), classes)
    res["per_class"] = res.pop("per_class_ap")
    return res


def _segmentation(cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str]) -> dict:
    from tasks.metrics.segmentation import confusion, segmentation_scores

    scores = outputs[cfg.model.scores_output]
    k = scores.shape[1]
    conf = np.zeros((k, k), dtype=np.int64)
    for i in range(0, len(scores), 64):  # argmax in slices: (N, K, H, W) float32 can be large
        conf += confusion(scores[i : i + 64].argmax(axis=1), np.asarray(labels[i : i + 64]), k)
    names = classes if len(classes) == k else [str(c) for c in range(k)]
    res = segmentation_scores(conf, names)
    res["per_class"] = res.pop("per_class_iou")
    return res


SCORERS = {"classification": _classification, "detection": _detection, "segmentation": _segmentation}


def score(cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str]) -> dict:
    """The task's metrics of ``outputs`` (by output name, first axis = sample) against ``labels``.

    Returns the scorer's figures (all in percent) plus ``metric`` (the primary key), ``value``
    (its figure) and ``per_class`` (class name -> percent, None where the class has no
    ground truth)."""
    if len(labels) == 0:
        raise ValueError("no samples to score")
    res = SCORERS[cfg.model.task](cfg, outputs, labels, classes)
    key = PRIMARY[cfg.model.task][0]
    return {"metric": key, "value": float(res[key]), **res}


def worst_class_drops(ref: Mapping[str, float | None], got: Mapping[str, float | None], n: int = 3) -> list[dict]:
    """The ``n`` classes whose figure dropped most from ``ref`` to ``got`` (points), worst first;
    classes without a figure on either side are skipped."""
    drops = sorted(
        ((ref[c] - got[c], c) for c in ref if ref[c] is not None and got.get(c) is not None), key=lambda d: -d[0]
    )[:n]
    return [{"class": c, "reference": ref[c], "value": got[c], "drop": d} for d, c in drops]


def _name(classes: list[str], c: int) -> str:
    return classes[c] if c < len(classes) else str(c)
