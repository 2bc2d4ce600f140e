"""Turn raw uint8 images into model input tensors, as the config's input spec says."""

from __future__ import annotations

import numpy as np

from tasks.config.schema import InputSpec
from tasks.data.errors import DataError


def input_hw(spec: InputSpec) -> tuple[int, int]:
    return tuple(spec.resize) if spec.resize else (spec.shape[1], spec.shape[2])  # type: ignore[return-value]


def preprocess(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 ``(N, H, W[, C])`` RGB/gray -> float32 ``(N, C, H, W)`` normalised per ``spec``.

    Images are resized to ``spec.resize`` (or the input's H, W) and must then match
    ``spec.shape`` exactly; a mismatch is a :class:`DataError`.
    """
    c, h, w = spec.shape
    x = images
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 3 and c == 1:
        x = (x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif x.shape[-1] == 1 and c == 3:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != c:
        raise DataError(f"images have {x.shape[-1]} channels; model.input.shape expects {c}")
    rh, rw = input_hw(spec)
    if x.shape[1:3] != (rh, rw):
        x = _resize(x, rh, rw)
    if spec.channel_order == "bgr":
        x = x[..., ::-1]
    x = x.astype(np.float32) * np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.shape[1:] != (c, h, w):
        raise DataError(
            f"preprocessed samples are {list(x.shape[1:])}; model.input.shape is {[c, h, w]} "
            "(set model.input.resize to the model's H, W)"
        )
    return x


def _resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(x), h, w, x.shape[-1]), np.float32)
    for i, img in enumerate(x):
        for ch in range(img.shape[-1]):
            im = Image.fromarray(img[..., ch].astype(np.float32), mode="F")
            out[i, ..., ch] = np.asarray(im.resize((w, h), Image.BILINEAR))
    return out
