"""Where an image's pixels go on the way into the model, and back.

Every image a file source reads is fitted to the model's input (H, W) by one of two transforms:

- **resize** (``model.input.letterbox: false``): stretched to (H, W); the two axes scale differently;
- **letterbox** (``model.input.letterbox: true``): scaled by one factor ``r = min(H / h, W / w)`` (up
  or down) so that it fits, then padded on both sides with ``model.input.pad_value``, centred. This
  is Ultralytics' ``LetterBox(new_shape=(H, W), auto=False, scaleup=True, center=True)``, the shape
  YOLO validation gives a model exported with a fixed input size: the resized size is
  ``round(w * r), round(h * r)`` and the padding ``round(d / 2 - 0.1)`` before, the rest after.
  ``stride`` only matters to ``auto=True`` (pad to the smallest multiple of the stride, a different
  input shape per image), which a fixed-shape export cannot take, so it is not a setting here.
  Resampling is PIL's bilinear filter, not OpenCV's: the geometry (size, scale, padding) is
  Ultralytics', pixel values may differ slightly.

Both are recorded per image as one ``meta`` row, float32 ``[orig_h, orig_w, scale_y, scale_x,
pad_top, pad_left]``, meaning ``input_xy = orig_xy * scale + pad`` (the prepared split's
``meta.npy``, ``(N, 6)``). Labels stay in original pixels; predictions, decoded in input pixels, are
mapped back with :func:`boxes_to_original` / :func:`keypoints_to_original` before scoring, as
Ultralytics' validator does with ``scale_boxes`` (which uses the same gain ``r`` and padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

META_COLUMNS = ("orig_h", "orig_w", "scale_y", "scale_x", "pad_top", "pad_left")


@dataclass(frozen=True)
class Fit:
    """How one image of ``orig_hw`` becomes a model input of ``input_hw``: resized to ``resized_hw``,
    then padded by ``pad_top``/``pad_left`` (and whatever is left after)."""

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    scale: tuple[float, float]  # (y, x)
    pad: tuple[int, int]  # (top, left)

    @property
    def meta(self) -> np.ndarray:
        """float32 ``(6,)``: ``[orig_h, orig_w, scale_y, scale_x, pad_top, pad_left]``."""
        return np.array([*self.orig_hw, *self.scale, *self.pad], np.float32)


def fit(orig_hw: tuple[int, int], input_hw: tuple[int, int], letterbox: bool) -> Fit:
    """The transform of an ``orig_hw`` image into an ``input_hw`` input (see the module doc)."""
    h, w = (int(v) for v in orig_hw)
    ih, iw = (int(v) for v in input_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size {h}x{w} is empty")
    if not letterbox:
        return Fit((h, w), (ih, iw), (ih, iw), (ih / h, iw / w), (0, 0))
    r = min(ih / h, iw / w)
    rh, rw = min(ih, int(round(h * r))), min(iw, int(round(w * r)))
    top, left = int(round((ih - rh) / 2 - 0.1)), int(round((iw - rw) / 2 - 0.1))
    return Fit((h, w), (ih, iw), (rh, rw), (r, r), (top, left))


def _place(resized: np.ndarray, f: Fit, fill: int) -> np.ndarray:
    if resized.shape[:2] == f.input_hw:
        return resized
    out = np.full((*f.input_hw, *resized.shape[2:]), fill, resized.dtype)
    top, left = f.pad
    out[top : top + f.resized_hw[0], left : left + f.resized_hw[1]] = resized
    return out


def warp_image(image: np.ndarray, f: Fit, pad_value: int = 114) -> np.ndarray:
    """uint8 ``(h, w)`` or ``(h, w, 3)`` -> uint8 ``input_hw`` (bilinear, as PIL resizes; the pad
    filled with ``pad_value``)."""
    from PIL import Image

    if image.shape[:2] != f.resized_hw:
        image = np.asarray(Image.fromarray(image).resize(f.resized_hw[::-1], Image.BILINEAR))
    return _place(image, f, pad_value)


def warp_mask(mask: np.ndarray, f: Fit, ignore: int = 255) -> np.ndarray:
    """A class map ``(h, w)`` (values 0..255) -> int64 ``input_hw``: nearest neighbour (class ids
    are not interpolated), the pad is ``ignore`` (not background: the model never saw it)."""
    from PIL import Image

    m = np.asarray(mask, np.uint8)
    if m.shape != f.resized_hw:
        m = np.asarray(Image.fromarray(m).resize(f.resized_hw[::-1], Image.NEAREST))
    return _place(m, f, ignore).astype(np.int64)


def _unpack(meta: np.ndarray) -> tuple[float, float, float, float, float, float]:
    m = np.asarray(meta, np.float64).reshape(-1)
    if m.shape != (6,):
        raise ValueError(f"meta has {m.size} values; expected 6 ({', '.join(META_COLUMNS)})")
    return tuple(float(v) for v in m)  # type: ignore[return-value]


def boxes_to_original(boxes: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Boxes in input pixels -> original pixels: the first 4 columns ``[x1, y1, x2, y2]`` of
    ``(D, >=4)`` un-padded, un-scaled and clipped to the image; other columns (score, class) kept."""
    h, w, sy, sx, top, left = _unpack(meta)
    out = np.array(boxes, dtype=np.float32, copy=True)
    if out.size == 0:
        return out
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - left) / sx, 0, w)
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - top) / sy, 0, h)
    return out


def boxes_to_input(boxes: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Boxes in original pixels -> input pixels (the forward transform of :func:`boxes_to_original`)."""
    _h, _w, sy, sx, top, left = _unpack(meta)
    out = np.array(boxes, dtype=np.float32, copy=True)
    out[..., [0, 2]] = out[..., [0, 2]] * sx + left
    out[..., [1, 3]] = out[..., [1, 3]] * sy + top
    return out


def keypoints_to_original(points: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Keypoints ``(..., 2)`` or ``(..., 3)`` ``[x, y(, v/score)]`` in input pixels -> original pixels
    (not clipped: a keypoint may lie outside its box); the third column is kept."""
    _h, _w, sy, sx, top, left = _unpack(meta)
    out = np.array(points, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] - left) / sx
    out[..., 1] = (out[..., 1] - top) / sy
    return out


def detections_to_original(detections: list[np.ndarray], meta: np.ndarray | None) -> list[np.ndarray]:
    """Per-image ``(D, 6)`` ``[x1, y1, x2, y2, score, class]`` mapped with that image's meta row;
    unchanged when ``meta`` is None (labels are then in input pixels too)."""
    if meta is None:
        return detections
    if len(meta) != len(detections):
        raise ValueError(f"{len(detections)} images of detections but {len(meta)} meta rows")
    return [boxes_to_original(d, m) if len(d) else d for d, m in zip(detections, meta)]


def instances_to_original(instances: list[np.ndarray], meta: np.ndarray | None) -> list[np.ndarray]:
    """Per-image keypoint instances ``(D, 6 + 3J)`` ``[x1, y1, x2, y2, score, class, x_1, y_1, s_1, ...]``
    (:mod:`tasks.models.keypoint_decoders`) mapped with that image's meta row: the box as
    :func:`boxes_to_original`, each keypoint as :func:`keypoints_to_original`; unchanged when ``meta``
    is None (labels are then in input pixels too)."""
    if meta is None:
        return instances
    if len(meta) != len(instances):
        raise ValueError(f"{len(instances)} images of instances but {len(meta)} meta rows")
    out = []
    for d, m in zip(instances, meta):
        if len(d):
            d = boxes_to_original(d, m)
            d[:, 6:] = keypoints_to_original(d[:, 6:].reshape(len(d), -1, 3), m).reshape(len(d), -1)
        out.append(d)
    return out
