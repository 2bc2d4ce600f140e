"""A tiny YOLOv8-style anchor-free detector for the canvas example: arch and trainer ``mnist_yolo``.

The model follows the Ultralytics ``Detect`` head (``ultralytics/nn/modules/head.py``) at two strides
(8 and 16: 8x8 + 4x4 = 80 anchor points on a 64x64 input): per level, a decoupled box branch (two
3x3 conv-BN-ReLU, then a 1x1 conv to 4 distances) and class branch (the same, to C logits). Box
regression is the distance from each anchor point (cell centre) to the box's left, top, right and
bottom edges, in strides; **no DFL** (``reg_max = 1``, as YOLO26 dropped it for edge export): the
distance is ``softplus`` of the conv output, one number per side, so the graph holds no Softmax and
every op quantizes. ``forward`` decodes inside the graph as an Ultralytics export does
(``dist2bbox(xywh=True) * stride``, ``cls.sigmoid()``, concatenated): one output ``(B, 4 + C, A)``,
rows cx, cy, w, h in input pixels then the C class probabilities, which the ``yolov8`` decoder reads.

Training follows Ultralytics' ``v8DetectionLoss`` (``ultralytics/utils/loss.py``) without the DFL
term: a task-aligned assigner (TOOD, Feng et al. 2021; Ultralytics ``utils/tal.py``, simplified:
every image has at most 3 boxes and 80 anchors, so everything is dense tensors) picks, for each box,
the ``TOPK`` anchors inside it with the largest ``score^0.5 * CIoU^6`` (an anchor claimed by two boxes
goes to the one it overlaps most), and gives them soft class targets (the alignment normalised per box
to its best IoU); the loss is BCE on the class logits against those targets plus ``7.5 x (1 - CIoU)``
weighted by them, both divided by the sum of the targets (``box`` gain 7.5, ``cls`` 0.5 as Ultralytics).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from examples.canvas_models import _cbr, _fit
from tasks.models.load import ARCHS
from tasks.models.trainers import TRAINERS

STRIDES = (8, 16)  # pixels per cell of the two detection levels
TOPK = 10  # anchors per box the assigner keeps (Ultralytics v8DetectionLoss: topk=10)
ALPHA, BETA = 0.5, 6.0  # task-aligned metric score^ALPHA * IoU^BETA (Ultralytics v8DetectionLoss)
BOX_GAIN, CLS_GAIN = 7.5, 0.5  # Ultralytics' default loss gains


def make_anchors(input_hw: tuple[int, int], strides=STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points float32 ``(A, 2)`` (x, y) in cells (cell centres, ``i + 0.5``) and their strides
    float32 ``(A, 1)``, level by level, row-major within a level (Ultralytics ``make_anchors``)."""
    points, strides_out = [], []
    for s in strides:
        h, w = input_hw[0] // s, input_hw[1] // s
        sy, sx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        points.append(torch.stack([sx, sy], -1).reshape(-1, 2))
        strides_out.append(torch.full((h * w, 1), float(s)))
    return torch.cat(points).float(), torch.cat(strides_out)


def _branch(cin: int, width: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_cbr(cin, width), _cbr(width, width), nn.Conv2d(width, cout, 1))


@ARCHS.register("mnist_yolo")
class MnistYolo(nn.Module):
    """YOLOv8-style detector. Input float32 (B, 1, 64, 64); output float32 (B, 4 + num_classes, 80):
    cx, cy, w, h in input pixels, then per-class probabilities (sigmoid), anchors level by level."""

    def __init__(self, num_classes: int = 10, width: int = 32, input_hw: tuple[int, int] = (64, 64)) -> None:
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.stem = nn.Sequential(_cbr(1, w // 2, 2), _cbr(w // 2, w, 2))  # 16x16
        self.p3 = nn.Sequential(_cbr(w, 2 * w, 2), _cbr(2 * w, 2 * w))  # 8x8, stride 8
        self.p4 = nn.Sequential(_cbr(2 * w, 3 * w, 2), _cbr(3 * w, 3 * w))  # 4x4, stride 16
        self.lateral = nn.Conv2d(3 * w, 2 * w, 1)  # top-down: P4's context into P3
        self.box = nn.ModuleList([_branch(2 * w, w, 4), _branch(3 * w, w, 4)])
        self.cls = nn.ModuleList([_branch(2 * w, w, num_classes), _branch(3 * w, w, num_classes)])
        points, strides = make_anchors(input_hw)
        self.register_buffer("anchors", points.T[None], persistent=False)  # (1, 2, A) cells
        self.register_buffer("strides", strides.T[None], persistent=False)  # (1, 1, A) pixels
        with torch.no_grad():  # Ultralytics Detect.bias_init: a box of ~1 stride, a rare-object class prior
            for box, cls, s in zip(self.box, self.cls, STRIDES, strict=True):
                box[-1].bias.fill_(1.0)
                cls[-1].bias.fill_(math.log(5 / num_classes / (input_hw[0] / s) ** 2))

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box distances float32 (B, 4, A) (l, t, r, b in strides, >= 0) and class logits (B, C, A)."""
        f16 = self.stem(x)
        p3 = self.p3(f16)
        p4 = self.p4(p3)
        p3 = p3 + F.interpolate(self.lateral(p4), scale_factor=2.0, mode="nearest")
        feats = (p3, p4)
        dist = torch.cat([F.softplus(b(f)).flatten(2) for b, f in zip(self.box, feats, strict=True)], 2)
        logits = torch.cat([c(f).flatten(2) for c, f in zip(self.cls, feats, strict=True)], 2)
        return dist, logits

    def boxes(self, dist: torch.Tensor) -> torch.Tensor:
        """Distances (B, 4, A) in strides -> boxes (B, 4, A) cx, cy, w, h in input pixels
        (Ultralytics ``dist2bbox(xywh=True) * stride``)."""
        lt, rb = dist[:, :2], dist[:, 2:]
        return torch.cat([self.anchors + (rb - lt) / 2, lt + rb], 1) * self.strides

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist, logits = self.raw(x)
        return torch.cat([self.boxes(dist), torch.sigmoid(logits)], 1)


def xyxy(cxcywh: torch.Tensor) -> torch.Tensor:
    """(..., 4) cx, cy, w, h -> x1, y1, x2, y2."""
    c, wh = cxcywh[..., :2], cxcywh[..., 2:]
    return torch.cat([c - wh / 2, c + wh / 2], -1)


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU (Zheng et al. 2020) of corner boxes ``a`` and ``b`` (..., 4), broadcast: IoU minus
    the normalised centre distance and the aspect-ratio term (Ultralytics ``bbox_iou(CIoU=True)``)."""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    aw, ah, bw, bh = ax2 - ax1, (ay2 - ay1).clamp(min=eps), bx2 - bx1, (by2 - by1).clamp(min=eps)
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(0) * (
        torch.minimum(ay2, by2) - torch.maximum(ay1, by1)
    ).clamp(0)
    iou = inter / (aw * ah + bw * bh - inter + eps)
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(bw / bh) - torch.atan(aw / ah)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


@torch.no_grad()
def assign(
    scores: torch.Tensor, pred: torch.Tensor, points: torch.Tensor, gt: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Task-aligned assignment of one batch.

    ``scores`` (B, A, C) class probabilities, ``pred`` (B, A, 4) predicted corner boxes and ``points``
    (A, 2) anchor points, in pixels; ``gt`` (B, K, 5) rows ``[class, x1, y1, x2, y2]``, class -1 =
    padding. Returns ``fg`` bool (B, A), ``target_boxes`` (B, A, 4) corners and ``target_scores``
    (B, A, C) soft one-hot (0 on background anchors).
    """
    b, a, _ = scores.shape
    k = gt.shape[1]
    valid = gt[..., 0] >= 0  # (B, K)
    cls = gt[..., 0].clamp(min=0).long()
    boxes = gt[..., 1:]  # (B, K, 4)
    inside = torch.cat([points[None, None] - boxes[..., None, :2], boxes[..., None, 2:] - points[None, None]], -1)
    candidates = (inside.amin(-1) > 1e-9) & valid[..., None]  # (B, K, A): anchor point inside the box
    overlaps = ciou(boxes[:, :, None], pred[:, None]).clamp(min=0) * candidates  # (B, K, A)
    box_scores = torch.gather(scores.transpose(1, 2), 1, cls[..., None].expand(-1, -1, a))  # (B, K, A)
    align = box_scores.pow(ALPHA) * overlaps.pow(BETA) * candidates
    top = torch.zeros_like(candidates)
    top.scatter_(2, align.topk(min(TOPK, a), dim=2).indices, True)
    pos = top & candidates  # (B, K, A)
    # an anchor claimed by several boxes goes to the box it overlaps most (Ultralytics select_highest_overlaps)
    multi = pos.sum(1, keepdim=True) > 1
    best = F.one_hot(overlaps.argmax(1), k).transpose(1, 2).bool()  # (B, K, A)
    pos = torch.where(multi, best & candidates, pos)
    fg = pos.any(1)  # (B, A)
    owner = pos.float().argmax(1)  # (B, A)
    target_boxes = torch.gather(boxes, 1, owner[..., None].expand(-1, -1, 4))
    target_cls = torch.gather(cls, 1, owner)
    # soft targets: alignment normalised per box so its best anchor gets the box's best IoU
    align = align * pos
    norm = (align * overlaps.amax(2, keepdim=True) / (align.amax(2, keepdim=True) + 1e-9)).amax(1)  # (B, A)
    target_scores = F.one_hot(target_cls, num_classes).float() * (norm * fg)[..., None]
    return fg, target_boxes, target_scores


@TRAINERS.register("mnist_yolo")
def train_mnist_yolo(
    x: np.ndarray,
    y: np.ndarray,
    out: Path,
    *,
    epochs: int = 12,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress=None,
) -> dict:
    """Train :class:`MnistYolo` and save its state_dict to ``out``.

    ``x`` float32 (N, 1, 64, 64) preprocessed; ``y`` int64 (N, K, 5) [class, x1, y1, x2, y2] pixels,
    x2/y2 exclusive, padding rows -1. Returns the last epoch's mean losses (total, box, class) and
    the training time (s).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    gt = torch.from_numpy(np.asarray(y, np.float32))
    model = MnistYolo(input_hw=(xt.shape[2], xt.shape[3]))
    c = model.num_classes
    points = (model.anchors[0].T * model.strides[0].T).contiguous()  # (A, 2) pixels

    def loss_fn(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        dist, logits = model.raw(xt[idx])
        pred = xyxy(model.boxes(dist).transpose(1, 2))  # (B, A, 4) pixels
        logits = logits.transpose(1, 2)  # (B, A, C)
        fg, target_boxes, target_scores = assign(torch.sigmoid(logits).detach(), pred.detach(), points, gt[idx], c)
        total = target_scores.sum().clamp(min=1)
        cls_loss = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="sum") / total
        weight = target_scores.sum(-1)[fg]
        box_loss = ((1 - ciou(pred[fg], target_boxes[fg])) * weight).sum() / total
        parts = {"box_loss": box_loss.item(), "cls_loss": cls_loss.item()}
        return BOX_GAIN * box_loss + CLS_GAIN * cls_loss, parts

    metrics = _fit(
        model, loss_fn, len(xt), out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    return {**metrics, "epochs": epochs, "train_s": time.perf_counter() - start}
