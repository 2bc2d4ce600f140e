"""The task metric of a model (``model.task``): one primary figure in percent points, used by every
stage that judges accuracy (parity's reference, int8-mixed's layer search, evaluate's verdict),
plus per-class figures so that an average cannot hide one class that collapsed.

- classification: top-1 (primary), top-5, per-class top-1; scores output ``(N, K)``.
- detection: COCO mAP@0.5:0.95 (primary), mAP@0.5, mAP@0.75, per-class AP; the raw outputs are
  decoded into boxes by ``eval.decoder``; labels ``(N, K, 5)`` rows ``[class, x1, y1, x2, y2]``.
- segmentation: mIoU (primary), mean Dice, pixel accuracy, per-class IoU; scores output
  ``(N, K, H, W)`` (K >= 2, argmax per pixel), labels ``(N, H, W)`` class per pixel (255 = ignore).
  With one channel (``(N, 1, H, W)`` or ``(N, H, W)``: a sigmoid map, ``model.seg_output``) the
  task is binary: foreground where the probability > ``model.seg_threshold``; Dice (primary,
  mean per image), IoU, their pooled values, and the per-image Dice (``per_image``), against
  0/1 masks (255 = ignore).
- fidelity (no labels): each precision against the FP32 model's own outputs, decoded as
  ``eval.fidelity_of`` (:mod:`tasks.metrics.fidelity`); the "labels" are FP32's decoded outputs
  (:func:`fidelity.targets`), so FP32 scores 100 and the drop is 100 - agreement.
- keypoints: COCO OKS AP (primary, OKS 0.5:0.95), AP@0.5, AP@0.75 with ``eval.keypoint_sigmas``, and
  the mean OKS similarity per keypoint (``per_class``, by keypoint name); the raw outputs are decoded
  into instances by ``eval.decoder`` (heatmap, yolov8_pose); labels ``(N, K, 5 + 3J)`` rows
  ``[class, x1, y1, x2, y2, x_1, y_1, v_1, ...]``, the box's area being the OKS scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tasks.config import Config, ConfigError
from tasks.config.load import decoded_as
from tasks.data.errors import DataError
from tasks.metrics import fidelity

PRIMARY = {  # model.task -> (metric key, table header)
    "classification": ("top1", "top-1 %"),
    "detection": ("map50_95", "mAP .5:.95"),
    "segmentation": ("miou", "mIoU %"),
    # its key depends on eval.fidelity_of: score() returns the one it used; this is the default's
    "fidelity": (fidelity.MODES["classification"].metric, fidelity.MODES["classification"].label),
    "keypoints": ("oks_ap", "OKS AP .5:.95"),
}


LABELS = {key: label for key, label in PRIMARY.values()} | {"dice": "Dice %"} | fidelity.LABELS  # key -> header


def primary(task: str) -> tuple[str, str]:
    """The primary metric of ``task`` and its header; a one-channel segmentation model is judged
    by Dice instead (``score`` returns the metric it used: prefer it where the outputs are known)."""
    return PRIMARY[task]


def label(metric: str) -> str:
    """The table header of a metric key (``score``'s ``metric``)."""
    return LABELS.get(metric, metric)


def _classification(
    cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str], meta: np.ndarray | None
) -> dict:
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
        num_keypoints=len(e.keypoint_sigmas),
    )


def check_decodable(cfg: Config, outputs: Mapping[str, np.ndarray], classes: list[str]) -> None:
    """Detection and keypoints: raise :class:`~tasks.models.errors.DecoderError` when
    ``eval.decoder`` cannot decode ``outputs`` (one batch is enough) into instances of ``classes``
    (and, keypoints, of as many keypoints as ``eval.keypoint_sigmas`` has sigmas); other tasks: nothing."""
    if decoded_as(cfg) in ("detection", "keypoints"):
        decode(cfg, outputs, len(classes) if cfg.model.task != "fidelity" else None)


def _detection(
    cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str], meta: np.ndarray | None
) -> dict:
    from tasks.data.geometry import detections_to_original
    from tasks.metrics.detection import coco_map

    # labels of images read from files are in original pixels (Ultralytics' val: scale_boxes)
    detections = detections_to_original(decode(cfg, outputs, len(classes)), meta)
    res = coco_map(detections, np.asarray(labels), classes)
    res["per_class"] = res.pop("per_class_ap")
    return res


def keypoint_names(cfg: Config) -> list[str]:
    """``eval.keypoint_names``, else COCO's names for its 17 sigmas, else kp0, kp1, ..."""
    from tasks.config.schema import COCO_KEYPOINT_NAMES, COCO_KEYPOINT_SIGMAS

    sigmas = cfg.eval.keypoint_sigmas
    if cfg.eval.keypoint_names:
        return list(cfg.eval.keypoint_names)
    if tuple(sigmas) == COCO_KEYPOINT_SIGMAS:
        return list(COCO_KEYPOINT_NAMES)
    return [f"kp{i}" for i in range(len(sigmas))]


def _keypoints(
    cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str], meta: np.ndarray | None
) -> dict:
    from tasks.data.geometry import instances_to_original
    from tasks.metrics.keypoints import oks_ap

    sigmas = cfg.eval.keypoint_sigmas
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[2] != 5 + 3 * len(sigmas):
        found = f"{(labels.shape[2] - 5) / 3:g} keypoints" if labels.ndim == 3 else "no instance rows"
        raise DataError(
            f"the split's labels have shape {labels.shape} ({found}); with the {len(sigmas)} sigma(s) of "
            f"eval.keypoint_sigmas they must be (N, K, 5 + 3 * {len(sigmas)}) rows [class, x1, y1, x2, y2, "
            "x_1, y_1, v_1, ...]: give one sigma per keypoint of the data"
        )
    names = classes or [str(c) for c in range(int(labels[..., 0].max(initial=0)) + 1)]
    try:
        res = oks_ap(
            instances_to_original(decode(cfg, outputs, len(names)), meta), labels, sigmas, keypoint_names(cfg), names
        )
    except ValueError as e:
        if type(e) is not ValueError:  # DecoderError: already names the key
            raise
        raise DataError(f"keypoint labels do not fit: {e}") from e
    res["per_class"] = res.pop("per_keypoint")
    return res


def one_channel(scores: np.ndarray) -> bool:
    """A binary segmentation map: ``(N, 1, H, W)`` or ``(N, H, W)``."""
    return scores.ndim == 3 or (scores.ndim == 4 and scores.shape[1] == 1)


def _segmentation(
    cfg: Config, outputs: Mapping[str, np.ndarray], labels: np.ndarray, classes: list[str], meta: np.ndarray | None
) -> dict:
    from tasks.metrics.segmentation import IGNORE, confusion, segmentation_scores

    scores = outputs[cfg.model.scores_output]
    if one_channel(scores):
        return _binary_segmentation(cfg, scores, labels, classes)
    k = scores.shape[1]
    conf = np.zeros((k, k), dtype=np.int64)
    try:
        for i in range(0, len(scores), 64):  # argmax in slices: (N, K, H, W) float32 can be large
            conf += confusion(scores[i : i + 64].argmax(axis=1), np.asarray(labels[i : i + 64]), k, IGNORE)
    except ValueError as e:  # masks that do not fit the model's classes: the user's data, not a bug
        raise DataError(
            f"model.scores_output {cfg.model.scores_output!r} has {k} classes (channels); the split's masks "
            f"do not fit it: {e}. Masks hold class ids 0..{k - 1} ({IGNORE} = ignore)"
        ) from e
    names = classes if len(classes) == k else [str(c) for c in range(k)]
    res = segmentation_scores(conf, names)
    res["per_class"] = res.pop("per_class_iou")
    return res


def _binary_segmentation(cfg: Config, scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    from tasks.metrics.segmentation import binarize, binary_counts, binary_scores

    name = cfg.model.scores_output
    if len(classes) > 2:
        raise DataError(
            f"model.scores_output {name!r} has one channel (a binary foreground map) but the data has "
            f"{len(classes)} classes ({', '.join(classes[:4])}{', ...' if len(classes) > 4 else ''}): score a "
            "binary model against 0/1 masks (255 = ignore), or set model.scores_output to a multi-class "
            "output (N, C, H, W), C >= 2"
        )
    logits = cfg.model.seg_output == "logits"
    counts = []
    try:
        for i in range(0, len(scores), 64):
            pred = binarize(scores[i : i + 64], cfg.model.seg_threshold, logits)
            counts.append(binary_counts(pred, np.asarray(labels[i : i + 64])))
    except ValueError as e:
        raise DataError(
            f"model.scores_output {name!r} has one channel (binary): {e}. Give data.eval and data.calib masks "
            "of 0 (background), 1 (foreground) and 255 (ignore), or set model.scores_output to a multi-class "
            "output (N, C, H, W), C >= 2"
        ) from e
    res = binary_scores(np.concatenate(counts))
    res["per_image"] = res.pop("per_image_dice")
    del res["per_image_iou"]
    res["per_class"] = {classes[-1] if classes else "foreground": res["dice"]}
    res["metric"] = "dice"
    return res


def check_reference(cfg: Config, outputs: Mapping[str, np.ndarray]) -> None:
    """Checks of the FP32 reference outputs that a figure would not reveal: a one-channel map read
    as probabilities (``model.seg_output``) must lie in [0, 1]; logits thresholded at 0.5 would
    give a plausible but wrong Dice. Raises ConfigError."""
    scores = outputs.get(cfg.model.scores_output)
    if decoded_as(cfg) != "segmentation" or cfg.model.seg_output != "probabilities" or scores is None:
        return
    if one_channel(scores) and scores.size:
        lo, hi = float(scores.min()), float(scores.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ConfigError(
                f"config key model.seg_output: 'probabilities', but output {cfg.model.scores_output!r} holds "
                f"values in [{lo:.3g}, {hi:.3g}], outside 0..1: the model ends before its sigmoid. "
                "Set model.seg_output=logits"
            )


def _fidelity(cfg: Config, outputs: Mapping[str, np.ndarray], truth, classes: list[str], meta) -> dict:
    """Against FP32's decoded outputs (``truth``: :func:`fidelity.targets`), not the split's labels. Both
    sides are in model-input pixels, so ``meta`` is not needed (IoU is unchanged by resize/letterbox)."""
    return fidelity.score(cfg, outputs, truth, classes)


SCORERS = {
    "classification": _classification,
    "detection": _detection,
    "segmentation": _segmentation,
    "keypoints": _keypoints,
    "fidelity": _fidelity,
}


def ground_truth(cfg: Config, labels: np.ndarray, fp32: Callable[[], Mapping[str, np.ndarray]], classes: list[str]):
    """What ``score`` compares against: the split's ``labels``, or for ``fidelity`` FP32's decoded
    outputs (``fp32()`` gives FP32's raw outputs on the same samples; labels are then never read)."""
    return fidelity.targets(cfg, fp32(), classes) if cfg.model.task == "fidelity" else np.asarray(labels)


def score(
    cfg: Config,
    outputs: Mapping[str, np.ndarray],
    labels,
    classes: list[str],
    meta: np.ndarray | None = None,
) -> dict:
    """The task's metrics of ``outputs`` (by output name, first axis = sample) against ``labels``
    (an array; for ``fidelity``, FP32's decoded outputs by name: :func:`ground_truth`).
    ``meta``: the split's ``meta.npy`` rows of these samples (``Split.meta``), or None when labels
    are in model-input pixels; predictions decoded in input pixels are mapped back with it
    (:mod:`tasks.data.geometry`) before they are compared with labels in original pixels
    (``fidelity`` compares two models' outputs, both in input pixels: it ignores ``meta``).

    Returns the scorer's figures (all in percent) plus ``metric`` (the primary key), ``value``
    (its figure) and ``per_class`` (class name -> percent, None where the class has no
    ground truth); a binary segmentation adds ``per_image`` (the primary figure of each sample,
    None where it has none)."""
    if len(next(iter(labels.values())) if isinstance(labels, Mapping) else labels) == 0:
        raise ValueError("no samples to score")
    res = SCORERS[cfg.model.task](cfg, outputs, labels, classes, meta)
    key = res.pop("metric", None) or PRIMARY[cfg.model.task][0]
    return {"metric": key, "value": float(res[key]), **res}


def _worst(ref: Mapping, got: Mapping, n: int, what: str) -> list[dict]:
    drops = sorted(
        ((ref[c] - got[c], c) for c in ref if ref[c] is not None and got.get(c) is not None), key=lambda d: -d[0]
    )[:n]
    return [{what: c, "reference": ref[c], "value": got[c], "drop": d} for d, c in drops]


def worst_class_drops(ref: Mapping[str, float | None], got: Mapping[str, float | None], n: int = 3) -> list[dict]:
    """The ``n`` classes whose figure dropped most from ``ref`` to ``got`` (points), worst first;
    classes without a figure on either side are skipped."""
    return _worst(ref, got, n, "class")


def worst_image_drops(ref: list[float | None], got: list[float | None], n: int = 5) -> list[dict]:
    """The ``n`` samples (index in the split) whose figure dropped most from ``ref`` to ``got``
    (``score``'s ``per_image``), worst first: a small average drop can hide large errors on a few
    images. Only samples that dropped are listed (unlike classes, there are thousands of images:
    five unchanged ones say nothing); samples without a figure on either side are skipped."""
    if len(ref) != len(got):
        raise ValueError(f"{len(ref)} reference figures but {len(got)} figures to compare")
    return [w for w in _worst(dict(enumerate(ref)), dict(enumerate(got)), n, "image") if w["drop"] > 0]


def _name(classes: list[str], c: int) -> str:
    return classes[c] if c < len(classes) else str(c)
