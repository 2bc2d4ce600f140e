"""Tiny models for the canvas examples: detector ``mnist_centernet``, segmenter ``mnist_unet`` and
binary segmenter ``mnist_binunet``.

Both take the preprocessed canvases float32 (B, 1, 64, 64) and are fully convolutional, built
from ops that export to ONNX and quantize with ONNX Runtime Q/DQ (Conv with BatchNorm folded,
Relu, Resize (nearest), Concat, Add, Slice, Sigmoid, Exp, Mul); the detector's boxes are decoded on the host by
``tasks.models.decoders.decode_centernet``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tasks.models.decoders import encode_centernet
from tasks.models.load import ARCHS
from tasks.models.trainers import TRAINERS

STRIDE = 4  # detector output stride: a 64x64 input gives 16x16 maps
WH_SCALE = 16.0  # pixels: wh = WH_SCALE * exp(raw), so raw = 0 is a mid-sized digit
SEG_CLASSES = 11  # background + 10 digits


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


@ARCHS.register("mnist_centernet")
class MnistCenterNet(nn.Module):
    """CenterNet-style detector. Input float32 (B, 1, 64, 64); outputs, at stride 4:

    ``heatmap`` (B, num_classes, 16, 16) centre probability in [0, 1]; ``wh`` (B, 2, 16, 16) box
    width, height in input pixels (> 0); ``offset`` (B, 2, 16, 16) centre offset (x, y) in (0, 1)
    cells. Encoding: ``tasks.models.decoders.encode_centernet``.
    """

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_cbr(1, w // 2, 2), _cbr(w // 2, w, 2))  # 16x16
        self.s16 = _cbr(w, 2 * w)
        self.s8 = nn.Sequential(_cbr(2 * w, 3 * w, 2), _cbr(3 * w, 3 * w))  # 8x8: context of a whole digit
        self.lateral = nn.Conv2d(3 * w, 2 * w, 1)
        self.neck = _cbr(2 * w, 2 * w)
        self.head = nn.Conv2d(2 * w, num_classes + 4, 1)
        self.num_classes = num_classes
        with torch.no_grad():  # CenterNet's prior: start every centre at probability 0.1
            self.head.bias[:num_classes].fill_(-2.19)
            self.head.bias[num_classes:].zero_()

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Head output before activations, float32 (B, num_classes + 4, 16, 16)."""
        f16 = self.s16(self.stem(x))
        up = F.interpolate(self.lateral(self.s8(f16)), scale_factor=2.0, mode="nearest")
        return self.head(self.neck(f16 + up))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.raw(x)
        c = self.num_classes
        return torch.sigmoid(r[:, :c]), WH_SCALE * torch.exp(r[:, c : c + 2]), torch.sigmoid(r[:, c + 2 :])


@ARCHS.register("mnist_unet")
class MnistUNet(nn.Module):
    """U-Net segmenter: input float32 (B, 1, 64, 64), output ``logits`` float32 (B, 11, 64, 64)
    (class 0 background, 1 + d the digit d).

    The encoder goes down to 8x8 so that each pixel sees a whole digit (which digit it is); the
    decoder comes back to 32x32 with a concatenated skip. The logits are a sum over scales: class
    evidence at 16x16 and 32x32 (upsampled, nearest) plus per-pixel stroke evidence from the
    full-resolution skip (a mask pixel is a canvas pixel > 127, a local decision). Only 1x1 convs run
    on the 64x64 output: full-resolution layers dominate CPU training time.
    """

    def __init__(self, num_classes: int = SEG_CLASSES, width: int = 8) -> None:
        super().__init__()
        w = width
        self.e64 = _cbr(1, w)
        self.e32 = _cbr(w, 2 * w, 2)
        self.e16 = nn.Sequential(_cbr(2 * w, 4 * w, 2), _cbr(4 * w, 8 * w))
        self.e8 = nn.Sequential(_cbr(8 * w, 12 * w, 2), _cbr(12 * w, 12 * w))
        self.lateral = nn.Conv2d(12 * w, 8 * w, 1)
        self.d16 = _cbr(8 * w, 8 * w)
        self.coarse = nn.Conv2d(8 * w, num_classes, 1)  # class evidence at 16x16, added to the output
        self.reduce = nn.Conv2d(8 * w, 2 * w, 1)
        self.d32 = _cbr(4 * w, 2 * w)
        self.mid = nn.Conv2d(2 * w, num_classes, 1)  # class evidence at 32x32
        self.fine = nn.Conv2d(w, num_classes, 1)  # stroke evidence at 64x64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
        f64 = self.e64(x)
        f32 = self.e32(f64)
        f16 = self.e16(f32)
        d16 = self.d16(f16 + up(self.lateral(self.e8(f16))))
        d32 = self.d32(torch.cat([f32, up(self.reduce(d16))], 1))
        return self.fine(f64) + up(self.mid(d32) + up(self.coarse(d16)))


@ARCHS.register("mnist_binunet")
class MnistBinUNet(MnistUNet):
    """:class:`MnistUNet` with one output channel: input float32 (B, 1, 64, 64), output ``prob``
    float32 (B, 1, 64, 64), the probability (sigmoid, in the graph) that a pixel is a digit's.
    One sigmoid map is what binary segmenters export (DBNet-style text detectors, medical U-Nets)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__(num_classes=1, width=width)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The map before its sigmoid, float32 (B, 1, 64, 64) (training's loss reads it)."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def _batches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def _fit(
    model: nn.Module, loss_fn, n: int, out: Path, *, epochs: int, batch_size: int, lr: float, seed: int, progress
) -> dict[str, float]:
    """AdamW + one-cycle schedule over ``n`` samples, then the state_dict saved to ``out``.

    ``loss_fn(idx)`` -> (scalar loss of the batch ``idx``, {name: float} of its parts). Returns the
    last epoch's sample-weighted means: ``train_loss`` and each part.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-n // batch_size))
    gen = torch.Generator().manual_seed(seed)
    means: dict[str, float] = {}
    for epoch in range(epochs):
        model.train()
        sums: dict[str, float] = {}
        for idx in _batches(n, batch_size, gen):
            loss, parts = loss_fn(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for k, v in {"train_loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
        means = {k: v / n for k, v in sums.items()}
        if progress:
            progress(epoch + 1, epochs, means["train_loss"])
    model.eval()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")  # no half-written checkpoint if interrupted
    torch.save(model.state_dict(), tmp)
    tmp.replace(out)
    return means


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) on heatmap ``logits`` against
    Gaussian ``target`` (same shape, 1 at centres), summed and divided by the number of centres."""
    pos = target.eq(1).float()
    p = torch.sigmoid(logits)
    pos_loss = F.logsigmoid(logits) * (1 - p) ** 2 * pos
    neg_loss = F.logsigmoid(-logits) * p**2 * (1 - target) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


@TRAINERS.register("mnist_centernet")
def train_mnist_centernet(
    x: np.ndarray,
    y: np.ndarray,
    out: Path,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress=None,
) -> dict:
    """Train :class:`MnistCenterNet` and save its state_dict to ``out``.

    ``x`` float32 (N, 1, 64, 64) preprocessed; ``y`` int64 (N, K, 5) [class, x1, y1, x2, y2] pixels,
    x2/y2 exclusive, padding rows -1. Loss: focal loss on the heatmap + 0.1 * L1 on wh (in cells)
    + L1 on offset (cells), both at the centres; targets from ``encode_centernet``. Defaults train in
    about 70 s on 2 CPU cores. Returns the last epoch's mean losses and the training time (s).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    model = MnistCenterNet()
    hw = (xt.shape[2] // STRIDE, xt.shape[3] // STRIDE)
    t = {
        k: torch.from_numpy(v)
        for k, v in encode_centernet(y, num_classes=model.num_classes, out_hw=hw, stride=STRIDE).items()
    }
    c = model.num_classes

    def loss_fn(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        r = model.raw(xt[idx])
        hm_loss = focal_loss(r[:, :c], t["heatmap"][idx])
        flat = r[:, c:].flatten(2)  # (B, 4, H * W)
        at = torch.gather(flat, 2, t["index"][idx][:, None, :].expand(-1, 4, -1)).transpose(1, 2)  # (B, K, 4)
        mask = t["mask"][idx].float()[..., None]
        npos = mask.sum().clamp(min=1)
        wh = WH_SCALE * torch.exp(at[..., :2])
        wh_loss = ((wh - t["wh"][idx]).abs() / STRIDE * mask).sum() / npos
        off_loss = ((torch.sigmoid(at[..., 2:]) - t["offset"][idx]).abs() * mask).sum() / npos
        parts = {"heatmap_loss": hm_loss.item(), "wh_loss": wh_loss.item(), "offset_loss": off_loss.item()}
        return hm_loss + 0.1 * wh_loss + off_loss, parts

    metrics = _fit(
        model, loss_fn, len(xt), out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    return {**metrics, "epochs": epochs, "train_s": time.perf_counter() - start}


@TRAINERS.register("mnist_unet")
def train_mnist_unet(
    x: np.ndarray,
    y: np.ndarray,
    out: Path,
    *,
    epochs: int = 6,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress=None,
) -> dict:
    """Train :class:`MnistUNet` and save its state_dict to ``out``.

    ``x`` float32 (N, 1, 64, 64) preprocessed; ``y`` int64 (N, 64, 64) classes (0 background,
    1 + digit). Loss: cross-entropy with background weighted 0.25 (digit strokes are ~5 % of the
    pixels). Defaults train in about 75 s on 2 CPU cores. Returns the last epoch's mean loss, the
    pixel accuracy (%) on the first 1,000 training canvases and the training time (s).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    yt = torch.from_numpy(np.asarray(y, np.int64))
    model = MnistUNet()
    weight = torch.ones(SEG_CLASSES)
    weight[0] = 0.25

    def loss_fn(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return F.cross_entropy(model(xt[idx]), yt[idx], weight=weight), {}

    metrics = _fit(
        model, loss_fn, len(xt), out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    with torch.no_grad():
        n = min(len(xt), 1000)
        correct = sum(int((model(xt[i : i + 250]).argmax(1) == yt[i : i + 250]).sum()) for i in range(0, n, 250))
    return {
        **metrics,
        "train_pixel_acc": 100 * correct / yt[:n].numel(),
        "epochs": epochs,
        "train_s": time.perf_counter() - start,
    }


@TRAINERS.register("mnist_binunet")
def train_mnist_binunet(
    x: np.ndarray,
    y: np.ndarray,
    out: Path,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress=None,
) -> dict:
    """Train :class:`MnistBinUNet` and save its state_dict to ``out``.

    ``x`` float32 (N, 1, 64, 64) preprocessed; ``y`` int64 (N, 64, 64) 0 background, 1 digit.
    Loss: binary cross-entropy on the logits plus soft Dice (digit pixels are ~5 % of a canvas:
    Dice keeps the rare class from being ignored). The defaults run half the epochs of
    :func:`train_mnist_unet`'s (about 75 s for 6 on 2 idle CPU cores) on the same network with one output channel.
    Returns the last epoch's mean losses, the Dice (%, threshold 0.5, pooled) on the first 1,000
    training canvases and the training time (s).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    yt = torch.from_numpy(np.asarray(y, np.float32))[:, None]
    model = MnistBinUNet()

    def loss_fn(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits, target = model.logits(xt[idx]), yt[idx]
        bce = F.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        return bce + dice, {"bce_loss": bce.item(), "dice_loss": dice.item()}

    metrics = _fit(
        model, loss_fn, len(xt), out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    with torch.no_grad():
        n = min(len(xt), 1000)
        pred = torch.cat([model(xt[i : i + 250]) > 0.5 for i in range(0, n, 250)]).float()
        dice = 200 * float((pred * yt[:n]).sum()) / max(float(pred.sum() + yt[:n].sum()), 1.0)
    return {**metrics, "train_dice": dice, "epochs": epochs, "train_s": time.perf_counter() - start}
